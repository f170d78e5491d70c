"""Decoding speed: uncached vs cached greedy, cached+XLA greedy and beam search, side by side.

    taskset -c 1 python -m benchmarks.decoding_speed

Random weights and random source ids (decoding cost does not depend on what the weights have
learned once the output length is fixed). Every variant decodes exactly ``--target_length`` tokens
per sentence: the model is wrapped so that EOS is never the argmax / in the beam (its logit is -1e9),
hence no early stop. Measured, for the CPU Transformer (configs/transformer.py, vocabulary
``--vocab_size``), on [--batch_size, --source_length] inputs:
  * teacher-forced forward pass ``model(batch)`` (the upper bound a decoder could approach),
  * decode.uncached_greedy_search, decode.greedy_search, greedy_search under
    tf.function(jit_compile=True), decode.beam_search (beam 4);
then cached greedy of the default lstm_seq2seq, and beam 4 of configs/transformer_base.py at batch
32 (the setting of the OpenNMT-tf / CTranslate2 published CPU figures). Every figure is the median
of ``--repeats`` timed calls after one warm-up call (tracing excluded). Threads are set to
``--threads`` (pin the process to as many cores with taskset). Prints one JSON line and writes it to
--output.
"""

import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

from absl import flags

from benchmarks.report import emit_result

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)
from xling_zoo import config as config_lib
from xling_zoo.data.tokenizer import EOS_ID
from xling_zoo.models.base import VocabInfo
from xling_zoo.registry import get_model

import tensorflow as tf  # noqa: E402  (after cli, which quiets TF's start-up logs)

from xling_zoo import decode  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 64, "Sentences per decoding call (CPU Transformer and LSTM).")
flags.DEFINE_integer("source_length", 32, "Source tokens per sentence.")
flags.DEFINE_integer("target_length", 32, "Tokens decoded per sentence (EOS is suppressed).")
flags.DEFINE_integer("vocab_size", 8000, "Joint vocabulary of the CPU Transformer.")
flags.DEFINE_integer("beam_size", 4, "Beam width of the beam-search rows.")
flags.DEFINE_integer("repeats", 5, "Timed calls per variant (after one warm-up call).")
flags.DEFINE_integer("base_batch_size", 32, "Batch of the Transformer-base beam-search row.")
flags.DEFINE_integer("base_vocab_size", 32000, "Joint vocabulary of the Transformer-base row.")
flags.DEFINE_integer("threads", 1, "TensorFlow intra- and inter-op threads (pin as many cores).")
flags.DEFINE_string("output", str(pathlib.Path(__file__).parent / "results" / "decoding_speed.json"),
                    "Where the JSON result is written ('' = nowhere).")

# Published CPU figures (target tokens/s, Transformer-base En-De, beam 4, batch 32, 4 threads), from
# the CTranslate2 README benchmark table.
PUBLISHED = {"opennmt_tf": {"tokens_per_s": 209, "threads": 4},
             "ctranslate2": {"tokens_per_s": 659, "threads": 4}}


class NeverEos:
    """The model as decode.py sees it (encode, decode_step, __call__), with EOS never chosen, so
    every decoder runs exactly max_length steps and all variants produce the same token count."""

    def __init__(self, model):
        self.model = model

    @staticmethod
    def _ban_eos(logits):
        vocab = tf.shape(logits)[-1]
        return logits + tf.one_hot(EOS_ID, vocab, dtype=logits.dtype) * tf.cast(decode.NEG_INF, logits.dtype)

    def encode(self, encoder_token_ids, max_length, static_shapes=True):
        return self.model.encode(encoder_token_ids, max_length, static_shapes)

    def decoding_state_shapes(self, state):
        return self.model.decoding_state_shapes(state)

    def decoding_weights(self):
        return self.model.decoding_weights()

    def decode_step(self, token_ids, state, index, weights=None):
        logits, state = self.model.decode_step(token_ids, state, index, weights)
        return self._ban_eos(logits), state

    def __call__(self, inputs, training=False):
        return self._ban_eos(self.model(inputs, training=training))


def build(model_name, config_file=None, overrides=()):
    """A registered model with random weights, built from its config file (vocabulary overridden)."""
    config = config_lib.load_config(model_name, config_file, overrides)
    vocab_size = config.tokenizer.vocab_size
    vocab = VocabInfo(source_vocab_size=vocab_size, target_vocab_size=vocab_size, joint=True)
    model_cls = get_model(model_name)
    model_cls.validate_config(config.model, vocab, None)
    model = model_cls.from_config(config.model, vocab)
    model(model.dummy_inputs())
    return model, config


