"""A whole run on a non-local filesystem, as on a Cloud TPU with a bucket: corpus files, data_dir and
run directory on TensorFlow's in-memory ram:// filesystem (a stand-in for gs:// available offline);
train, resume, evaluate and export, and nothing written to the local disk instead."""

import os
import uuid

import tensorflow as tf

from tests.conftest import register_ram_with_tfds
from xling_zoo import evaluate, trainer
from xling_zoo import workdir as workdir_lib


def copy_to(url, local_path):
    tf.io.gfile.makedirs(os.path.dirname(url))
    tf.io.gfile.copy(str(local_path), url, overwrite=True)
    return url


def test_train_resume_evaluate_and_export_on_ram(tiny_config, tiny_tsv, monkeypatch, tmp_path):
    register_ram_with_tfds(monkeypatch)
    monkeypatch.chdir(tmp_path)  # A URL mangled into a local path would show up here.
    root = f"ram://xling-zoo-{uuid.uuid4().hex[:8]}"
    files = tiny_tsv.split(":", 1)[1].split(",")
    remote_files = [copy_to(f"{root}/corpus/{os.path.basename(f)}", f) for f in files]
    config = tiny_config("lstm_seq2seq")
    config.corpus = "tsv:" + ",".join(remote_files)
    config.data_dir = f"{root}/data"
    config.train.steps = 4
    config.train.eval_every_steps = 2
    config.train.checkpoint_every_steps = 1
    workdir = f"{root}/runs/lstm"

    metrics = trainer.train_and_evaluate(config, workdir)
    assert metrics["step"] == 4
    for name in ("config.json", "metrics.json", "tokenizer", "checkpoints/best", "logs/train"):
        assert tf.io.gfile.exists(f"{workdir}/{name}"), name
    assert tf.io.gfile.glob(f"{workdir}/checkpoints/ckpt-4.index")
    assert tf.io.gfile.glob(f"{root}/data/tfds/*")  # The prepared corpus is in the remote data_dir.

    config.train.steps = 6
    metrics = trainer.train_and_evaluate(config, workdir)
    assert [h["step"] for h in metrics["history"]] == [2, 4, 6]

    scores = evaluate.evaluate_run(workdir, max_examples=5)
    assert scores["examples"] == 5 and tf.io.gfile.exists(f"{workdir}/{scores['hypotheses']}")
    assert workdir_lib.read_json(f"{workdir}/metrics.json")["bleu"] == scores["bleu"]

    from xling_zoo import export as export_lib

    exported = export_lib.export_run(workdir, check_sentences=2)
    assert str(exported).startswith(f"{workdir}/export/")
    assert tf.io.gfile.exists(f"{exported}/saved_model.pb")
    assert os.listdir(tmp_path) == []
