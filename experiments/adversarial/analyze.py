"""Evidence for (or against) the adversary: training curves, held-out language identifiability of the
pooled encoder states, and de-en / zero-shot nl-en test BLEU, for runs/adversarial-{on,confusion,off}.

Run by run.sh after both training runs; writes results.json.

Held-out identifiability, two ways, on the validation split of each source language:
  * the run's own discriminator (the adversary's opponent, frozen at the best checkpoint);
  * a fresh multinomial logistic-regression probe trained on pooled states of the train split: a
    discriminator the encoder was never trained against, so it measures what the states still say
    about the language rather than how well the encoder fooled one particular opponent.
Chance is 1/3 (three balanced-ish classes; the majority-class rate is reported too).
"""

import argparse
import json
import pathlib
import random
import subprocess

import numpy as np

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus
from xling_zoo.data.pipeline import encode_source
from xling_zoo.data.tokenizer import PAD_ID
from xling_zoo.decode import Translator
from xling_zoo.evaluate import score
from xling_zoo.models.adversarial import masked_mean

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

RUNS = {"on": "adversary on, gradient reversal (default config)",
        "confusion": "adversary on, confusion objective (--set=model.adversary_objective=confusion)",
        "off": "adversary off (--set=model.adversary=false)"}
HISTORY_KEYS = ("step", "seconds", "train_translation_loss", "train_discriminator_loss",
                "train_discriminator_accuracy", "train_reversal_weight", "validation_loss", "validation_bleu")


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def pooled_states(run, sentences, batch_size=128):
    """Mean-pooled encoder states [N, width] of ``sentences`` (encoded exactly as for decoding)."""

    # In a graph: tokenizing eagerly made a later Translator.translate fail with "Sentencepiece
    # resource does not exist" (tensorflow_text resource created eagerly, then gone).
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def pool(strings):
        ids = encode_source(strings, run.tokenizers, run.config.data, run.pair.target_language)
        states, mask = run.model._encode(ids.to_tensor(default_value=PAD_ID), training=False)[:2]
        return masked_mean(states, mask)  # [:2]: the LSTM also returns its final states

    outputs = [pool(tf.constant(sentences[start:start + batch_size])).numpy()
               for start in range(0, len(sentences), batch_size)]
    return np.concatenate(outputs)


def language_data(run, split, per_language, seed):
    """(pooled states, language ids) of up to ``per_language`` sentences per source language."""
    features, labels = [], []
    for index, language in enumerate(run.pair.source_languages):
        examples = corpus.read_split(run.config.corpus, f"{language}-{run.pair.target_language}", split,
                                     data_dir=run.config.data_dir or None)
        sources = [e["source"] for e in examples]
        random.Random(seed).shuffle(sources)
        sources = sources[:per_language]
        features.append(pooled_states(run, sources))
        labels.append(np.full(len(sources), index, np.int32))
    return np.concatenate(features), np.concatenate(labels)


def discriminator_accuracy(run, features, labels):
    loss, accuracy, _ = run.model._discriminate(tf.constant(features), tf.constant(labels), training=False)
    return {"accuracy": round(float(accuracy), 4), "loss": round(float(loss), 4)}


def probe_accuracy(train_x, train_y, test_x, test_y, classes, seed):
    """A fresh softmax-regression probe (standardised features, L2, full-batch Adam)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    keras.utils.set_random_seed(seed)
    probe = keras.Sequential([keras.Input((train_x.shape[1],)),
                              keras.layers.Dense(classes, kernel_regularizer=keras.regularizers.L2(1e-3))])
    probe.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    probe.fit((train_x - mean) / std, train_y, batch_size=len(train_x), epochs=300, verbose=0)
    train_accuracy = probe.evaluate((train_x - mean) / std, train_y, verbose=0)[1]
    test_accuracy = probe.evaluate((test_x - mean) / std, test_y, verbose=0)[1]
    return {"train_accuracy": round(float(train_accuracy), 4), "heldout_accuracy": round(float(test_accuracy), 4)}


def test_bleu(run, pair, beams):
    examples = corpus.read_split(run.config.corpus, pair, "test", data_dir=run.config.data_dir or None)
    sources = [e["source"] for e in examples]
    references = [e["target"] for e in examples]
    result = {"examples": len(examples),
              "copy_source": {k: v for k, v in score(sources, references, "en").items() if k != "signatures"}}
    for beam in beams:
        translator = Translator(run.model, run.tokenizers, run.config, beam_size=beam)
        hypotheses = translator.translate_all(sources, batch_size=run.config.eval.batch_size)
        metrics = score(hypotheses, references, "en")
        result[f"beam{beam}"] = {k: metrics[k] for k in ("bleu", "chrf", "ter")}
        result["signatures"] = metrics["signatures"]
        path = run.workdir / f"hypotheses_{pair}.beam{beam}.txt"
        path.write_text("".join(h.replace("\n", " ") + "\n" for h in hypotheses), encoding="utf-8")
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--probe_train_per_language", type=int, default=2000)
    parser.add_argument("--heldout_per_language", type=int, default=1000)
    parser.add_argument("--beams", default="1,4", help="Beam widths for test BLEU, comma-separated.")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    beams = [int(b) for b in args.beams.split(",")]
    results = {"uptime_before": uptime(), "chance": round(1 / 3, 4), "runs": {}}
    for name, description in RUNS.items():
        workdir = pathlib.Path(args.runs_dir) / f"adversarial-{name}"
        if not (workdir / workdir_lib.CONFIG_FILE).exists():
            results["runs"][name] = {"description": description, "missing": True}
            continue
        run = workdir_lib.load_run(workdir)
        metrics = workdir_lib.read_json(workdir / workdir_lib.METRICS_FILE, {})
        entry = {"description": description, "workdir": str(workdir), "checkpoint": run.checkpoint,
                 "steps": metrics.get("step"), "stop_reason": metrics.get("stop_reason"),
                 "best_validation_bleu": metrics.get("best_validation_bleu"),
                 "history": [{k: h.get(k) for k in HISTORY_KEYS} for h in metrics.get("history", [])]}

        # Test BLEU first: it needs only the Translator, and is the figure most worth having.
        entry["test"] = {pair: test_bleu(run, pair, beams) for pair in ("de-en", "nl-en")}
        print(name, "test", json.dumps({p: {k: v for k, v in t.items() if k.startswith("beam")}
                                        for p, t in entry["test"].items()}), flush=True)
        heldout_x, heldout_y = language_data(run, "validation", args.heldout_per_language, args.seed)
        train_x, train_y = language_data(run, "train", args.probe_train_per_language, args.seed)
        counts = np.bincount(heldout_y, minlength=len(run.pair.source_languages))
        entry["heldout"] = {
            "languages": list(run.pair.source_languages),
            "examples_per_language": counts.tolist(),
            "majority_class_rate": round(float(counts.max() / counts.sum()), 4),
            "discriminator": discriminator_accuracy(run, heldout_x, heldout_y),
            "fresh_probe": probe_accuracy(train_x, train_y, heldout_x, heldout_y,
                                          len(run.pair.source_languages), args.seed),
        }
        print(name, "held-out", json.dumps(entry["heldout"]), flush=True)
        results["runs"][name] = entry
    results["uptime_after"] = uptime()
    loads = pathlib.Path(args.output).parent / "loads.txt"
    if loads.exists():
        results["training_loads"] = loads.read_text().splitlines()
    pathlib.Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
