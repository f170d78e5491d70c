"""Multi-target runs (--pair=en-de,nl): corpus, training, evaluation, translation, export, and
transfer from a multi-target parent to a new language."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import shrink
from xling_zoo import config as config_lib
from xling_zoo import evaluate, export, trainer
from xling_zoo import transfer as transfer_lib
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus
from xling_zoo.data.corpus import Pair
from xling_zoo.errors import UserError


def small_config(corpus_spec, pair):
    config = shrink(config_lib.load_config("lstm_seq2seq"), corpus_spec)
    for assignment in ["model.embedding_dim=16", "model.units=16", "tokenizer.vocab_size=300", f"pair={pair}"]:
        config_lib.apply_override(config, assignment)
    return config


@pytest.fixture(scope="module")
def parent_dir(multiway, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("multi") / "run")
    trainer.train_and_evaluate(small_config(multiway, "en-de,nl"), workdir)
    return workdir


# === Pairs and corpora ===

def test_a_pair_with_several_targets():
    pair = Pair.parse("en-de,nl,fr")
    assert pair.target_languages == ("de", "nl", "fr") and pair.is_multi_target and str(pair) == "en-de,nl,fr"
    assert [str(p) for p in pair.single_target_pairs()] == ["en-de", "en-nl", "en-fr"]
    with pytest.raises(UserError, match=r"translates into several languages \(de, nl, fr\): name one, e.g. --pair=en-de"):
        pair.target_language
    for text, message in [("de,fr-en,nl", "several sources and several targets"), ("en-de,de", "repeats a target"),
                          ("en-de,en", "translates en into itself"), ("en-de,", "'' is not a language code")]:
        with pytest.raises(UserError, match=message):
            Pair.parse(text)


def test_a_multi_target_split_interleaves_its_targets_each_example_tagged(multiway, tmp_path):
    examples = corpus.read_split(multiway, "en-de,nl", "validation", data_dir=str(tmp_path))
    german = corpus.read_split(multiway, "en-de", "validation", data_dir=str(tmp_path))
    dutch = corpus.read_split(multiway, "en-nl", "validation", data_dir=str(tmp_path))
    assert [e["target_language"] for e in examples] == ["de", "nl"] * 100
    assert [e["target"] for e in examples[::2]] == [e["target"] for e in german]
    assert [e["target"] for e in examples[1::2]] == [e["target"] for e in dutch]
    summary = corpus.summarize(multiway, "en-de,nl", data_dir=str(tmp_path))
    assert summary["target_languages"] == ["de", "nl"] and summary["splits"]["validation"] == 200


def test_multi_target_bad_input_is_one_clear_error(multiway, tmp_path, tiny_tsv):
    # An unknown language among the targets names its missing file.
    with pytest.raises(UserError, match=r"file .*train\.fr does not exist"):
        corpus.load_split(multiway, "en-de,fr", "validation", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="a tsv: corpus holds one"):
        corpus.load_split(tiny_tsv, "en-de,nl", "train", data_dir=str(tmp_path))
    config = small_config(multiway, "en-de,nl")
    config.data.target_language_tag = False
    with pytest.raises(UserError, match="needs data.target_language_tag=True"):
        config_lib.validate(config)
    # The adversarial model's discriminator needs several sources; a one-source multi-target pair is refused.
    config = small_config(multiway, "en-de,nl")
    config_lib.apply_override(config, "model_name=adversarial")
    config.model = config_lib.load_config("adversarial").model
    with pytest.raises(UserError, match="adversarial needs several source languages"):
        trainer.train_and_evaluate(config, tmp_path / "adversarial")
    assert not (tmp_path / "adversarial").exists()


# === A multi-target run: evaluate, translate and export one target at a time ===

def test_the_run_trains_on_both_targets_and_validates_on_both(parent_dir):
    metrics = json.loads(open(f"{parent_dir}/metrics.json").read())
    assert metrics["history"] and all(np.isfinite(h["validation_loss"]) for h in metrics["history"])
    run = workdir_lib.load_run(parent_dir)
    assert {"<2de>", "<2nl>"} <= set(run.tokenizers.source.pieces())


def test_evaluate_needs_one_target_and_scores_it(parent_dir):
    with pytest.raises(UserError, match=r"translates into several languages \(de, nl\); evaluate one at a time: "
                                        r"--pair=en-de"):
        evaluate.evaluate_run(parent_dir)
    with pytest.raises(UserError, match="translates into de, nl .* not fr"):
        evaluate.evaluate_run(parent_dir, pair="en-fr")
    metrics = evaluate.evaluate_run(parent_dir, pair="en-nl", max_examples=20)
    assert metrics["pair"] == "en-nl" and metrics["examples"] == 20
    assert (workdir_lib.read_json(f"{parent_dir}/metrics_test_en-nl.json") or {}).get("pair") == "en-nl"


def run_cli(module, *flags, stdin=""):
    return subprocess.run([sys.executable, "-m", module, *flags], input=stdin, capture_output=True, text=True,
                          timeout=600)


def test_translate_and_export_name_the_language_they_write(parent_dir, tmp_path):
    result = run_cli("xling_zoo.translate", f"--workdir={parent_dir}", stdin="The red user opens a big file.\n")
    assert result.returncode == 2
    assert "name the language to write with --target_language" in result.stderr.splitlines()[-1]
    result = run_cli("xling_zoo.translate", f"--workdir={parent_dir}", "--target_language=nl",
                     stdin="The red user opens a big file.\nThe window saves the old picture.\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 2
    with pytest.raises(UserError, match="--target_language=fr: the run .* writes de, nl"):
        export.export_run(parent_dir, tmp_path / "export", target_language="fr")
    assert not (tmp_path / "export").exists()
    destination = export.export_run(parent_dir, tmp_path / "export", target_language="de", check_sentences=2)
    metadata = json.loads(open(f"{destination}/{export.METADATA_FILE}").read())
    assert metadata["target_language"] == "de" and metadata["checked_sentences"] == 2


# === Transfer from a multi-target parent to a new language ===

def test_a_new_languages_tag_starts_as_the_mean_of_the_parents_target_tags(parent_dir, multiway, tmp_path):
    child_dir = tmp_path / "child"
    transfer_lib.transfer(parent_dir, child_dir, "en-af", corpus_spec=multiway, max_train_examples=200,
                          overrides=["train.steps=1", "train.eval_every_steps=1", "train.warmup_steps=1"])
    report = json.loads((child_dir / "transfer.json").read_text())
    assert report["parent_pair"] == "en-de,nl" and report["child"]["pair"] == "en-af"
    assert report["vocabularies"]["joint"]["new_initialised_from"]["language_tag"] == 1

    # Before any update: every vocabulary-indexed weight's <2af> row is the mean of <2de> and <2nl>.
    parent = workdir_lib.load_run(parent_dir)
    config = transfer_lib.make_child_config(parent.config, "en-af")
    tokenizers = transfer_lib.child_tokenizers(parent.tokenizers, Pair.parse("en-af"), "parent", config.tokenizer)
    child = workdir_lib.build_model(config, tokenizers)
    transfer_lib.Transfer(parent, tokenizers).initialize(child)
    tag = parent.tokenizers.source.language_tag_id
    axes = child.vocab_axes()
    checked = 0
    for child_weight, parent_weight in zip(child.weights, parent.model.weights):
        if child_weight.path in axes:
            axis = axes[child_weight.path][1]
            child_rows, parent_rows = (np.moveaxis(w.numpy(), axis, 0) for w in (child_weight, parent_weight))
            np.testing.assert_allclose(child_rows[tokenizers.source.language_tag_id("af")],
                                       (parent_rows[tag("de")] + parent_rows[tag("nl")]) / 2, rtol=1e-5, atol=1e-7)
            checked += 1
    assert checked >= 2  # The embedding and the output layer.


# === Both directions: a new source language (X->en from a de->en parent) ===

def test_a_new_source_language_transfers_from_a_parent_into_english(multiway, tmp_path):
    parent_dir = tmp_path / "de-en"
    trainer.train_and_evaluate(small_config(multiway, "de-en"), parent_dir)
    child_dir = tmp_path / "af-en"
    transfer_lib.transfer(parent_dir, child_dir, "af-en", corpus_spec=multiway, max_train_examples=200,
                          overrides=["train.steps=2", "train.eval_every_steps=2", "train.warmup_steps=1"])
    report = json.loads((child_dir / "transfer.json").read_text())
    assert report["parent_pair"] == "de-en" and report["child"]["pair"] == "af-en"
    # The target side is the parent's: English keeps its tag; the only new pieces are the tags of the
    # new language and of nl, its relative mixed in by default (--mix_related=auto; every language
    # of a pair has a tag, as in train).
    assert report["child"]["mix"]["pair"] == "de,nl-en" and report["child"]["mix_related"] == ["nl"]
    assert sorted(report["vocabularies"]["joint"]["new_pieces"]) == ["<2af>", "<2nl>"]
    metrics = evaluate.evaluate_run(str(child_dir), max_examples=10)
    assert metrics["pair"] == "af-en" and metrics["examples"] == 10
