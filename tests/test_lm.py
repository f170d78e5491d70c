"""The `lm` model end to end: one language read from a pair's corpus, next-token training, validation
perplexity picking the best checkpoint, `evaluate` reporting perplexity, and the mistakes a user
makes with one (a pair without a language, a language on a translator...)."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import make_pairs, run_cli_commands, shrink
from xling_zoo import config as config_lib
from xling_zoo import trainer
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import pipeline
from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from xling_zoo.errors import UserError
from xling_zoo.evaluate import evaluate_run

TINY_LM = ["--set=tokenizer.vocab_size=300", "--set=data.tokens_per_batch=1024", "--set=data.max_length=48",
           "--set=data.bucket_boundaries=(24, 48)", "--set=train.warmup_steps=5",
           "--set=model.transformer.hidden_dim=32", "--set=model.transformer.intermediate_dim=64",
           "--set=model.transformer.num_heads=2", "--set=model.transformer.num_layers=1"]


@pytest.fixture(scope="module")
def lm_run(tiny_tsv, tmp_path_factory):
    """`python -m xling_zoo.train --model=lm --language=de` on the made-up corpus's German side."""
    workdir = tmp_path_factory.mktemp("lm") / "run"
    args = ["--model=lm", "--language=de", f"--corpus={tiny_tsv}", f"--workdir={workdir}", "--steps=90",
            "--set=train.eval_every_steps=30", *TINY_LM]
    done, = run_cli_commands("train", [(args, "")], tmp_path_factory.mktemp("results") / "train.json")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir, done


def lm_config(corpus, *assignments):
    config = shrink(config_lib.load_config("lm", overrides=["language=de"]), corpus)
    for assignment in TINY_LM + list(assignments):
        config_lib.apply_override(config, assignment.removeprefix("--set="))
    return config


def test_the_command_trains_on_one_side_and_picks_the_checkpoint_of_lowest_validation_perplexity(lm_run):
    workdir, done = lm_run
    config = json.loads((workdir / "config.json").read_text())
    assert (config["language"], config["pair"], config["train"]["selection_metric"]) == ("de", "en-de", "perplexity")
    metrics = json.loads((workdir / "metrics.json").read_text())
    perplexities = [h["validation_perplexity"] for h in metrics["history"]]
    assert len(perplexities) == 3 and perplexities[-1] < perplexities[0] < 300 * 2
    assert metrics["best_step"] == metrics["history"][int(np.argmin(perplexities))]["step"]
    for h in metrics["history"]:
        assert h["validation_perplexity"] == pytest.approx(math.exp(h["validation_loss"]), rel=1e-3)
    assert "by validation perplexity" in done.stdout
    assert "on 1200 sentences" in done.stdout  # The German side of 1,200 pairs, not 2,400 sentences.


def test_its_tokenizer_knows_the_language_only(lm_run):
    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)
    german = " " + " ".join(target for _, target in make_pairs(1400, seed=0)[:1200])
    english = " " + " ".join(source for source, _ in make_pairs(1400, seed=0)[:1200])
    pieces = [piece.replace("\u2581", " ") for piece in run.tokenizers.target.pieces()
              if not (piece.startswith("<") and piece.endswith(">"))]
    # Every piece is German text; a tokenizer trained on both sides would hold English ones.
    assert [piece for piece in pieces if piece not in german] == []
    assert [piece for piece in pieces if piece not in english]  # Not merely letters both share.


def test_evaluate_reports_the_perplexity_validation_measured(lm_run):
    workdir, _ = lm_run
    metrics = evaluate_run(workdir, split="validation")
    best = json.loads((workdir / "metrics.json").read_text())
    best = next(h for h in best["history"] if h["step"] == best["best_step"])
    # The same sentences (none over data.max_length), the same weights: the same figure.
    assert metrics["sentences_cut_to_max_length"] == 0
    assert metrics["perplexity"] == pytest.approx(best["validation_perplexity"], rel=1e-3)
    lines = (workdir / metrics["perplexities"]).read_text().splitlines()
    assert len(lines) == metrics["examples"] == 100
    # Per-sentence perplexities whose token-weighted log-mean is the split's.
    assert min(float(x) for x in lines) < metrics["perplexity"] < max(float(x) for x in lines)
    test = evaluate_run(workdir)
    assert json.loads((workdir / "metrics.json").read_text())["perplexity"] == test["perplexity"]


