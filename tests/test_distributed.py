"""The one training loop under tf.distribute: MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy with two local worker processes (TF_CONFIG on localhost)."""

import json
import os
import socket
import subprocess
import sys
import textwrap


# Runs in a fresh process: logical devices must be configured before TensorFlow initialises.
WORKER = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, {root!r})
    from tests.conftest import shrink
    from xling_zoo import config as config_lib, trainer
    config = shrink(config_lib.load_config("lstm_seq2seq"), {corpus!r})
    for assignment in {overrides!r}:
        config_lib.apply_override(config, assignment)
    metrics = trainer.train_and_evaluate(config, {workdir!r})
    print("RESULT " + json.dumps({{"step": metrics.get("step"), "history": metrics.get("history")}}))
""")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["model.embedding_dim=16", "model.units=16", "train.steps=4", "train.eval_every_steps=2"]


def launch(corpus, workdir, overrides, env=None):
    code = WORKER.format(root=ROOT, corpus=corpus, workdir=str(workdir), overrides=SMALL + overrides)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, cwd=ROOT)


def result_of(process, timeout=400):
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mirrored_strategy_over_two_devices(tmp_path, tiny_tsv):
    result = result_of(launch(tiny_tsv, tmp_path / "run", ["train.strategy=mirrored"]))
    assert result["step"] == 4
    assert all(h["train_loss"] > 0 and h["validation_loss"] > 0 for h in result["history"])


def launch_workers(corpus, workdir, overrides):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    return [
        launch(corpus, workdir, ["train.strategy=multi_worker"] + overrides,
               env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                    "TMPDIR": str(workdir.parent / f"tmp{i}")})
        for i in range(2)
    ]


def test_two_workers_started_together_on_a_fresh_directory(tmp_path, prepared_tiny_tsv):
    """As a cluster starts them: both at once, no run directory yet. Only the chief writes the run
    directory (one tokenizer, one config, TensorBoard events of one writer); the other worker waits
    for the chief's files and its own checkpoint copies are removed when it exits. The corpus is
    prepared beforehand (as earlier tests of the session left it), so that this test also runs alone."""
    tiny_tsv = prepared_tiny_tsv
    workdir = tmp_path / "run"
    for i in range(2):
        (tmp_path / f"tmp{i}").mkdir()
    results = [result_of(w) for w in launch_workers(tiny_tsv, workdir, [])]
    assert results[0]["step"] == results[1]["step"] == 4
    assert [h["step"] for h in results[0]["history"]] == [2, 4]
    assert sorted(p.name for p in workdir.iterdir()) == ["checkpoints", "config.json", "logs", "metrics.json",
                                                         "tokenizer"]
    events = list((workdir / "logs").rglob("events.out.tfevents.*"))
    assert len(events) == 2  # train/ and validation/ of the chief alone
    assert not list((tmp_path / "tmp1").iterdir())  # The non-chief's scratch checkpoints are gone.


def test_workers_agree_on_the_time_budget(tmp_path, prepared_tiny_tsv):
    tiny_tsv = prepared_tiny_tsv
    workdir = tmp_path / "run"
    for i in range(2):
        (tmp_path / f"tmp{i}").mkdir()
    budget = ["train.steps=100000", "train.eval_every_steps=100000", "train.max_minutes=0.05",
              "train.checkpoint_every_steps=0", "train.checkpoint_every_minutes=0"]
    results = [result_of(w) for w in launch_workers(tiny_tsv, workdir, budget)]
    # Both stopped after the same step (each sees its own clock; they act on the first to run out).
    steps = [r["history"][-1]["step"] for r in results]
    assert steps[0] == steps[1] and 0 < steps[0] < 100000
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["stop_reason"].startswith("time budget")
