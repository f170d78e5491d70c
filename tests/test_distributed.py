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


def test_multi_worker_strategy_with_two_local_workers(tmp_path, tiny_tsv):
    workdir = tmp_path / "run"
    # The chief's run dir first (tokenizer and step-0 state), so both workers read one tokenizer.
    result_of(launch(tiny_tsv, workdir, ["train.steps=1", "train.eval_every_steps=1"]))
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = [
        launch(tiny_tsv, workdir, ["train.strategy=multi_worker"],
               env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    results = [result_of(w) for w in workers]
    assert results[0]["step"] == 4
    steps = [h["step"] for h in results[0]["history"]]
    assert steps == [1, 2, 4]  # Resumed at step 1, then evaluated every 2 steps.
