"""Decoding a trained run's test set at real lengths: beam search that runs until every hypothesis
has finished (the loop before its stopping bound), with the bound, and with each sentence's own
length limit; greedy with and without the limit; both with the preallocated decoding caches that XLA
needs (``static_shapes``) instead of the growing ones decoding uses without XLA.

    taskset -c 1 python -m benchmarks.real_length_decoding --workdir=runs/lstm_seq2seq-en-de

For each variant: the whole test split (source sentences sorted by length, batches of
--batch_size, the translate CLI's batching), timed --repeats times after one warm-up pass (tracing
excluded), median wall and process CPU seconds; output tokens are the target pieces of the
translations (SentencePiece ids, eos excluded). Every variant's translations are compared with the
reference variant of its beam width (``stop_early=False``, no length limit): the stopping bound must
not change one of them; the length limit may change translations that ran longer than their limit,
which are counted, and scored (sacreBLEU against the references). Prints one JSON line and writes it
to --output.
"""

import os
import pathlib
import platform
import statistics
import time

from absl import app, flags

from benchmarks.report import emit_result

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)

import sacrebleu  # noqa: E402
import tensorflow as tf  # noqa: E402

from xling_zoo import workdir as workdir_lib  # noqa: E402
from xling_zoo.data import corpus  # noqa: E402
from xling_zoo.decode import Translator  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained run.", required=True)
flags.DEFINE_integer("batch_size", 32, "Sentences per decoding call.")
flags.DEFINE_integer("repeats", 3, "Timed passes over the test set per variant (after one warm-up pass).")
flags.DEFINE_float("length_ratio", 2.0, "Length limit of the limited variants: ratio * source ids + offset.")
flags.DEFINE_integer("length_offset", 10, "See --length_ratio.")
flags.DEFINE_integer("max_examples", 0, "Only the first N test sentences (0 = all).")
flags.DEFINE_integer("threads", 1, "TensorFlow intra- and inter-op threads (pin as many cores).")
flags.DEFINE_string("output", None, "Where the JSON result goes (default: results/real_length_decoding_<run>.json).")

VARIANTS = [  # name, beam size, stop early, length limited, preallocated caches
    ("beam4_until_all_finished", 4, False, False, False),
    ("beam4_stopping_bound", 4, True, False, False),
    ("beam4_stopping_bound_length_limit", 4, True, True, False),
    ("beam4_stopping_bound_preallocated_caches", 4, True, False, True),
    ("greedy", 1, True, False, False),
    ("greedy_length_limit", 1, True, True, False),
    ("greedy_preallocated_caches", 1, True, False, True),
]


def _cpu_seconds():
    times = os.times()
    return times.user + times.system


def main(argv):
    del argv
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    run = workdir_lib.load_run(FLAGS.workdir)
    config = run.config
    examples = corpus.read_split(config.corpus, run.pair, "test", data_dir=config.data_dir or None)
    if FLAGS.max_examples:
        examples = examples[:FLAGS.max_examples]
    sources = [e["source"] for e in examples]
    references = [e["target"] for e in examples]
    translators = {}
    for name, beam, stop_early, limited, preallocated in VARIANTS:
        ratio, offset = (FLAGS.length_ratio, FLAGS.length_offset) if limited else (0.0, 0)
        translators[name] = Translator(run.model, run.tokenizers, config, beam_size=beam, stop_early=stop_early,
                                       length_ratio=ratio, length_offset=offset, static_shapes=preallocated)
    outputs, timings = {}, {name: [] for name, *_ in VARIANTS}
    for name, translator in translators.items():  # Warm-up: traces every batch shape.
        outputs[name] = translator.translate_all(sources, batch_size=FLAGS.batch_size)
    for _ in range(FLAGS.repeats):
        for name, translator in translators.items():  # Interleaved, so load changes hit every variant.
            wall, cpu = time.perf_counter(), _cpu_seconds()
            translator.translate_all(sources, batch_size=FLAGS.batch_size)
            timings[name].append((time.perf_counter() - wall, _cpu_seconds() - cpu))
    tokenizer = run.tokenizers.target
    rows = {}
    for name, beam, stop_early, limited, preallocated in VARIANTS:
        reference_variant = "beam4_until_all_finished" if beam > 1 else "greedy"
        tokens = int(tokenizer.tokenize(tf.constant(outputs[name])).flat_values.shape[0])
        wall = statistics.median(t[0] for t in timings[name])
        cpu = statistics.median(t[1] for t in timings[name])
        rows[name] = {
            "beam_size": beam, "stop_early": stop_early, "preallocated_caches": preallocated,
            "length_limit": f"{FLAGS.length_ratio} * source ids + {FLAGS.length_offset}" if limited else None,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "output_tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1),
            "translations_changed": sum(a != b for a, b in zip(outputs[name], outputs[reference_variant])),
            "bleu": round(sacrebleu.corpus_bleu(outputs[name], [references]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(outputs[name], [references]).score, 2),
        }
    base = rows["beam4_until_all_finished"]["wall_s"]
    for name in rows:
        rows[name]["speedup_vs_beam4_until_all_finished"] = round(base / rows[name]["wall_s"], 2)
    result = {
        "benchmark": "real_length_decoding", "command": "python -m benchmarks.real_length_decoding " + " ".join(
            f"--{k}={getattr(FLAGS, k)}" for k in ["workdir", "batch_size", "repeats", "length_ratio",
                                                   "length_offset", "max_examples", "threads"]),
        "model": config.model_name, "pair": str(run.pair), "sentences": len(sources),
        "max_decode_length": int(config.eval.max_decode_length), "machine": platform.processor() or platform.machine(),
        "load_average": list(os.getloadavg()), "variants": rows,
    }
    output = FLAGS.output or str(pathlib.Path(__file__).parent / "results" /
                                 f"real_length_decoding_{config.model_name}.json")
    emit_result(result, output)


if __name__ == "__main__":
    app.run(main)
