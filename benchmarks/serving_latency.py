"""Serving latency of a trained run's export, loaded in a fresh process as TF Serving loads it.

    taskset -c 1 python -m benchmarks.serving_latency --workdir=runs/transformer_tiny-en-de

Exports the run into a temporary folder once per ``--beam_sizes`` (``export.export_run``: greedy
and beam 4 by default), then, for each export, starts a fresh process that imports only tensorflow
and tensorflow_text (``xling_zoo/tools/session_client.py --time``). It loads the export with the
TF1 session loader, with XLA compilation off as in tensorflow_model_server, and records:
  * one-sentence requests: p50 and p95 latency over ``--requests`` calls, after 3 warm-up calls;
  * batches of ``--batch_size`` sentences: the median of ``--batch_repeats`` calls after one
    warm-up call, as sentences/s.
The sentences are the sources of the run's test split that the export translates whole (at most
``--sentences``), used in turn. TensorFlow runs ``--threads`` intra- and inter-op threads in that
process (pin as many cores with taskset). Prints one JSON line and writes it to --output.
"""

import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks.report import emit_result

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)

import tensorflow as tf  # noqa: E402

from xling_zoo import export  # noqa: E402
from xling_zoo import workdir as workdir_lib  # noqa: E402
from xling_zoo.data import corpus  # noqa: E402
from xling_zoo.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory to export and time.", required=True)
flags.DEFINE_list("beam_sizes", ["1", "4"], "One export per beam width (1 = greedy).")
flags.DEFINE_integer("requests", 200, "One-sentence requests timed per export.")
flags.DEFINE_integer("batch_size", 64, "Sentences per batch request.")
flags.DEFINE_integer("batch_repeats", 5, "Batch requests timed per export.")
flags.DEFINE_integer("sentences", 512, "Test-split sources used, in turn.")
flags.DEFINE_integer("threads", 1, "TensorFlow intra- and inter-op threads of the serving process.")
flags.DEFINE_string("output", None, "Where the JSON result is written ('' = nowhere; default: "
                    "benchmarks/results/serving_latency_<workdir's name>.json).")

CLIENT = pathlib.Path(export.__file__).parent / "tools" / "session_client.py"


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def test_sentences(run, graph, limit):
    examples = corpus.read_split(run.config.corpus, run.pair, "test", data_dir=run.config.data_dir or None,
                                 skip_bad_lines=run.config.get("skip_bad_lines", False))
    sentences = [e["source"] for e in examples if graph.accepts(e["source"])][:limit]
    if not sentences:
        raise UserError(f"--workdir={FLAGS.workdir}: its test split has no sentence the export translates whole")
    return sentences


def time_in_fresh_process(version_dir, sentences):
    command = [sys.executable, str(CLIENT), f"--dir={version_dir}", "--time", f"--requests={FLAGS.requests}",
               f"--batch_size={FLAGS.batch_size}", f"--batch_repeats={FLAGS.batch_repeats}",
               f"--threads={FLAGS.threads}"]
    start = time.perf_counter()
    done = subprocess.run(command, input=json.dumps(sentences), capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    return {**timing, "process_seconds": round(time.perf_counter() - start, 1)}


def main(_):
    start = time.perf_counter()
    run = workdir_lib.load_run(FLAGS.workdir)
    beam_sizes = [int(b) for b in FLAGS.beam_sizes]
    result = {
        "benchmark": "serving_latency",
        "command": " ".join(["python -m benchmarks.serving_latency"] + sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
                    "threads": FLAGS.threads, "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "tensorflow": tf.__version__,
                    # The CPU is shared with other people's experiments: record how loaded it was.
                    "uptime_before": uptime()},
        "run": {"workdir": str(FLAGS.workdir), "model_name": run.config.model_name, "pair": run.config.pair,
                "checkpoint": run.checkpoint, "weights": int(sum(w.numpy().size for w in run.model.weights))},
        "setting": {"requests": FLAGS.requests, "batch_size": FLAGS.batch_size, "batch_repeats": FLAGS.batch_repeats,
                    "loader": "tf.compat.v1 session loader (TF Serving's), XLA compilation off",
                    "process": "fresh, imports only tensorflow and tensorflow_text"},
        "exports": {},
    }
    accepting = run.model.serving_graph(run, max_input_bytes=4096)
    sentences = test_sentences(run, accepting, FLAGS.sentences)
    result["setting"]["sentences"] = len(sentences)
    result["setting"]["mean_sentence_bytes"] = round(statistics.mean(len(s.encode("utf-8")) for s in sentences), 1)
    with tempfile.TemporaryDirectory(prefix="serving_latency_") as export_dir:
        for beam_size in beam_sizes:
            version_dir = export.export_run(FLAGS.workdir, export_dir, beam_size=beam_size, check_sentences=4)
            name = "greedy" if beam_size == 1 else f"beam_{beam_size}"
            print(f"{name}: timing {version_dir} in a fresh process", file=sys.stderr)
            result["exports"][name] = {"beam_size": beam_size, **time_in_fresh_process(version_dir, sentences)}
            print(f"  {result['exports'][name]}", file=sys.stderr)
    result["machine"]["uptime_after"] = uptime()
    result["seconds"] = round(time.perf_counter() - start, 1)
    output = FLAGS.output
    if output is None:
        name = pathlib.Path(FLAGS.workdir).name
        output = pathlib.Path(__file__).parent / "results" / f"serving_latency_{name}.json"
    emit_result(result, output)


if __name__ == "__main__":
    cli.run(main)
