"""Where the serving export's decoding time goes: per-op time of a run's SavedModel, run as TF Serving runs it.

    taskset -c 1 python -m benchmarks.decode_op_profile --workdir=runs/transformer-en-de --beam_size=4

Exports the run (``export.export_run``, into a temporary folder), loads it with the TF1 session
loader (XLA off, one intra- and one inter-op thread, as ``tensorflow_model_server`` runs it), sends
the test split's sources in length-sorted batches of --batch_size once untraced, then once with
``RunOptions.FULL_TRACE``, and sums every executed node's time by op type and by node name. The
decoding loop's nodes run once per step, so ``executions`` counts steps x ops. Op times are
wall-clock: on a shared core only the shares mean anything. Prints one JSON line and writes it.
"""

import collections
import pathlib
import tempfile
import time

from absl import flags

from benchmarks.report import emit_result

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)

import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the SentencePiece ops the export uses)

from xling_zoo import export, serving  # noqa: E402
from xling_zoo import workdir as workdir_lib  # noqa: E402
from xling_zoo.data import corpus  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained run.", required=True)
flags.DEFINE_integer("beam_size", 4, "Beam width of the export (1 = greedy).")
flags.DEFINE_integer("batch_size", 32, "Sentences per request.")
flags.DEFINE_integer("max_examples", 0, "Only the first N test sentences (0 = all).")
flags.DEFINE_integer("top", 25, "Op types and nodes listed.")
flags.DEFINE_string("output", str(pathlib.Path(__file__).parent / "results" / "decode_op_profile.json"),
                    "Where the JSON result is written ('' = nowhere).")


def op_type(node_stats):
    """The op type of a traced node ("name = Type(inputs)" in its timeline label)."""
    label = node_stats.timeline_label
    return label.split("=", 1)[1].split("(", 1)[0].strip() if "=" in label else node_stats.node_name


def main(_):
    from tensorflow.python.util import deprecation

    run = workdir_lib.load_run(FLAGS.workdir)
    examples = corpus.read_split(run.config.corpus, run.pair, "test", data_dir=run.config.data_dir or None)
    sources = sorted((e["source"] for e in examples), key=len)[:FLAGS.max_examples or None]
    batches = [sources[i:i + FLAGS.batch_size] for i in range(0, len(sources), FLAGS.batch_size)]
    with tempfile.TemporaryDirectory(prefix="xling_zoo_profile_") as directory:
        saved_model = export.export_run(FLAGS.workdir, directory, beam_size=FLAGS.beam_size, check_sentences=0)
        graph = tf.Graph()
        session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        with graph.as_default(), tf.compat.v1.Session(graph=graph, config=session_config) as session:
            with deprecation.silence():
                meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(saved_model))
            signature = meta_graph.signature_def[export.SIGNATURE_KEY]
            fetches = {name: info.name for name, info in signature.outputs.items()}
            feed = signature.inputs[serving.INPUT_KEY].name
            start = time.perf_counter()
            for batch in batches:
                session.run(fetches, {feed: batch})
            untraced = time.perf_counter() - start
            by_type, by_node, executions = collections.Counter(), collections.Counter(), collections.Counter()
            options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
            for batch in batches:
                metadata = tf.compat.v1.RunMetadata()
                session.run(fetches, {feed: batch}, options=options, run_metadata=metadata)
                for device in metadata.step_stats.dev_stats:
                    for node in device.node_stats:
                        seconds = node.all_end_rel_micros * 1e-6
                        by_type[op_type(node)] += seconds
                        by_node[node.node_name] += seconds
                        executions[op_type(node)] += 1
    total = sum(by_type.values())

    def top(counter):
        return [{"name": name, "seconds": round(seconds, 3), "share": round(seconds / total, 3),
                 **({"executions": executions[name]} if counter is by_type else {})}
                for name, seconds in counter.most_common(FLAGS.top)]

    emit_result({
        "benchmark": "decode_op_profile",
        "command": "python -m benchmarks.decode_op_profile " + " ".join(
            f"--{name}={FLAGS[name].value}" for name in ("workdir", "beam_size", "batch_size", "max_examples")),
        "model_name": run.config.model_name, "sentences": len(sources), "batches": len(batches),
        "untraced_wall_seconds": round(untraced, 2), "traced_op_seconds": round(total, 2),
        "executions": sum(executions.values()),
        "by_op_type": top(by_type), "by_node": top(by_node),
    }, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
