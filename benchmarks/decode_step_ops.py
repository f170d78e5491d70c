"""Per-step costs behind two choices of the cached decoder, timed inside a tf.while_loop of 64 steps.

    taskset -c 1 python -m benchmarks.decode_step_ops

* the output projection of a [64, 256] step onto an 8000-piece tied vocabulary: ``x @ E^T`` with a
  transposed operand (what ReversibleEmbedding does) against ``x @ (E^T)`` with the transpose done
  once (``TransformerSeq2Seq.decoding_weights``);
* the argmax over [64, 8000] logits: ``tf.argmax`` against ``decode._argmax`` (a max, then a min
  over the indices of the maximum).
Each with and without XLA, one thread; microseconds per step, median of 5 calls after a warm-up.
Prints one JSON line and writes it to --output.
"""

import pathlib
import statistics
import sys
import time

from absl import flags

from benchmarks.report import emit_result
from xling_zoo import cli

import tensorflow as tf  # noqa: E402

from xling_zoo import decode  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 64, "Loop steps per timed call.")
flags.DEFINE_string("output", str(pathlib.Path(__file__).parent / "results" / "decode_step_ops.json"),
                    "Where the JSON result is written ('' = nowhere).")


def per_step_microseconds(step_fn, initial, jit_compile, repeats=5):
    def loop(x):
        def body(i, x):
            return i + 1, x + 1e-6 * tf.cast(tf.reduce_sum(step_fn(x)), x.dtype)
        return tf.while_loop(lambda i, x: i < FLAGS.steps, body, (0, x))[1]

    fn = tf.function(loop, jit_compile=jit_compile)
    fn(initial).numpy()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(initial).numpy()
        seconds.append(time.perf_counter() - start)
    return round(statistics.median(seconds) / FLAGS.steps * 1e6, 1)


def main(_):
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    embeddings = tf.Variable(tf.random.normal([8000, 256]) * 0.05)
    transposed = tf.Variable(tf.transpose(embeddings))
    x = tf.random.normal([64, 256])
    logits = tf.random.normal([64, 8000])
    cases = {
        "output_projection_transposed_operand": (lambda h: tf.matmul(h, embeddings, transpose_b=True)[:, :4], x),
        "output_projection_pretransposed": (lambda h: tf.matmul(h, transposed)[:, :4], x),
        "argmax_tf": (lambda l: tf.argmax(l, -1, output_type=tf.int32), logits),
        "argmax_max_then_min": (decode._argmax, logits),
    }
    rows = {name: {"xla_us": per_step_microseconds(fn, init, True), "no_xla_us": per_step_microseconds(fn, init, False)}
            for name, (fn, init) in cases.items()}
    for name, row in rows.items():
        print(f"  {name}: {row}", file=sys.stderr)
    emit_result({"benchmark": "decode_step_ops", "command": " ".join(["python -m benchmarks.decode_step_ops"] + sys.argv[1:]),
                 "steps": FLAGS.steps, "threads": 1, "per_step": rows}, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