def test_evaluate_refuses_a_translators_options(lm_run):
    workdir, _ = lm_run
    with pytest.raises(UserError, match="beam_size is a translator's option"):
        evaluate_run(workdir, beam_size=4)
    with pytest.raises(UserError, match="pair is a translator's option"):
        evaluate_run(workdir, pair="en-de")


def test_the_lstm_language_model_learns(tiny_tsv, tmp_path):
    config = lm_config(tiny_tsv, "model.decoder_type=lstm", "model.lstm.embedding_dim=16", "model.lstm.units=16",
                       "train.steps=60", "train.eval_every_steps=20")
    metrics = trainer.train_and_evaluate(config, tmp_path / "lstm")
    perplexities = [h["validation_perplexity"] for h in metrics["history"]]
    assert perplexities[-1] < 0.7 * perplexities[0]
    run = workdir_lib.load_run(tmp_path / "lstm")
    assert type(run.model).__name__ == "LSTMLM"


def test_lm_batches_are_the_sentence_shifted_by_one(tiny_tsv, lm_run):
    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)
    texts = tf.data.Dataset.from_tensor_slices(["Der rote Benutzer öffnet die Datei.", "Ein Haus.", "x " * 60])
    batches = list(pipeline.make_lm_dataset(texts, run.tokenizers.target, run.config.data, training=False))
    rows = [(inputs, labels) for batch in batches
            for inputs, labels in zip(batch["decoder_token_ids"].numpy(), batch["target_token_ids"].numpy())]
    assert len(rows) == 2  # The 60-word line is over data.max_length=48: dropped.
    for inputs, labels in rows:
        real = labels != PAD_ID
        assert inputs[0] == BOS_ID and labels[real][-1] == EOS_ID
        assert list(inputs[1:real.sum()]) == list(labels[:real.sum() - 1])
        assert set(batches[0]) == {"decoder_token_ids", "target_token_ids"}


@pytest.mark.parametrize("model, assignments, message", [
    ("lm", [], "models one language: name it"),
    ("lm", ["language=fr", "pair=en-de"], "'fr' is not a side of pair=en-de"),
    ("lm", ["language=de", "pair=en,fr-de"], "reads one side of a single pair"),
    ("lm", ["language=de", "mix.pair=en-nl", "mix.ratio=0.5"], "a language model takes none"),
    ("lm", ["language=en"], "name the pair whose en side to read"),
    ("lstm_seq2seq", ["language=de"], "lstm_seq2seq translates: give it a pair"),
])
def test_a_language_where_none_fits_and_none_where_one_is_needed(model, assignments, message):
    config = config_lib.load_config(model, overrides=assignments)
    with pytest.raises(UserError, match=message):
        config_lib.validate(config)


def test_an_unknown_network_is_one_clear_error(tiny_tsv, tmp_path):
    config = lm_config(tiny_tsv, "model.decoder_type=gru")
    with pytest.raises(UserError, match="model.decoder_type='gru' must be one of transformer, lstm"):
        trainer.train_and_evaluate(config, tmp_path / "gru")
    assert not os.path.exists(tmp_path / "gru" / "config.json")


def test_a_run_directory_from_before_the_language_key_still_resumes(tiny_config, tmp_path):
    config = tiny_config("lstm_seq2seq")
    old = config.to_dict()
    del old["language"]
    tmp_path.joinpath("config.json").write_text(json.dumps(old, default=list))
    assert workdir_lib.check(config, tmp_path) == "resume"
    # Another language is another run: its checkpoints and tokenizer cannot be reused.
    german, english = lm_config(config.corpus), lm_config(config.corpus)
    english.language = "en"
    assert config_lib.incompatible_keys(german, english) == ["language"]