def random_ids(batch, length, vocab_size, seed):
    # Ids above the specials (pad 0, bos/eos/unk below 4); the last position is EOS like real input.
    ids = tf.random.stateless_uniform([batch, length - 1], [seed, 0], 4, vocab_size, tf.int32)
    return tf.concat([ids, tf.fill([batch, 1], EOS_ID)], 1)


def timed(fn, *args, repeats):
    """Median seconds of ``repeats`` calls after a warm-up call (tracing, XLA compilation)."""
    start = time.perf_counter()
    output = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), output)
    warmup = time.perf_counter() - start
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        output = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy(), output)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    # CPU seconds as well: on a shared core the wall time includes other people's time slices.
    return output, {"median_s": round(statistics.median(seconds), 4), "runs_s": [round(s, 4) for s in seconds],
                    "median_cpu_s": round(statistics.median(cpu_seconds), 4), "warmup_s": round(warmup, 2)}


def decoder_row(name, fn, source, tokens, repeats):
    output, row = timed(fn, source, repeats=repeats)
    generated = int(tf.math.count_nonzero(output))  # No PAD: every sentence ran to the last step.
    if generated != tokens:
        raise RuntimeError(f"{name}: {generated} tokens generated, {tokens} expected (fixed length broken)")
    row.update(tokens=tokens, tokens_per_s=round(tokens / row["median_s"], 1),
               tokens_per_cpu_s=round(tokens / row["median_cpu_s"], 1))
    print(f"  {name}: {row['median_s']} s ({row['median_cpu_s']} CPU s), {row['tokens_per_s']} tokens/s",
          file=sys.stderr)
    return row


def transformer_rows(repeats):
    """Forward pass and the four decoders on the CPU Transformer."""
    model, config = build("transformer", overrides=[f"tokenizer.vocab_size={FLAGS.vocab_size}"])
    wrapped = NeverEos(model)
    batch, length = FLAGS.batch_size, FLAGS.target_length
    source = random_ids(batch, FLAGS.source_length, FLAGS.vocab_size, seed=1)
    tokens = batch * length

    # Teacher forcing on [batch, target_length] decoder inputs: BOS + random ids.
    decoder_ids = tf.concat([tf.fill([batch, 1], 2), random_ids(batch, length, FLAGS.vocab_size, 2)[:, :-1]], 1)
    forward = tf.function(lambda s: model({"encoder_token_ids": s, "decoder_token_ids": decoder_ids}))
    _, forward_row = timed(forward, source, repeats=repeats)
    forward_row.update(tokens=tokens, tokens_per_s=round(tokens / forward_row["median_s"], 1),
                       tokens_per_cpu_s=round(tokens / forward_row["median_cpu_s"], 1))
    print(f"  forward: {forward_row['median_s']} s", file=sys.stderr)

    variants = {
        "uncached_greedy": tf.function(lambda s: decode.uncached_greedy_search(wrapped, s, length)),
        "cached_greedy": tf.function(lambda s: decode.greedy_search(wrapped, s, length)),
        "cached_greedy_xla": tf.function(lambda s: decode.greedy_search(wrapped, s, length), jit_compile=True),
        f"beam{FLAGS.beam_size}": tf.function(
            lambda s: decode.beam_search(wrapped, s, length, FLAGS.beam_size, config.eval.length_penalty)),
        f"beam{FLAGS.beam_size}_xla": tf.function(
            lambda s: decode.beam_search(wrapped, s, length, FLAGS.beam_size, config.eval.length_penalty),
            jit_compile=True),
    }
    rows = {name: decoder_row(name, fn, source, tokens, repeats) for name, fn in variants.items()}
    for row in rows.values():
        row["fraction_of_forward_tokens_per_s"] = round(row["tokens_per_s"] / forward_row["tokens_per_s"], 3)
        row["fraction_of_forward_tokens_per_cpu_s"] = round(
            row["tokens_per_cpu_s"] / forward_row["tokens_per_cpu_s"], 3)
    return {"config": "configs/transformer.py", "vocab_size": FLAGS.vocab_size,
            "weights": model.count_params(), "forward_teacher_forced": forward_row, "decoders": rows}


