"""Where the training step's time goes: TensorFlow op time of one epoch of our loop, by op type and
by the layer that owns the op.

    XLING_ZOO_WHEELS_DIR=/tmp/corpus_wheels python -m benchmarks.profile_train_step
    python -m benchmarks.profile_train_step --model=transformer --config=configs/transformer_tiny.py \
        --output=benchmarks/results/profile_train_step_transformer_tiny.json

Same setting as ``benchmarks.train_throughput`` (one pinned core, one thread, the first
--max_train_examples pairs of the built-in en-de training split, the default lstm_seq2seq config or
--model/--config, --set overrides): one warm-up epoch, then one epoch under ``tf.profiler``. The host trace is read
back from its XPlane file and every TensorFlow op event (``name:Type``) is summed, except the
container ops (function calls, loops) whose events enclose other ops'. The epoch's CPU time not
spent inside an op (executor and Python overhead between ops) is reported as ``outside_ops_seconds``. Prints one JSON line and writes it to --output.
"""

import collections
import pathlib
import re
import tempfile

from absl import flags

from benchmarks import train_throughput as bench  # Pins the process to one core on import.
from benchmarks.report import emit_result
from xling_zoo import cli
from xling_zoo import config as config_lib
from xling_zoo import trainer
from xling_zoo.data import corpus

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

FLAGS = flags.FLAGS
# The throughput benchmark's flags (--set, --max_train_examples, --data_dir, ...) apply here too.
FLAGS.set_default("output", str(pathlib.Path(__file__).parent / "results" / "profile_train_step.json"))
flags.DEFINE_integer("top", 25, "Op types and owners listed.")
flags.DEFINE_string("model", bench.MODEL, "Registered model to profile (FLOPs are counted for lstm_seq2seq only).")
flags.DEFINE_string("config", None, "Its config file (default: the model's under configs/).")

OP_EVENT = re.compile(r"^(?P<name>[^ :]+):(?P<type>[A-Za-z0-9_]+)$")
# Ops whose events contain other ops' events (function calls, loops, conditionals): not counted.
CONTAINERS = {"While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall", "StatefulPartitionedCall",
              "Case", "StatelessCase"}


def op_events(logdir):
    """(op name, op type, seconds) of every TensorFlow op event in the profile under ``logdir``."""
    events = []
    for path in pathlib.Path(logdir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    match = OP_EVENT.match(names.get(event.metadata_id, ""))
                    if match and match["type"] not in CONTAINERS:
                        events.append((match["name"], match["type"], event.duration_ps * 1e-12))
    return events


LAYER_SCOPE = re.compile(r"^((?:encoder|decoder)_lstm_\d+|(?:source|target|shared)_embedding|logits|"
                         r"attention_score|attention_projection|dropout|(?:encoder|decoder)_layer_\d+)(?:_\d+)?$")


def owner(op_name):
    """The model layer an op belongs to (its name scope under the model), else its first scope."""
    parts = [p for p in op_name.split("/") if p and not p.startswith(("while", "StatefulPartitionedCall",
                                                                        "gradient_tape", "gradients"))]
    for part in parts:
        # Keras 3 suffixes a scope with _1, _2, ... when a layer is called again.
        match = LAYER_SCOPE.match(part)
        if match:
            return match[1]
    return parts[0] if parts else op_name


def top(counter, total, n):
    return [{"name": name, "seconds": round(s, 3), "share_of_op_time": round(s / total, 3)}
            for name, s in counter.most_common(n)]


def main(_):
    config = config_lib.load_config(FLAGS.model, FLAGS.config, overrides=FLAGS.set)
    pair = corpus.Pair.parse(config.pair)
    data_dir = FLAGS.data_dir or config.data_dir or None
    keras.utils.set_random_seed(config.train.seed)
    tokenizers, _ = bench.tokenizers_for(config, pair, data_dir)
    examples = trainer.in_memory(corpus.read_split(config.corpus, pair, "train", data_dir=data_dir,
                                                   max_train_examples=FLAGS.max_train_examples))
    epoch, _ = bench.epoch_counts(config, tokenizers, examples)
    run_window, _ = bench.ours_runner(config, tokenizers, examples, epoch, "", False)
    unprofiled = run_window()
    logdir = tempfile.mkdtemp(prefix="xling_zoo_profile_")
    tf.profiler.experimental.start(logdir)
    profiled = run_window()
    tf.profiler.experimental.stop()
    events = op_events(logdir)
    by_type, by_owner = collections.Counter(), collections.Counter()
    for name, op_type, seconds in events:
        by_type[op_type] += seconds
        by_owner[owner(name)] += seconds
    op_seconds = sum(by_type.values())
    result = {
        "benchmark": "profile_train_step",
        "command": bench.command().replace("benchmarks.train_throughput", "benchmarks.profile_train_step"),
        "machine": bench.machine_info(),
        "max_train_examples": FLAGS.max_train_examples,
        "overrides": FLAGS.set,
        "epoch": {"batches": epoch["batches"], "target_tokens": epoch["target_tokens"],
                  "padded_target_tokens": epoch["padded_target_tokens"]},
        "epoch_cpu_seconds": {"unprofiled": round(unprofiled["cpu"], 2), "profiled": round(profiled["cpu"], 2)},
        "model": FLAGS.model, "config": FLAGS.config,
        "real_gflops_per_cpu_s_unprofiled": (round(epoch["flops"] / unprofiled["cpu"] / 1e9, 1)
                                             if epoch["flops"] is not None else None),
        "op_seconds": round(op_seconds, 2),
        "op_events": len(events),
        "mean_op_microseconds": round(op_seconds / max(len(events), 1) * 1e6, 1),
        "outside_ops_seconds": round(profiled["cpu"] - op_seconds, 2),
        "by_op_type": top(by_type, op_seconds, FLAGS.top),
        "by_owner": top(by_owner, op_seconds, FLAGS.top),
    }
    emit_result(result, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
