"""Transfer: a tiny en-de parent (trained once per module) carried to a made-up en-nl child."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import make_pairs, shrink, write_tsv
from xling_zoo import config as config_lib
from xling_zoo import transfer as transfer_lib
from xling_zoo import workdir as workdir_lib
from xling_zoo.data.corpus import Pair
from xling_zoo.data.tokenizer import SubwordTokenizer, Tokenizers
from xling_zoo.errors import UserError
from xling_zoo.registry import get_model

SENTENCES = ["The red user opens a big file.", "The window saves the old picture.", "The folder copies a house."]


def parent_config(corpus_spec):
    config = shrink(config_lib.load_config("lstm_seq2seq"), corpus_spec)
    # The made-up grammar has too few distinct pieces for shrink()'s vocabulary size.
    for assignment in ["model.embedding_dim=16", "model.units=16", "tokenizer.vocab_size=300"]:
        config_lib.apply_override(config, assignment)
    return config


@pytest.fixture(scope="module")
def parent_dir(tiny_tsv, tmp_path_factory):
    from xling_zoo import trainer

    workdir = tmp_path_factory.mktemp("parent") / "run"
    trainer.train_and_evaluate(parent_config(tiny_tsv), workdir)
    return workdir


@pytest.fixture(scope="module")
def nl_tsv(tmp_path_factory):
    """An en-nl child corpus whose sentences are other draws of the same grammar."""
    directory = tmp_path_factory.mktemp("nl_corpus")
    pairs = make_pairs(800, seed=7, column=1)
    files = [write_tsv(directory / f"{split}.tsv", rows)
             for split, rows in (("train", pairs[:600]), ("validation", pairs[600:700]), ("test", pairs[700:]))]
    return "tsv:" + ",".join(str(f) for f in files)


def translations(model, tokenizers, config):
    from xling_zoo.decode import Translator

    return Translator(model, tokenizers, config, beam_size=1).translate_all(SENTENCES)


def listing(directory):
    return sorted((str(p.relative_to(directory)), p.read_bytes()) for p in directory.rglob("*") if p.is_file())


# === Identical vocabulary: the child starts as the parent ===

def test_the_parent_loads_every_trained_weight(parent_dir):
    # Transfer is only as good as the reload: two loads of the best checkpoint agree on every weight
    # (freshly initialised weights would differ).
    first, second = workdir_lib.load_run(parent_dir), workdir_lib.load_run(parent_dir)
    for a, b in zip(first.model.weights, second.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_identical_vocabulary_gives_the_parents_translations(parent_dir):
    parent = workdir_lib.load_run(parent_dir)
    config = transfer_lib.make_child_config(parent.config, parent.config.pair)
    tokenizers = transfer_lib.child_tokenizers(parent.tokenizers, parent.pair, "parent", config.tokenizer)
    hook = transfer_lib.Transfer(parent, tokenizers, "parent")
    child = workdir_lib.build_model(config, tokenizers)
    report = hook.initialize(child)

    assert report["remapped"] == {} and len(report["copied"]) == len(child.weights)
    assert report["vocabularies"]["joint"]["new"] == 0
    batch = {"encoder_token_ids": np.array([[4, 9, 12, 3]]), "decoder_token_ids": np.array([[2, 7, 30, 11]])}
    np.testing.assert_array_equal(child(batch).numpy(), parent.model(batch).numpy())
    assert translations(child, tokenizers, config) == translations(parent.model, parent.tokenizers, parent.config)


def test_parent_vocabulary_adds_the_missing_language_tag(parent_dir):
    parent = workdir_lib.load_run(parent_dir)
    config = transfer_lib.make_child_config(parent.config, "en-nl")
    tokenizers = transfer_lib.child_tokenizers(parent.tokenizers, Pair.parse("en-nl"), "parent", config.tokenizer)
    size = parent.tokenizers.source.vocab_size
    assert tokenizers.joint and tokenizers.source.vocab_size == size + 1
    assert tokenizers.source.id_to_piece(size) == "<2nl>"
    child = workdir_lib.build_model(config, tokenizers)
    report = transfer_lib.Transfer(parent, tokenizers, "parent").initialize(child)

    summary = report["vocabularies"]["joint"]
    assert (summary["kept"], summary["new"], summary["new_initialised_from"]["language_tag"]) == (size, 1, 1)
    assert summary["new_pieces"] == ["<2nl>"]
    assert set(report["remapped"]) == set(child.vocab_axes())
    source = child.source_embedding.embeddings.numpy()
    parent_source = parent.model.source_embedding.embeddings.numpy()
    np.testing.assert_array_equal(source[:size], parent_source)
    # The new tag starts as the tag the parent was trained with: the child first translates like it.
    np.testing.assert_array_equal(source[size], parent_source[parent.tokenizers.source.piece_to_id("<2de>")])
    np.testing.assert_array_equal(child.logits.kernel.numpy()[:, :size], parent.model.logits.kernel.numpy())


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_every_vocabulary_weight_of_a_transformer_is_remapped(parent_dir, tmp_path, tie_embeddings):
    # Nothing in transfer is model-specific: vocab_axes() alone says what to remap (a tied matrix once).
    config = config_lib.load_config("transformer", overrides=[
        "model.hidden_dim=16", "model.num_heads=2", "model.intermediate_dim=32", "model.num_encoder_layers=1",
        "model.num_decoder_layers=1", "model.max_length=64", f"model.tie_embeddings={tie_embeddings}"])
    tokenizers = Tokenizers.load(parent_dir / "tokenizer")
    parent = workdir_lib.Run(workdir=tmp_path, config=config, tokenizers=tokenizers,
                             model=workdir_lib.build_model(config, tokenizers), checkpoint="(in memory)")
    child_tokenizers = transfer_lib.child_tokenizers(tokenizers, Pair.parse("en-nl"), "parent", config.tokenizer)
    child = workdir_lib.build_model(transfer_lib.make_child_config(config, "en-nl"), child_tokenizers)
    report = transfer_lib.Transfer(parent, child_tokenizers).initialize(child)

    axes = child.vocab_axes()
    assert set(report["remapped"]) == set(axes) and len(report["copied"]) == len(child.weights) - len(axes)
    size = tokenizers.source.vocab_size
    for new, old in zip(child.weights, parent.model.weights):
        if new.path in axes:
            kept = np.take(new.numpy(), np.arange(size), axis=axes[new.path][1])
            np.testing.assert_array_equal(kept, old.numpy(), err_msg=new.path)
        else:
            np.testing.assert_array_equal(new.numpy(), old.numpy(), err_msg=new.path)


# === Remapping on a constructed example ===

def test_remap_keeps_shared_pieces_and_composes_new_ones():
    german = [t for _, t in make_pairs(300, seed=3, column=0)]
    parent = SubwordTokenizer.train(german, vocab_size=300, language_tags=["<2en>", "<2de>"])
    child = parent.add_pieces(["<2nl>", "Dateien"])
    child_pieces = child.pieces()
    remap = transfer_lib.remap_vocabulary(parent, child, parent_tags=["<2de>"])

    new = [p for p in child_pieces if p not in set(parent.pieces())]
    assert remap.kept == parent.vocab_size and remap.child_size - remap.kept == len(new) > 0
    assert remap.new_pieces == new
    # Rows that name their parent id make every kept row checkable; axis 1 is a kernel's columns.
    rows = np.stack([np.arange(parent.vocab_size, dtype=np.float32), np.ones(parent.vocab_size, np.float32)], 1)
    out = transfer_lib.remap_array(rows, 0, remap)
    columns = transfer_lib.remap_array(rows.T, 1, remap)
    np.testing.assert_array_equal(columns, out.T)
    for i, piece in enumerate(child_pieces[:parent.vocab_size]):
        assert out[i, 0] == parent.piece_to_id(piece) == i
    tag = child.piece_to_id("<2nl>")
    assert out[tag, 0] == parent.piece_to_id("<2de>") and remap.kinds[tag] == "language_tag"
    word = child.piece_to_id("Dateien")
    pieces_of_word = parent.tokenize(["Dateien"]).to_list()[0]
    pieces_of_word = pieces_of_word[1:] if parent.id_to_piece(pieces_of_word[0]) == "▁" else pieces_of_word
    assert remap.kinds[word] == "pieces" and out[word, 0] == pytest.approx(np.mean(pieces_of_word))


def test_remap_between_two_trained_vocabularies_counts_the_overlap():
    german = [t for _, t in make_pairs(300, seed=3, column=0)]
    dutch = [t for _, t in make_pairs(300, seed=3, column=1)]
    tags = ["<2de>", "<2en>", "<2nl>"]
    parent = SubwordTokenizer.train(german, vocab_size=300, language_tags=tags[:2])
    child = SubwordTokenizer.train(dutch, vocab_size=300, language_tags=tags)
    remap = transfer_lib.remap_vocabulary(parent, child)
    shared = set(parent.pieces()) & set(child.pieces())
    assert remap.kept == len(shared) and remap.child_size - remap.kept == len(set(child.pieces()) - shared)
    for i, piece in enumerate(child.pieces()):
        expected = parent.pieces().index(piece) if piece in shared else -1
        assert remap.parent_ids[i] == expected
    assert all(kind in ("pieces", "language_tag", "mean") for kind in remap.kinds.values())


# === Training a child ===

def test_child_vocabulary_trains_resumes_and_is_a_normal_run(parent_dir, nl_tsv, tmp_path):
    from xling_zoo import export as export_lib
    from xling_zoo.evaluate import evaluate_run

    workdir = tmp_path / "child"
    kwargs = dict(corpus_spec=nl_tsv, vocab="child",
                  overrides=["train.steps=3", "train.eval_every_steps=3", "tokenizer.vocab_size=290"])
    metrics = transfer_lib.transfer(parent_dir, workdir, "en-nl", **kwargs)
    assert metrics["step"] == 3 and all(math.isfinite(h["train_loss"]) for h in metrics["history"])

    report = json.loads((workdir / "transfer.json").read_text())
    summary = report["vocabularies"]["joint"]
    child_tokenizers = Tokenizers.load(workdir / "tokenizer")
    assert summary["child_size"] == child_tokenizers.source.vocab_size
    assert 0 < summary["kept"] < summary["child_size"]
    assert report["vocab"] == "child" and report["child"]["pair"] == "en-nl" and len(report["remapped"]) == 4
    assert all(r["rows_kept"] == summary["kept"] for r in report["remapped"].values())
    assert evaluate_run(workdir, max_examples=4)["examples"] == 4
    # ...and exports for TF Serving with the child's vocabulary.
    exported = export_lib.export_run(workdir, check_sentences=2)
    assert json.loads((exported / export_lib.METADATA_FILE).read_text())["pair"] == "en-nl"

    # The same command resumes (nothing left to train); other settings are refused.
    before = (workdir / "transfer.json").read_bytes()
    assert transfer_lib.transfer(parent_dir, workdir, "en-nl", **kwargs)["step"] == 3
    assert (workdir / "transfer.json").read_bytes() == before
    with pytest.raises(UserError, match="vocab='child'"):
        transfer_lib.transfer(parent_dir, workdir, "en-nl", corpus_spec=nl_tsv, vocab="parent")


def test_a_child_reads_its_train_and_validation_splits_once(parent_dir, nl_tsv, tmp_path, monkeypatch):
    from tests.test_trainer import count_reads

    reads = count_reads(monkeypatch)
    metrics = transfer_lib.transfer(parent_dir, tmp_path / "child", "en-nl", corpus_spec=nl_tsv, vocab="child",
                                    overrides=["train.steps=2", "train.eval_every_steps=1"])
    assert metrics["step"] == 2 and json.loads((tmp_path / "child" / "transfer.json").read_text())["child"]["mix"]["pair"]
    # Counted, measured against the parent's vocabulary, trained on, batched: read once. (The
    # parent's en-de pairs mixed into each pass are read from the parent's corpus.)
    assert reads[("en-nl", "train")] == 1 and reads[("en-nl", "validation")] == 1


def test_frozen_groups_stay_and_transferred_weights_get_their_learning_rate(parent_dir, nl_tsv, tmp_path):
    workdir = tmp_path / "child"
    transfer_lib.transfer(parent_dir, workdir, "en-nl", corpus_spec=nl_tsv, freeze=["encoder"],
                          transferred_lr_multiplier=0.5, overrides=["train.steps=2", "train.eval_every_steps=2"])
    report = json.loads((workdir / "transfer.json").read_text())
    assert report["frozen"]["groups"] == ["encoder"] and report["frozen"]["variables"]
    # Encoder weights are frozen (no multiplier needed); the decoder's are transferred at half rate.
    assert report["lr_multipliers"] and set(report["lr_multipliers"].values()) == {0.5}
    assert not set(report["lr_multipliers"]) & set(report["frozen"]["variables"])
    assert not set(report["lr_multipliers"]) & set(report["remapped"])

    parent, child = workdir_lib.load_run(parent_dir), workdir_lib.load_run(workdir, which="latest")
    for layer in child.model.layer_groups()["encoder"]:
        for a, b in zip(child.model.get_layer(layer).weights, parent.model.get_layer(layer).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    changed = [not np.array_equal(a.numpy(), b.numpy()) for a, b in
               zip(child.model.get_layer("decoder_lstm_0").weights, parent.model.get_layer("decoder_lstm_0").weights)]
    assert any(changed)


# === Refusals: a clear UserError and nothing written ===

def test_bad_requests_are_refused_before_anything_is_written(parent_dir, nl_tsv, tmp_path):
    child = tmp_path / "child"
    cases = [
        (dict(model_name="transformer"), "a transformer child cannot take a lstm_seq2seq parent's weights"),
        (dict(overrides=["model_name=transformer"]), "choose the child's model type with --model=transformer"),
        (dict(vocab="both"), "--vocab='both' is not one of parent, extend, child, auto"),
        (dict(freeze=["encoder", "attention"]), "unknown layer group attention; .* embeddings, encoder, decoder, head"),
        (dict(transferred_lr_multiplier=0.0), "must be > 0"),
        (dict(overrides=["tokenizer.vocab_size=500"]), "need --vocab=child"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UserError, match=message):
            transfer_lib.transfer(parent_dir, child, "en-nl", corpus_spec=nl_tsv, **kwargs)
        assert not child.exists()
    with pytest.raises(UserError, match="is the parent run itself"):
        transfer_lib.transfer(parent_dir, parent_dir, "en-nl", corpus_spec=nl_tsv)


def test_broken_parents_are_refused(parent_dir, nl_tsv, tmp_path):
    child = tmp_path / "child"
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(parent_dir / "config.json", no_weights)
    shutil.copytree(parent_dir / "tokenizer", no_weights / "tokenizer")
    other_tokenizer = tmp_path / "other_tokenizer"
    shutil.copytree(parent_dir, other_tokenizer)
    german = [t for _, t in make_pairs(300, seed=5, column=0)]
    Tokenizers(SubwordTokenizer.train(german, vocab_size=290, language_tags=["<2de>", "<2en>"])).save(
        other_tokenizer / "tokenizer")
    for parent, message in [(no_weights, "no checkpoint"), (other_tokenizer, "does not fit"),
                            (tmp_path / "missing", "does not exist")]:
        with pytest.raises(UserError, match=f"--parent={parent}: .*{message}"):
            transfer_lib.transfer(parent, child, "en-nl", corpus_spec=nl_tsv)
        assert not child.exists()


def test_a_child_workdir_holding_another_run_is_left_alone(parent_dir, nl_tsv, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    config = parent_config(nl_tsv)
    config.pair = "en-nl"
    config.model.units = 32
    (other / "config.json").write_text(config_lib.to_json(config))
    (other / "notes.txt").write_text("keep me")
    before = listing(other)
    with pytest.raises(UserError, match="different model"):
        transfer_lib.transfer(parent_dir, other, "en-nl", corpus_spec=nl_tsv)
    assert listing(other) == before

    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    (not_a_run / "data.txt").write_text("x")
    with pytest.raises(UserError, match="not a run directory"):
        transfer_lib.transfer(parent_dir, not_a_run, "en-nl", corpus_spec=nl_tsv)
    assert listing(not_a_run) == [("data.txt", b"x")]


def test_command_line_reports_user_errors(parent_dir, tmp_path):
    child = tmp_path / "child"
    result = subprocess.run(
        [sys.executable, "-m", "xling_zoo.transfer", f"--parent={parent_dir}", "--pair=en-nl",
         f"--workdir={child}", "--freeze=encoder,bogus"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr
    assert "error: --freeze: unknown layer group bogus" in result.stderr
    assert not child.exists()


def test_a_child_that_crashed_before_its_first_checkpoint_starts_from_the_parent_again(parent_dir, nl_tsv, tmp_path):
    workdir = tmp_path / "child"
    overrides = ["train.steps=2", "train.eval_every_steps=2"]
    transfer_lib.transfer(parent_dir, workdir, "en-nl", corpus_spec=nl_tsv, overrides=overrides)
    # What a crash after the run directory was written and before any checkpoint leaves.
    shutil.rmtree(workdir / "checkpoints")
    (workdir / "transfer.json").unlink()
    metrics = transfer_lib.transfer(parent_dir, workdir, "en-nl", corpus_spec=nl_tsv, overrides=overrides)
    assert metrics["step"] == 2
    report = json.loads((workdir / "transfer.json").read_text())  # Written by the parent's initialisation.
    assert report["copied"]


# === The child's own schedule ===

@pytest.fixture(scope="module")
def german_parent_dir(tiny_tsv, tmp_path_factory):
    """A parent that has learned the made-up German (a tiny transformer learns it in 250 updates; the
    tiny LSTM of parent_dir would take thousands)."""
    from xling_zoo import trainer

    config = shrink(config_lib.load_config("transformer"), tiny_tsv)
    for assignment in ["model.hidden_dim=32", "model.num_heads=2", "model.intermediate_dim=64",
                       "model.num_encoder_layers=1", "model.num_decoder_layers=1", "model.max_length=64",
                       "model.dropout=0.0", "tokenizer.vocab_size=300", "train.steps=250",
                       "train.eval_every_steps=250", "train.warmup_steps=30", "train.learning_rate=0.005"]:
        config_lib.apply_override(config, assignment)
    workdir = tmp_path_factory.mktemp("german_parent") / "run"
    trainer.train_and_evaluate(config, workdir)
    return workdir


def test_the_plain_command_trains_the_child_into_its_own_language(german_parent_dir, nl_tsv, tmp_path, monkeypatch):
    # Per-epoch validation with the parent's patience kept a child of a few updates that still wrote
    # the parent's language: the plain command's schedule comes from the child's data. Shorter
    # intervals than the real 100 updates keep the test fast; the rule is the same.
    monkeypatch.setattr(transfer_lib, "CHILD_MIN_EVAL_EVERY", 30)
    monkeypatch.setattr(transfer_lib, "CHILD_MAX_EVALUATIONS", 10)
    parent = workdir_lib.load_run(german_parent_dir)
    german = " ".join(translations(parent.model, parent.tokenizers, parent.config)).lower().split()
    assert {"haus", "datei", "benutzer"} & set(german), german

    workdir = tmp_path / "child"
    metrics = transfer_lib.transfer(german_parent_dir, workdir, "en-nl", corpus_spec=nl_tsv)
    report = json.loads((workdir / "transfer.json").read_text())
    epoch = report["child"]["steps_per_epoch"]
    schedule = report["child"]["schedule"]
    assert schedule == transfer_lib.child_schedule(epoch) and report["child"]["schedule_overridden"] == []
    assert metrics["step"] >= schedule["min_steps_before_early_stopping"] > 3 * epoch
    assert metrics["selection_metric"] == "bleu" and metrics["best_step"] > 3 * epoch
    assert metrics["best_step"] == max(metrics["history"], key=lambda h: h["validation_bleu"])["step"]

    child = workdir_lib.load_run(workdir)
    words = " ".join(translations(child.model, child.tokenizers, child.config)).lower().split()
    assert {"huis", "bestand", "gebruiker"} & set(words), words
    assert not {"haus", "datei", "benutzer"} & set(words), words


def test_the_child_schedule_gives_way_to_the_users_settings(parent_dir):
    parent = workdir_lib.load_run(parent_dir)
    config = transfer_lib.make_child_config(parent.config, "en-nl", steps_per_epoch=250,
                                            overrides=["train.selection_metric=chrf", "train.warmup_steps=7"])
    assert (config.train.eval_every_steps, config.train.early_stopping_patience_steps) == (250, 750)
    assert (config.train.selection_metric, config.train.warmup_steps) == ("chrf", 7)
    small = transfer_lib.make_child_config(parent.config, "en-nl", steps_per_epoch=13)
    assert (small.train.eval_every_steps, small.train.min_steps_before_early_stopping) == (100, 500)
    # --epochs asks for passes over the child's data, not the schedule's number of updates.
    epochs = transfer_lib.make_child_config(parent.config, "en-nl", steps_per_epoch=13, overrides=["train.epochs=40"])
    assert (epochs.train.steps, epochs.train.epochs) == (0, 40)
    # Without a child epoch the parent's schedule is kept (what the other tests of this file build).
    assert transfer_lib.make_child_config(parent.config, "en-nl").train.to_dict() == parent.config.train.to_dict()


def test_early_stopping_counts_updates_and_waits_for_the_minimum(parent_dir, nl_tsv, tmp_path):
    from xling_zoo import trainer

    train = config_lib.load_config("lstm_seq2seq").train
    train.early_stopping_patience, train.early_stopping_patience_steps = 2, 0
    assert trainer._patience_reached(train, 2, 5) == "2 evaluations" and not trainer._patience_reached(train, 1, 900)
    train.early_stopping_patience_steps = 300
    assert trainer._patience_reached(train, 9, 200) is None and trainer._patience_reached(train, 1, 300) == "300 updates"
    # The model's selection_metrics say which way each figure is better.
    translator = get_model("lstm_seq2seq")
    assert trainer.selection_score({"validation_loss": 2.5}, "loss", translator) == -2.5
    assert trainer.selection_score({"validation_bleu": 20.0}, "bleu", translator) == 20.0

    # Validation BLEU of the barely trained tiny parent's child stays at its first value (a learning
    # rate of 5 only hurts), yet early stopping waits for the minimum number of updates.
    metrics = transfer_lib.transfer(parent_dir, tmp_path / "child", "en-nl", corpus_spec=nl_tsv, overrides=[
        "train.steps=12", "train.eval_every_steps=2", "train.early_stopping_patience_steps=2",
        "train.min_steps_before_early_stopping=8", "train.selection_metric=bleu", "train.learning_rate=5.0",
        "train.clipnorm=0.0", "train.warmup_steps=1"])
    steps = [h["step"] for h in metrics["history"]]
    assert steps[0] == 2 and 8 <= metrics["step"] <= 12, steps
    assert metrics["best_step"] == max(metrics["history"], key=lambda h: h["validation_bleu"])["step"]


def test_a_selection_metric_outside_the_list_is_refused(parent_dir, nl_tsv, tmp_path):
    with pytest.raises(UserError, match="train.selection_metric='ter' must be one of bleu, chrf, loss"):
        transfer_lib.transfer(parent_dir, tmp_path / "child", "en-nl", corpus_spec=nl_tsv,
                              overrides=["train.selection_metric=ter"])
    assert not (tmp_path / "child").exists()
