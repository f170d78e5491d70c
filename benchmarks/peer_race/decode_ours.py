"""xling_zoo's decoding side of benchmarks/peer_race/race.py (our venv), and the validation
cross-entropy of our run without label smoothing, the figure OpenNMT-tf's evaluation reports.

    taskset -c 1 python -m benchmarks.peer_race.decode_ours --workdir=RUN --sources=test.en \
        --hypotheses_prefix=OUT/ours --timings=OUT/ours.json

Greedy and beam 4 with the run's own decoding settings (length penalty, max_decode_length), through
``Translator.translate_all`` (raw strings in and out, SentencePiece in the graph, sentences sorted
by length and cut in batches of --batch_size): one warm-up pass per variant, then --repeats timed
passes, variants interleaved, as benchmarks/real_length_decoding.py times them. race.py counts the
output tokens and scores the translations, the same way for every system.
"""

import json
import os
import statistics
import time

from absl import app, flags

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)

import tensorflow as tf  # noqa: E402

from xling_zoo import workdir as workdir_lib  # noqa: E402
from xling_zoo.data import corpus, mixing, pipeline  # noqa: E402
from xling_zoo.decode import Translator  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The trained run.", required=True)
flags.DEFINE_string("sources", None, "Raw source sentences, one per line.", required=True)
flags.DEFINE_integer("batch_size", 32, "Sentences per decoding call.")
flags.DEFINE_integer("repeats", 3, "Timed passes per variant after one warm-up pass.")
flags.DEFINE_integer("threads", 1, "TensorFlow intra- and inter-op threads (pin as many cores).")
flags.DEFINE_string("hypotheses_prefix", None, "Translations go to PREFIX.<variant>.txt.", required=True)
flags.DEFINE_string("timings", None, "Where the JSON of timings goes.", required=True)
flags.DEFINE_bool("validation_loss", True, "Also measure the validation cross-entropy without label smoothing.")

VARIANTS = (("greedy", 1), ("beam4", 4))


def _cpu_seconds():
    times = os.times()
    return times.user + times.system


def validation_cross_entropy(run):
    """Mean cross-entropy per real target token (pieces + eos) of the validation split, no label
    smoothing (a loaded model has none; training adds train.label_smoothing), on the batches the
    trainer validates on (pairs over data.max_length dropped)."""
    config = run.config
    languages = mixing.languages(config)
    examples = corpus.load_split(config.corpus, run.pair, "validation", data_dir=config.data_dir or None)
    dataset = pipeline.make_dataset(examples, run.tokenizers, config.data, training=False,
                                    target_language=run.pair.target_languages[0],
                                    source_languages=languages.source, target_languages=languages.target)

    @tf.function
    def weighted_loss(batch):
        tokens = tf.reduce_sum(tf.cast(tf.not_equal(batch["target_token_ids"], 0), tf.float32))
        return run.model.compute_losses(batch, training=False)["loss"] * tokens, tokens

    total, tokens = 0.0, 0.0
    for batch in dataset:
        loss, count = weighted_loss(batch)
        total, tokens = total + float(loss), tokens + float(count)
    return {"cross_entropy": round(total / max(tokens, 1.0), 4), "target_tokens": int(tokens)}


def main(argv):
    del argv
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    run = workdir_lib.load_run(FLAGS.workdir)
    with open(FLAGS.sources, encoding="utf-8") as f:
        sources = [line.rstrip("\n") for line in f]
    translators = {name: Translator(run.model, run.tokenizers, run.config, beam_size=beam) for name, beam in VARIANTS}
    passes = {name: [] for name in translators}
    for name, translator in translators.items():  # Warm-up: traces every batch shape.
        hypotheses = translator.translate_all(sources, batch_size=FLAGS.batch_size)
        with open(f"{FLAGS.hypotheses_prefix}.{name}.txt", "w", encoding="utf-8") as f:
            f.writelines(h.replace("\n", " ") + "\n" for h in hypotheses)
    for _ in range(FLAGS.repeats):
        for name, translator in translators.items():  # Interleaved, so load changes hit every variant.
            wall, cpu = time.perf_counter(), _cpu_seconds()
            translator.translate_all(sources, batch_size=FLAGS.batch_size)
            passes[name].append({"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(_cpu_seconds() - cpu, 3)})
    result = {"checkpoint": str(run.checkpoint), "variants": {}}
    for name, beam in VARIANTS:
        translator = translators[name]
        result["variants"][name] = {
            "beam_size": beam, "length_penalty": translator.length_penalty,
            "max_decode_length": translator.max_decode_length, "passes": passes[name],
            "median_wall_s": round(statistics.median(p["wall_s"] for p in passes[name]), 3),
            "median_cpu_s": round(statistics.median(p["cpu_s"] for p in passes[name]), 3)}
    if FLAGS.validation_loss:
        result["validation"] = validation_cross_entropy(run)
    with open(FLAGS.timings, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
