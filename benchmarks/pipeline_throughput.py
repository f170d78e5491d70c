"""Input pipeline throughput on the built-in corpus: examples/s and real tokens/s of training batches.

    XLING_ZOO_WHEELS_DIR=/tmp/corpus_wheels python -m benchmarks.pipeline_throughput

Trains the run's tokenizers on the training split (as the trainer does, timed separately), then
iterates ``pipeline.make_dataset(..., training=True)`` (shuffle, batched tokenization, overlength
handling, length buckets, padding) for one warm-up pass and ``--epochs`` timed passes, twice over:
from the prepared corpus, and from examples cached in memory (the pipeline alone; the trainer reads
each split once into memory and batches from there since bbe380c). Reports the median pass. Real tokens are the non-padding ids of the encoder input and of the
labels; padded tokens count both sides' full [batch, bucket length] tensors.

Prints one JSON line and writes it to --output.
"""

import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

from absl import flags

from benchmarks.report import emit_result

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)
from xling_zoo import config as config_lib
from xling_zoo.data import corpus, pipeline
from xling_zoo.data.tokenizer import PAD_ID, Tokenizers, train_tokenizers

import tensorflow as tf  # noqa: E402  (after cli, which quiets TF's start-up logs)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lstm_seq2seq", "Config whose tokenizer and data sections are measured.")
flags.DEFINE_multi_string("set", [], "Config override key=value, repeatable: --set=data.tokens_per_batch=8192.")
flags.DEFINE_string("corpus", "builtin", "Corpus spec.")
flags.DEFINE_string("pair", "en-de", "Language pair.")
flags.DEFINE_string("data_dir", None, "Prepared-data directory (default $XLING_ZOO_DATA_DIR or ~/.cache/xling_zoo).")
flags.DEFINE_string("tokenizers_dir", None, "Reuse the tokenizers saved here (trained and saved here if absent).")
flags.DEFINE_integer("epochs", 5, "Timed passes per source, after one warm-up pass.")
flags.DEFINE_string("output", str(pathlib.Path(__file__).parent / "results" / "pipeline_throughput.json"),
                    "Where the JSON result is written ('' = nowhere).")


def count_pass(dataset):
    """One pass: seconds, examples, batches, real source/target tokens, padded tokens."""
    totals = dict(examples=0, batches=0, source_tokens=0, target_tokens=0, padded_tokens=0)
    start = time.perf_counter()
    for batch in dataset:
        encoder, target = batch["encoder_token_ids"], batch["target_token_ids"]
        totals["batches"] += 1
        totals["examples"] += int(tf.shape(encoder)[0])
        totals["source_tokens"] += int(tf.math.count_nonzero(encoder != PAD_ID))
        totals["target_tokens"] += int(tf.math.count_nonzero(target != PAD_ID))
        totals["padded_tokens"] += int(tf.size(encoder)) + int(tf.size(target))
    totals["seconds"] = time.perf_counter() - start
    return totals


def measure(dataset, epochs):
    count_pass(dataset)  # warm-up: tracing, thread pools, the cache when there is one
    passes = [count_pass(dataset) for _ in range(epochs)]
    seconds = [p["seconds"] for p in passes]
    median = statistics.median(seconds)
    first = passes[0]
    real = first["source_tokens"] + first["target_tokens"]
    return {
        "pass_seconds": [round(s, 3) for s in seconds],
        "median_pass_seconds": round(median, 3),
        "examples_per_pass": first["examples"],
        "batches_per_pass": first["batches"],
        "examples_per_s": round(first["examples"] / median),
        "real_tokens_per_s": round(real / median),
        "real_target_tokens_per_s": round(first["target_tokens"] / median),
        "padded_tokens_per_s": round(first["padded_tokens"] / median),
        "padding_fraction": round(1 - real / first["padded_tokens"], 3),
    }


def load_tokenizers(config, pair, data_dir):
    directory = pathlib.Path(FLAGS.tokenizers_dir or tempfile.mkdtemp(prefix="xling_zoo_bench_"))
    if (directory / "tokenizers.json").exists():
        return Tokenizers.load(directory), None
    start = time.perf_counter()
    examples = corpus.read_split(FLAGS.corpus, pair, "train", data_dir=data_dir)
    languages = sorted(set(pair.source_languages) | {pair.target_language})
    tokenizers = train_tokenizers(examples, config.tokenizer, languages, seed=config.train.seed)
    seconds = time.perf_counter() - start
    tokenizers.save(directory)
    return tokenizers, seconds


def command():
    env = [f"{name}={os.environ[name]}" for name in ("XLING_ZOO_WHEELS_DIR", "XLING_ZOO_DATA_DIR")
           if name in os.environ]
    return " ".join(env + ["python -m benchmarks.pipeline_throughput"] + sys.argv[1:])


def main(_):
    config = config_lib.load_config(FLAGS.model, overrides=FLAGS.set)
    pair = corpus.Pair.parse(FLAGS.pair)
    data_dir = FLAGS.data_dir
    tokenizers, tokenizer_seconds = load_tokenizers(config, pair, data_dir)

    def dataset(examples):
        return pipeline.make_dataset(examples, tokenizers, config.data, target_language=pair.target_language,
                                     source_languages=pair.source_languages, training=True,
                                     seed=config.train.seed)

    examples = corpus.load_split(FLAGS.corpus, pair, "train", data_dir=data_dir)
    report = pipeline.length_report(examples, tokenizers, config.data, target_language=pair.target_language)
    result = {
        "benchmark": "pipeline_throughput",
        "command": command(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "tensorflow": tf.__version__,
                    # The CPU is shared: a load above cpu_count means the figures are understated.
                    "load_average_1m_before": round(os.getloadavg()[0], 2)},
        "corpus": FLAGS.corpus, "pair": FLAGS.pair,
        "config": {"model": FLAGS.model, "tokenizer": config.tokenizer.to_dict(), "data": config.data.to_dict()},
        "tokenizer_training_seconds": None if tokenizer_seconds is None else round(tokenizer_seconds, 1),
        "length_report": report,
        "from_corpus": measure(dataset(examples), FLAGS.epochs),
        "from_memory": measure(dataset(examples.cache()), FLAGS.epochs),
    }
    result["machine"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    emit_result(result, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
