"""Strategies, and --strategy=tpu off a TPU host: one clear error within a minute, never a hang.

Every address here is on loopback: a port nothing listens on, one that accepts and never answers,
and a TensorFlow server without a TPU.
"""

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from xling_zoo import config as config_lib
from xling_zoo import strategy as strategy_lib
from xling_zoo.errors import UserError

# The bound: the error, Python and TensorFlow start-up included.
FAIL_FAST_S = 60
NOISE = ("I0000", "E0000", "W0000", "WARNING: All log messages", "To enable the following")


def train_config(**overrides):
    config = config_lib.load_config("lstm_seq2seq").train
    config.update(overrides)
    return config


def free_loopback_port():
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def silent_listener():
    """A loopback port that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def without_tpu_environment():
    return {k: v for k, v in os.environ.items() if k not in strategy_lib.TPU_ENVIRONMENT}


def run_python(code, timeout=FAIL_FAST_S):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=without_tpu_environment())
    return done, time.monotonic() - started


def messages(stderr):
    """stderr without TensorFlow's C++ start-up lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(NOISE)]


def test_default_and_mirrored_strategies():
    assert strategy_lib.make_strategy(train_config(strategy="default")) is tf.distribute.get_strategy()
    mirrored = strategy_lib.make_strategy(train_config(strategy="mirrored"))
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert strategy_lib.is_chief(mirrored) and strategy_lib.is_chief(tf.distribute.get_strategy())
    with pytest.raises(UserError, match="is not one of default, mirrored, multi_worker, tpu"):
        strategy_lib.make_strategy(train_config(strategy="gpu"))


def test_tpu_without_a_name_is_one_user_error(monkeypatch):
    for name in strategy_lib.TPU_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError) as error:
        strategy_lib.make_strategy(train_config(strategy="tpu", tpu=""))
    message = str(error.value)
    assert "\n" not in message
    assert "train.tpu is empty" in message and "TPU_NAME" in message
    assert all(hint in message for hint in ("--set=train.tpu=NAME", "grpc://HOST:8470", "train.tpu=local"))


def test_tpu_address_with_nothing_listening_fails_at_once():
    # Before the TCP probe, TensorFlow's connect waited here forever.
    address = f"grpc://127.0.0.1:{free_loopback_port()}"
    started = time.monotonic()
    with pytest.raises(UserError, match=f"nothing answers at {address} .*--set=train.tpu=NAME") as error:
        strategy_lib.make_strategy(train_config(strategy="tpu", tpu=address))
    assert time.monotonic() - started < 15
    assert "\n" not in str(error.value)


def test_tpu_address_that_never_answers_hits_the_deadline_and_the_process_exits():
    """TCP accepts, nothing speaks gRPC: TensorFlow's connect hangs; connect_tpu gives up at its
    deadline, and the thread it abandons does not keep the process from exiting."""
    with silent_listener() as port:
        done, seconds = run_python(f"""
            import sys
            from xling_zoo import strategy
            from xling_zoo.errors import UserError
            try:
                strategy.connect_tpu("grpc://127.0.0.1:{port}", timeout_s=3)
            except UserError as e:
                print(e)
                sys.exit(2)
        """)
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == (f"--strategy=tpu: no TPU answered at grpc://127.0.0.1:{port} within 3 s; "
                                   + strategy_lib.HOW_TO_SET_TPU)
    assert seconds < FAIL_FAST_S


def test_tensorflow_server_without_a_tpu_is_one_user_error():
    """A real TensorFlow worker on loopback: the connect succeeds, the TPU initialization fails."""
    server = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import socket, tensorflow as tf
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cluster = tf.train.ClusterSpec({"worker": [f"127.0.0.1:{port}"]})
        server = tf.distribute.Server(cluster, job_name="worker", task_index=0)
        print(port, flush=True)
        server.join()
    """)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=without_tpu_environment())
    try:
        port = int(server.stdout.readline())
        done, seconds = run_python(f"""
            import tensorflow as tf
            from xling_zoo import strategy
            from xling_zoo.errors import UserError
            address = "grpc://127.0.0.1:{port}"
            try:
                strategy.connect_tpu(address, timeout_s=30)
            except UserError as e:
                print(e)
            # connect_tpu's thread connected without making the TPU host the default device (that
            # scope would hold on its own thread only); this is what connect_tpu does instead.
            strategy._make_master_device_default(tf.distribute.cluster_resolver.TPUClusterResolver(address))
            print(tf.constant(1.0).device)
        """)
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 0, done.stderr
    error, device = done.stdout.strip().splitlines()
    assert error.startswith(f"--strategy=tpu: grpc://127.0.0.1:{port} has no TPU (TPUs not found")
    assert error.endswith(strategy_lib.HOW_TO_SET_TPU)
    assert device == "/job:worker/replica:0/task:0/device:CPU:0"
    assert seconds < FAIL_FAST_S


@pytest.mark.parametrize("case", ["no_name", "nothing_listening"])
def test_train_cli_with_tpu_off_a_tpu_host_prints_one_error_line_and_exits_2(tmp_path, tiny_tsv, case):
    tpu = f"grpc://127.0.0.1:{free_loopback_port()}" if case == "nothing_listening" else ""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "xling_zoo.train", "--strategy=tpu", f"--corpus={tiny_tsv}", "--steps=2",
         f"--set=train.tpu={tpu}", "--set=tokenizer.vocab_size=330", f"--workdir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=FAIL_FAST_S + 30, env=without_tpu_environment())
    seconds = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = messages(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: --strategy=tpu: "), done.stderr
    assert (f"nothing answers at {tpu} " if tpu else "train.tpu is empty") in lines[0]
    assert lines[0].endswith(strategy_lib.HOW_TO_SET_TPU)
    assert seconds < FAIL_FAST_S
