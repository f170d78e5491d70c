"""``python -m xling_zoo.evaluate --workdir=DIR [--split=test]``: scores a run's best checkpoint on a
split, the way its task says (``Task.evaluate``), and writes the outputs next to ``metrics.json``
(test) or ``metrics_<split>.json`` (other splits).

A translator (``evaluate_translations``, ``[--beam_size=N] [--pair=...]``) is scored with sacreBLEU:
BLEU, chrF and TER, with their signatures, against a copy-the-source floor. A language model
(``evaluate_language_model``) by perplexity.
"""

import json
import math
import sys
import time

import sacrebleu
import tensorflow as tf

from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus, pipeline
from xling_zoo.decode import Translator
from xling_zoo.errors import UserError
from xling_zoo.models.base import Evaluation, text_side


def score(hypotheses, references, target_language):
    """sacreBLEU BLEU, chrF and TER of ``hypotheses`` against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    metrics = {
        # trg_lang picks sacreBLEU's tokenizer for the language (e.g. zh, ja, ko).
        "bleu": sacrebleu.metrics.BLEU(trg_lang=target_language),
        "chrf": sacrebleu.metrics.CHRF(),
        "ter": sacrebleu.metrics.TER(),
    }
    result = {"signatures": {}}
    for name, metric in metrics.items():
        result[name] = round(metric.corpus_score(hypotheses, [references]).score, 2)
        result["signatures"][name] = str(metric.get_signature())
    return result


def perplexity(mean_loss):
    """exp(mean negative log-likelihood per token), capped where exp would overflow."""
    return math.exp(min(mean_loss, 700.0))


def evaluate_run(workdir, split="test", max_examples=0, **options):
    """Scores the run's best weights on ``split`` and writes its outputs and metrics.

    What is read, produced and measured is the run's task's (``Task.evaluate``; for a translator
    ``evaluate_translations``: ``beam_size``, ``pair``, ``jit_compile``). This writes what it returns:
    the outputs, one per line, and the metrics, into ``metrics.json`` for the run's own test split
    and beside it, named by the task's ``name`` (another split, another pair), otherwise.
    """
    if split not in corpus.SPLITS:
        raise UserError(f"--split={split!r} is not one of {', '.join(corpus.SPLITS)}")
    run = workdir_lib.load_run(workdir)
    result = run.model.evaluate(run, split, max_examples=max_examples, **options)
    metrics, name = result.metrics, result.name
    suffix = "" if split == "test" and not name else f"_{split}" + (f"_{name}" if name else "")
    outputs_name = result.outputs_file.format(suffix=suffix)
    workdir_lib.write_atomically(workdir_lib.join(run.workdir, outputs_name),
                                 "".join(line.replace("\n", " ") + "\n" for line in result.outputs))
    metrics[result.outputs_key] = outputs_name
    if not suffix:
        workdir_lib.update_metrics(run.workdir, metrics)
    else:
        workdir_lib.write_atomically(workdir_lib.join(run.workdir, f"metrics{suffix}.json"), json.dumps(metrics, indent=2))
    return metrics


def evaluate_translations(run, split, max_examples=0, beam_size=None, pair=None, jit_compile=False):
    """A translator's evaluation (``Seq2SeqTask.evaluate``): translates ``split`` and scores it with
    sacreBLEU (BLEU, chrF, TER), beside the copy floor (the source copied as the translation).

    ``pair`` scores another pair into one of the run's target languages than the one it trained on:
    one source of a multi-source run (``en-de`` of an ``en,nl-de`` run), an unseen source
    (zero-shot), or one target of a multi-target run (``en-nl`` of an ``en-de,nl,fr`` run, which
    needs it: a multi-target run is evaluated one target at a time). Its files then carry the pair
    in their names; ``metrics.json`` is left alone. ``jit_compile`` decodes with XLA (same
    translations, see decode.Translator).
    """
    config = run.config
    eval_pair = corpus.Pair.parse(pair) if pair else run.pair
    if eval_pair.is_multi_target:
        first = f"{','.join(eval_pair.source_languages)}-{eval_pair.target_languages[0]}"
        raise UserError(f"{'--pair=' + str(eval_pair) if pair else 'the run ' + str(run.workdir)} translates into "
                        f"several languages ({', '.join(eval_pair.target_languages)}); evaluate one at a time: "
                        f"--pair={first}")
    if eval_pair.target_language not in run.pair.target_languages:
        raise UserError(f"--pair={eval_pair}: the run in {run.workdir} translates into "
                        f"{', '.join(run.pair.target_languages)} (--pair={config.pair}), not {eval_pair.target_language}")
    translator = Translator(run.model, run.tokenizers, config, beam_size=beam_size, jit_compile=jit_compile,
                            target_language=eval_pair.target_language)
    examples = corpus.read_split(config.corpus, eval_pair, split, data_dir=config.data_dir or None,
                                 skip_bad_lines=config.get("skip_bad_lines", False))
    if max_examples:
        examples = examples[:max_examples]
    if not examples:
        raise UserError(f"the {split} split of {config.corpus} {eval_pair} is empty")
    sources = [e["source"] for e in examples]
    references = [e["target"] for e in examples]
    start = time.time()
    hypotheses = translator.translate_all(sources, batch_size=config.eval.batch_size)
    seconds = time.time() - start
    # Sources over data.max_length are translated from their first max_length tokens: counted.
    overlength = len(translator.overlength(sources))

    target = eval_pair.target_language
    metrics = score(hypotheses, references, target)
    metrics["copy_source"] = {k: v for k, v in score(sources, references, target).items() if k != "signatures"}
    metrics.update({
        "split": split,
        "pair": str(eval_pair),
        "examples": len(examples),
        "sources_cut_to_max_length": overlength,
        "decoding": {"beam_size": translator.beam_size, "length_penalty": translator.length_penalty,
                     "max_decode_length": translator.max_decode_length, "jit_compile": translator.jit_compile,
                     "seconds": round(seconds, 1)},
        "checkpoint": str(run.checkpoint),
    })
    return Evaluation(metrics, hypotheses, f"hypotheses{{suffix}}.beam{translator.beam_size}.txt", "hypotheses",
                      name=str(eval_pair) if eval_pair != run.pair else "")


def evaluate_language_model(run, split, max_examples=0):
    """A language model's evaluation (``LanguageModelTask.evaluate``): perplexity of ``split``'s
    sentences in the run's language, exp(mean negative log-likelihood per token, eos included), and
    each sentence's own perplexity as its output line. Sentences over data.max_length are scored
    on their first max_length tokens (counted)."""
    config = run.config
    examples = corpus.read_split(config.corpus, run.pair, split, data_dir=config.data_dir or None,
                                 skip_bad_lines=config.get("skip_bad_lines", False))
    if max_examples:
        examples = examples[:max_examples]
    if not examples:
        raise UserError(f"the {split} split of {config.corpus} {run.pair} is empty")
    side = text_side(config)
    sentences = [e[side] for e in examples]
    start = time.time()
    losses, tokens, cut = [], [], 0
    for begin in range(0, len(sentences), config.eval.batch_size):
        batch = tf.constant(sentences[begin:begin + config.eval.batch_size])
        inputs, labels, overlength = pipeline.lm_ids(run.tokenizers.target, batch, config.data.max_length,
                                                     truncate=True)
        token_losses = run.model.token_losses({"decoder_token_ids": inputs.to_tensor(),
                                               "target_token_ids": labels.to_tensor()})
        losses += tf.reduce_sum(token_losses, axis=1).numpy().tolist()
        tokens += labels.row_lengths().numpy().tolist()
        cut += int(tf.reduce_sum(tf.cast(overlength, tf.int32)))
    mean = sum(losses) / max(sum(tokens), 1)
    metrics = {
        "split": split,
        "language": config.language,
        "examples": len(sentences),
        "tokens": int(sum(tokens)),
        "loss": round(mean, 4),
        "perplexity": round(perplexity(mean), 4),
        "sentences_cut_to_max_length": cut,
        "seconds": round(time.time() - start, 1),
        "checkpoint": str(run.checkpoint),
    }
    outputs = [f"{perplexity(loss / max(count, 1)):.4f}" for loss, count in zip(losses, tokens)]
    return Evaluation(metrics, outputs, "perplexities{suffix}.txt", "perplexities")


# What python -m xling_zoo.evaluate prints of the metrics it wrote (each task's own, where present).
SUMMARY_KEYS = ("split", "pair", "language", "examples", "bleu", "chrf", "ter", "copy_source", "tokens", "loss",
                "perplexity")


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    metrics = evaluate_run(FLAGS.workdir, split=FLAGS.split, beam_size=FLAGS.beam_size,
                           max_examples=FLAGS.max_examples, pair=FLAGS.pair, jit_compile=FLAGS.jit_compile)
    print(json.dumps({k: metrics[k] for k in SUMMARY_KEYS if k in metrics}, indent=2))
    if "bleu" in metrics and metrics["bleu"] <= metrics["copy_source"]["bleu"]:
        print(f"Warning: BLEU {metrics['bleu']} is not above copying the source ({metrics['copy_source']['bleu']}): "
              "these translations are no more useful than their input", file=sys.stderr)


if __name__ == "__main__":
    from absl import flags

    from xling_zoo import cli

    flags.DEFINE_string("workdir", None, "Run directory to evaluate.", required=True)
    flags.DEFINE_string("split", "test", "Split to translate: train, validation or test.")
    flags.DEFINE_integer("beam_size", None, "Beam width (default: the run's eval.beam_size; 1 = greedy).")
    flags.DEFINE_integer("max_examples", 0, "Translate only the first N sentences (0 = all).")
    flags.DEFINE_string("pair", None, "Score this pair instead of the run's own (same target language), "
                        "e.g. one source of a multi-source run, or an unseen source language.")
    flags.DEFINE_bool("jit_compile", False, "Compile the decoder with XLA (faster per batch; each new "
                      "source length bucket compiles first, which pays off on large test sets).")
    cli.define_thread_flags()
    cli.run(main)