def lstm_row(repeats):
    """Cached greedy of the default lstm_seq2seq (its config's vocabulary)."""
    model, config = build("lstm_seq2seq")
    vocab_size = config.tokenizer.vocab_size
    source = random_ids(FLAGS.batch_size, FLAGS.source_length, vocab_size, seed=3)
    fn = tf.function(lambda s: decode.greedy_search(NeverEos(model), s, FLAGS.target_length))
    row = decoder_row("lstm cached_greedy", fn, source, FLAGS.batch_size * FLAGS.target_length, repeats)
    return {"config": "configs/lstm_seq2seq.py", "vocab_size": vocab_size, "weights": model.count_params(),
            "cached_greedy": row}


def transformer_base_row(repeats):
    """Beam search of Transformer-base at the published benchmark's batch size."""
    model, config = build("transformer", "configs/transformer_base.py",
                          [f"tokenizer.vocab_size={FLAGS.base_vocab_size}"])
    batch = FLAGS.base_batch_size
    source = random_ids(batch, FLAGS.source_length, FLAGS.base_vocab_size, seed=4)
    fn = tf.function(lambda s: decode.beam_search(NeverEos(model), s, FLAGS.target_length, FLAGS.beam_size,
                                                  config.eval.length_penalty))
    row = decoder_row(f"transformer_base beam{FLAGS.beam_size}", fn, source, batch * FLAGS.target_length, repeats)
    per_core = round(row["tokens_per_s"] / FLAGS.threads, 1)
    per_cpu_second = round(row["tokens_per_cpu_s"] / FLAGS.threads, 1)
    return {"config": "configs/transformer_base.py", "vocab_size": FLAGS.base_vocab_size,
            "weights": model.count_params(), "batch_size": batch, f"beam{FLAGS.beam_size}": row,
            "tokens_per_s_per_core": per_core, "tokens_per_cpu_s_per_core": per_cpu_second,
            "published_per_core": {name: round(p["tokens_per_s"] / p["threads"], 1) for name, p in PUBLISHED.items()},
            "published": PUBLISHED}


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(_):
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    start = time.perf_counter()
    result = {
        "benchmark": "decoding_speed",
        "command": " ".join(["python -m benchmarks.decoding_speed"] + sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
                    "threads": FLAGS.threads, "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "tensorflow": tf.__version__,
                    # The CPU is shared with other people's experiments: record how loaded it was.
                    "uptime_before": uptime()},
        "setting": {"batch_size": FLAGS.batch_size, "source_length": FLAGS.source_length,
                    "target_length": FLAGS.target_length, "beam_size": FLAGS.beam_size,
                    "repeats": FLAGS.repeats, "weights": "random", "eos": "suppressed (fixed length)"},
    }
    print("transformer (CPU config):", file=sys.stderr)
    result["transformer"] = transformer_rows(FLAGS.repeats)
    result["machine"]["uptime_after_transformer"] = uptime()
    print("lstm_seq2seq:", file=sys.stderr)
    result["lstm_seq2seq"] = lstm_row(FLAGS.repeats)
    print("transformer_base:", file=sys.stderr)
    result["transformer_base"] = transformer_base_row(FLAGS.repeats)
    decoders = result["transformer"]["decoders"]
    uncached = decoders["uncached_greedy"]["median_s"]
    result["summary"] = {
        "cached_speedup_over_uncached": round(uncached / decoders["cached_greedy"]["median_s"], 1),
        "cached_xla_speedup_over_uncached": round(uncached / decoders["cached_greedy_xla"]["median_s"], 1),
        "cached_fraction_of_forward": decoders["cached_greedy"]["fraction_of_forward_tokens_per_s"],
        "cached_xla_fraction_of_forward": decoders["cached_greedy_xla"]["fraction_of_forward_tokens_per_s"],
        "cpu_time_cached_speedup_over_uncached": round(
            decoders["uncached_greedy"]["median_cpu_s"] / decoders["cached_greedy"]["median_cpu_s"], 1),
        "cpu_time_cached_fraction_of_forward": decoders["cached_greedy"]["fraction_of_forward_tokens_per_cpu_s"],
        "transformer_base_beam_tokens_per_s_per_core": result["transformer_base"]["tokens_per_s_per_core"],
        "transformer_base_beam_tokens_per_cpu_s_per_core": result["transformer_base"]["tokens_per_cpu_s_per_core"],
    }
    result["machine"]["uptime_after"] = uptime()
    result["seconds"] = round(time.perf_counter() - start, 1)
    emit_result(result, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
