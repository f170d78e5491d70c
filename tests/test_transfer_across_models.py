"""Transfer across model types, weights matched by name: an adversarial parent hands its translator
to a plain lstm_seq2seq child, a plain parent becomes an adversarial child's translator, and what
cannot be carried over is refused before anything is written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import shrink
from xling_zoo import config as config_lib
from xling_zoo import evaluate, trainer
from xling_zoo import transfer as transfer_lib
from xling_zoo import workdir as workdir_lib
from xling_zoo.data.corpus import Pair
from xling_zoo.errors import UserError

TINY_LSTM = ["embedding_dim=16", "units=16"]
SHORT = ["train.steps=2", "train.eval_every_steps=2", "train.warmup_steps=1"]
DISCRIMINATOR = ["discriminator_hidden_0/bias", "discriminator_hidden_0/kernel", "discriminator_logits/bias",
                 "discriminator_logits/kernel"]


def inside_model(paths):
    """Weight paths without the model's own name, sorted."""
    return sorted(path.split("/", 1)[1] for path in paths)


def lstm_config(corpus_spec, pair):
    config = shrink(config_lib.load_config("lstm_seq2seq"), corpus_spec)
    for assignment in [f"model.{a}" for a in TINY_LSTM] + ["tokenizer.vocab_size=300", f"pair={pair}"]:
        config_lib.apply_override(config, assignment)
    return config


def adversarial_config(corpus_spec, pair):
    """configs/adversarial.py with the LSTM translator, as tiny as lstm_config's."""
    config = shrink(config_lib.load_config("adversarial"), corpus_spec)
    for assignment in (["model.encoder_type=lstm", "model.discriminator_hidden_dim=8", "tokenizer.vocab_size=300",
                        f"pair={pair}"] + [f"model.lstm.{a}" for a in TINY_LSTM]):
        config_lib.apply_override(config, assignment)
    return config


@pytest.fixture(scope="module")
def lstm_parent(multiway, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lstm") / "de-en"
    trainer.train_and_evaluate(lstm_config(multiway, "de-en"), workdir)
    return workdir


@pytest.fixture(scope="module")
def adversarial_parent(multiway, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("adversarial") / "de,nl-en"
    trainer.train_and_evaluate(adversarial_config(multiway, "de,nl-en"), workdir)
    return workdir


def by_key(model):
    return dict(zip(transfer_lib.weight_keys(model), model.weights))


def test_an_adversarial_parent_hands_its_translator_to_a_plain_child(adversarial_parent, multiway, tmp_path):
    child_dir = tmp_path / "af-en"
    transfer_lib.transfer(adversarial_parent, child_dir, "af-en", corpus_spec=multiway, max_train_examples=200,
                          model_name="lstm_seq2seq", overrides=SHORT)
    report = json.loads((child_dir / "transfer.json").read_text())
    assert (report["parent_model_name"], report["model_name"]) == ("adversarial", "lstm_seq2seq")
    # The discriminator stays behind; every translator weight has its counterpart.
    assert inside_model(report["parent_not_used"]) == DISCRIMINATOR and report["new"] == []
    parent = workdir_lib.load_run(str(adversarial_parent))
    child_config = json.loads((child_dir / "config.json").read_text())
    assert child_config["model_name"] == "lstm_seq2seq"
    assert child_config["model"] == json.loads(config_lib.to_json(parent.config))["model"]["lstm"]

    # Before any update the child's weights are the parent translator's, name by name.
    config = transfer_lib.make_child_config(parent.config, "af-en", corpus_spec=multiway, model_name="lstm_seq2seq")
    tokenizers = transfer_lib.child_tokenizers(parent.tokenizers, Pair.parse("af-en"), "parent", config.tokenizer)
    child = workdir_lib.build_model(config, tokenizers)
    transfer_lib.Transfer(parent, tokenizers).initialize(child)
    parent_weights, compared = by_key(parent.model), 0
    for key, weight in by_key(child).items():
        expected = parent_weights[key].numpy()
        if weight.path in child.vocab_axes():  # One new row (the <2af> tag) along the vocabulary axis.
            axis = child.vocab_axes()[weight.path][1]
            expected = np.moveaxis(expected, axis, 0)
            np.testing.assert_array_equal(np.moveaxis(weight.numpy(), axis, 0)[:len(expected)], expected)
        else:
            np.testing.assert_array_equal(weight.numpy(), expected)
        compared += 1
    assert compared == len(child.weights) == len(parent.model.weights) - 4

    metrics = evaluate.evaluate_run(str(child_dir), max_examples=10)
    assert metrics["pair"] == "af-en" and metrics["examples"] == 10


def test_the_command_turns_a_plain_parent_into_an_adversarial_childs_translator(lstm_parent, multiway, tmp_path):
    child_dir = tmp_path / "de,af-en"
    result = subprocess.run(
        [sys.executable, "-m", "xling_zoo.transfer", f"--parent={lstm_parent}", "--model=adversarial",
         "--pair=de,af-en", f"--corpus={multiway}", "--max_train_examples=200", f"--workdir={child_dir}",
         "--set=model.discriminator_hidden_dim=8", *[f"--set={a}" for a in SHORT]],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "a lstm_seq2seq parent -> an adversarial child, weights matched by name" in result.stdout
    report = json.loads((child_dir / "transfer.json").read_text())
    assert (report["parent_model_name"], report["model_name"]) == ("lstm_seq2seq", "adversarial")
    # The discriminator is the only part the parent does not have; nothing of the parent is left over.
    assert inside_model(report["new"]) == DISCRIMINATOR and report["parent_not_used"] == []
    child_config = json.loads((child_dir / "config.json").read_text())
    parent_config = json.loads((lstm_parent / "config.json").read_text())
    assert child_config["model"]["encoder_type"] == "lstm"
    assert child_config["model"]["lstm"] == parent_config["model"]
    assert child_config["model"]["discriminator_hidden_dim"] == 8
    metrics = json.loads((child_dir / "metrics.json").read_text())
    assert metrics["step"] == 2 and "discriminator_accuracy" in json.dumps(metrics)


@pytest.mark.parametrize("parent, kwargs, message", [
    ("lstm", dict(model_name="transformer"), "a transformer child cannot take a lstm_seq2seq parent's weights"),
    ("adversarial", dict(model_name="transformer"), r"translator is a lstm \(model.encoder_type=lstm\)"),
    ("lstm", dict(model_name="bogus"), "unknown model 'bogus'"),
    ("lstm", dict(model_name="adversarial"), "adversarial needs several source languages"),
    ("lstm", dict(overrides=["model_name=transformer"]), "choose the child's model type with --model=transformer"),
    ("lstm", dict(overrides=["model.units=32"]),
     r"^12 of the child's weights do not fit the parent's of the same name .*lstm_seq2seq/decoder_lstm_0/lstm_cell/"
     r"kernel \(16, 128\) <- lstm_seq2seq/decoder_lstm_0/lstm_cell/kernel \(16, 64\).* \(and 2 more\)"),
])
def test_what_cannot_be_carried_over_is_refused_before_anything_is_written(
        parent, kwargs, message, lstm_parent, adversarial_parent, multiway, tmp_path):
    parent_dir = {"lstm": lstm_parent, "adversarial": adversarial_parent}[parent]
    child_dir = tmp_path / "child"
    with pytest.raises(UserError, match=message):
        transfer_lib.transfer(parent_dir, child_dir, "af-en", corpus_spec=multiway, max_train_examples=200,
                              **kwargs)
    assert not child_dir.exists()
