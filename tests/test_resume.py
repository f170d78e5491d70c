"""Crash-safe, exact resume, tried the way it happens: a real SIGKILL or SIGTERM to the training
command, damaged checkpoint files, and checkpoints matched by weight name."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from xling_zoo import checkpoints, trainer
from xling_zoo import config as config_lib
from xling_zoo import workdir as workdir_lib
from xling_zoo.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny settings of tests/conftest.py's shrink(), as command-line flags.
TINY = ["--set=tokenizer.vocab_size=330", "--set=data.tokens_per_batch=1024", "--set=data.max_length=48",
        "--set=data.bucket_boundaries=(24, 48)", "--set=train.warmup_steps=2", "--set=eval.validation_bleu_examples=8",
        "--set=eval.max_decode_length=24", "--set=model.embedding_dim=16", "--set=model.units=16",
        "--set=train.max_minutes=0"]


def train_command(corpus, workdir, *extra):
    return [sys.executable, "-m", "xling_zoo.train", "--model=lstm_seq2seq", f"--corpus={corpus}",
            f"--workdir={workdir}", *TINY, *extra]


def run(command, timeout=300):
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def saved_values(checkpoint_path, prefixes=("model/", "optimizer/")):
    reader = tf.train.load_checkpoint(checkpoint_path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoint_path)
            if name.startswith(prefixes)}


def wait_for(predicate, process, timeout=240):
    deadline = time.time() + timeout
    while not predicate():
        assert process.poll() is None, f"finished before it could be killed: {process.communicate()[1][-2000:]}"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def checkpoint_steps(workdir):
    return sorted(int(p.rsplit("-", 1)[1]) for p in checkpoints.checkpoint_paths(os.path.join(workdir, "checkpoints")))


def test_sigkill_mid_epoch_then_rerun_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, prepared_tiny_tsv):
    # 240 steps, an evaluation every 120, a checkpoint every 40: killed after a checkpoint that is
    # not an evaluation, the rerun must skip exactly the batches it trained on. The uninterrupted
    # run trains meanwhile, in its own process; both read the corpus prepared beforehand.
    tiny_tsv = prepared_tiny_tsv
    flags = ["--deterministic", "--steps=240", "--set=train.eval_every_steps=120",
             "--set=train.checkpoint_every_steps=40"]
    with open(tmp_path / "whole.log", "w") as log:  # A file, not a pipe nobody reads until the end.
        uninterrupted = subprocess.Popen(train_command(tiny_tsv, tmp_path / "whole", *flags), cwd=ROOT,
                                         stdout=log, stderr=subprocess.STDOUT)

    workdir = tmp_path / "killed"
    process = subprocess.Popen(train_command(tiny_tsv, workdir, *flags), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(40 <= s < 240 and s % 120 for s in checkpoint_steps(workdir)), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = max(checkpoint_steps(workdir))
    assert 0 < killed_at < 240

    resumed = run(train_command(tiny_tsv, workdir, *flags))
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    assert f"at step {killed_at}" in resumed.stdout
    whole = saved_values(workdir_lib.latest_checkpoint(tmp_path / "whole", "latest"))
    again = saved_values(workdir_lib.latest_checkpoint(workdir, "latest"))
    assert whole.keys() == again.keys() and len(whole) > 20
    different = [name for name in whole if not np.array_equal(whole[name], again[name])]
    assert not different, f"{len(different)} of {len(whole)} variables differ, e.g. {different[:3]}"
    history = [json.loads((d / "metrics.json").read_text())["history"] for d in (tmp_path / "whole", workdir)]
    assert [(h["step"], h["validation_loss"], h["train_loss"]) for h in history[0]] == \
           [(h["step"], h["validation_loss"], h["train_loss"]) for h in history[1]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_prints_one_line_and_exits_nonzero(tmp_path, tiny_tsv, sig):
    workdir = tmp_path / "run"
    command = train_command(tiny_tsv, workdir, "--steps=100000", "--set=train.eval_every_steps=100000",
                            "--set=train.checkpoint_every_steps=0", "--set=train.checkpoint_every_minutes=0")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (workdir / "logs").exists(), process)  # Training has started.
    time.sleep(2)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sig
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"{sig.name}: saved a checkpoint at step ") and "rerun the same command" in last
    step = int(last.split("at step ")[1].split()[0])
    assert checkpoint_steps(workdir) == [step] and step > 0
    assert json.loads((workdir / "metrics.json").read_text())["stop_reason"] == f"interrupted by {sig.name}"
    # The rerun resumes there.
    done = subprocess.run(command[:-4] + ["--steps=" + str(step + 2), "--set=train.eval_every_steps=100000"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and f"at step {step}" in done.stdout, done.stderr[-2000:]


def test_a_signal_during_an_evaluation_abandons_it_and_the_rerun_evaluates_that_step_first(tiny_config, tmp_path,
                                                                                            monkeypatch):
    from xling_zoo.errors import Interrupted
    from xling_zoo.models.base import Seq2SeqTask

    def config():
        config = tiny_config("lstm_seq2seq")
        for assignment in ["train.steps=4", "train.eval_every_steps=2", "train.deterministic=True"]:
            config_lib.apply_override(config, assignment)
        return config

    def timeless(history):
        return [{k: v for k, v in h.items() if k not in ("seconds", "target_tokens_per_second")} for h in history]

    uninterrupted = trainer.train_and_evaluate(config(), tmp_path / "uninterrupted")
    # A real SIGTERM to this process as the second evaluation (step 4, the last) starts.
    make_validator, calls = Seq2SeqTask.make_validator, []

    def signalled_validator(self, *args):
        validator = make_validator(self, *args)

        def validate(should_stop=None):
            calls.append(should_stop)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return validator(should_stop)

        return validate

    monkeypatch.setattr(Seq2SeqTask, "make_validator", signalled_validator)
    workdir = tmp_path / "interrupted"
    with pytest.raises(Interrupted, match="SIGTERM: saved a checkpoint at step 4") as raised:
        trainer.train_and_evaluate(config(), workdir)
    assert raised.value.exit_code == 128 + signal.SIGTERM and checkpoint_steps(workdir)[-1] == 4
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [2] and metrics["stop_reason"] == "interrupted by SIGTERM"
    monkeypatch.undo()
    # The rerun trains no further: it evaluates step 4, with the interval's training figures.
    resumed = trainer.train_and_evaluate(config(), workdir)
    assert timeless(resumed["history"]) == timeless(uninterrupted["history"])
    assert resumed["best_step"] == uninterrupted["best_step"] and resumed["stop_reason"] == "finished"


def test_sigterm_to_the_command_during_a_long_validation_stops_it_there(tmp_path):
    from tests.conftest import make_pairs, write_tsv

    # A validation split of 4,000 pairs, decoded in full: seconds of validation to send the signal into.
    pairs = make_pairs(4800, seed=11)
    files = [write_tsv(tmp_path / f"{split}.tsv", rows) for split, rows in
             (("train", pairs[:600]), ("validation", pairs[600:4600]), ("test", pairs[4600:]))]
    workdir = tmp_path / "run"
    command = train_command("tsv:" + ",".join(str(f) for f in files), workdir, "--steps=2",
                            "--set=train.eval_every_steps=2", "--set=eval.validation_bleu_examples=0")
    with open(tmp_path / "out.log", "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "Validating at step 2" in (tmp_path / "out.log").read_text(), process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("SIGTERM: saved a checkpoint at step 2 in ")
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics.get("history", []) == [] and metrics["stop_reason"] == "interrupted by SIGTERM"
    # The rerun evaluates step 2 and ends.
    resumed = run(command)
    assert "its evaluation, interrupted before" in resumed.stdout
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [2] and metrics["stop_reason"] == "finished"


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory, tiny_tsv):
    from tests.conftest import shrink

    config = shrink(config_lib.load_config("lstm_seq2seq"), tiny_tsv)
    for assignment in ["model.embedding_dim=16", "model.units=16", "train.checkpoint_every_steps=2",
                       "train.keep_checkpoints=3"]:
        config_lib.apply_override(config, assignment)
    workdir = tmp_path_factory.mktemp("runs") / "lstm"
    trainer.train_and_evaluate(config, workdir)
    return config, workdir


def _damage(prefix, how):
    data = [p for p in tf.io.gfile.glob(prefix + ".data-*")][0]
    if how == "truncate":
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 2)
    elif how == "delete":
        os.remove(data)
    elif how == "garble":
        with open(prefix + ".index", "r+b") as f:
            f.seek(0)
            f.write(b"\xff" * 64)


@pytest.mark.parametrize("how", ["truncate", "delete", "garble"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(checkpointed_run, tmp_path, how, capfd):
    config, source = checkpointed_run
    workdir = tmp_path / "copy"
    import shutil

    shutil.copytree(source, workdir)
    newest = workdir_lib.latest_checkpoint(workdir, "latest")
    assert newest.endswith("ckpt-6")
    _damage(newest, how)
    config = config.copy_and_resolve_references()
    config.train.steps = 8
    metrics = trainer.train_and_evaluate(config, workdir)
    err = capfd.readouterr().err
    damaged = [line for line in err.splitlines() if "is damaged" in line]
    assert len(damaged) == 1 and "ckpt-6" in damaged[0] and "trying the previous one" in damaged[0]
    assert metrics["step"] == 8
    # Resumed from step 4: the evaluation at step 6 was redone, and step 8 added.
    assert [h["step"] for h in metrics["history"]] == [3, 6, 8]


def test_evaluation_uses_the_previous_intact_checkpoint(checkpointed_run, tmp_path):
    _, source = checkpointed_run
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(source, workdir)
    best = workdir_lib.latest_checkpoint(workdir, "best")
    _damage(best, "truncate")
    run = workdir_lib.load_run(workdir)
    assert run.checkpoint != best and run.checkpoint.endswith("ckpt-6") and "best" not in run.checkpoint


def test_checkpoints_are_keyed_by_weight_name(checkpointed_run):
    _, workdir = checkpointed_run
    names = {name for name, _ in tf.train.list_variables(workdir_lib.latest_checkpoint(workdir, "latest"))}
    assert "model/lstm_seq2seq.Slogits.Skernel/.ATTRIBUTES/VARIABLE_VALUE" in names
    assert any(n.startswith("optimizer/adam.Slstm_seq2seq_logits_kernel_momentum") for n in names)
    assert any("seed_generator" in n for n in names)  # Dropout RNG states: same masks after resume.
    assert "state/.ATTRIBUTES/VARIABLE_VALUE" in names


def test_weights_restore_by_name_whatever_their_order(checkpointed_run, tmp_path):
    config, workdir = checkpointed_run
    run = workdir_lib.load_run(workdir)
    values = {v.path: v.numpy() for v in run.model.weights}
    # A checkpoint whose weights were created in the opposite order (as a dependency upgrade might):
    # the two same-shaped encoder biases, among others, change places in creation order.
    reordered = {path: tf.Variable(values[path]) for path in reversed(list(values))}
    prefix = tf.train.Checkpoint(model=reordered).write(str(tmp_path / "reordered"))
    model = workdir_lib.build_model(config, run.tokenizers)
    checkpoints.restore_model_weights(model, prefix)
    for variable in model.weights:
        np.testing.assert_array_equal(variable.numpy(), values[variable.path])


def test_a_checkpoint_of_another_model_is_one_clear_error(checkpointed_run, tiny_config):
    _, workdir = checkpointed_run
    run = workdir_lib.load_run(workdir)
    other = tiny_config("lstm_seq2seq", attention=False)
    model = workdir_lib.build_model(other, run.tokenizers)
    with pytest.raises(UserError, match="does not fit the model"):
        workdir_lib.restore_model(model, run.checkpoint)
    other = tiny_config("lstm_seq2seq", units=32)
    model = workdir_lib.build_model(other, run.tokenizers)
    with pytest.raises(UserError, match="does not fit the model"):
        workdir_lib.restore_model(model, run.checkpoint)


def write_three_way_text_corpus(directory):
    """text:PREFIX files en / nl / de of the made-up grammar: the multi-source pair en,nl-de."""
    from tests.conftest import make_pairs

    german, dutch = make_pairs(400, seed=3, column=0), make_pairs(400, seed=3, column=1)
    for split, rows in (("train", slice(0, 320)), ("validation", slice(320, 360)), ("test", slice(360, 400))):
        for language, lines in (("en", [e for e, _ in german]), ("de", [g for _, g in german]),
                                ("nl", [n for _, n in dutch])):
            (directory / f"{split}.{language}").write_text("\n".join(lines[rows]) + "\n", encoding="utf-8")
    return f"text:{directory / 'train'},{directory / 'validation'},{directory / 'test'}"


def test_the_adversarial_discriminator_optimizer_is_checkpointed(tmp_path, tiny_config):
    config = tiny_config("adversarial")
    # A one-layer translator and a small discriminator (its default discriminator_steps kept).
    for assignment in ["model.transformer.num_encoder_layers=1", "model.transformer.num_decoder_layers=1",
                       "model.transformer.hidden_dim=16", "model.transformer.num_heads=2",
                       "model.transformer.intermediate_dim=32", "model.transformer.max_length=64",
                       "model.discriminator_hidden_dim=8"]:
        config_lib.apply_override(config, assignment)
    config.corpus = write_three_way_text_corpus(tmp_path)
    config.pair = "en,nl-de"
    config.train.steps = 4
    config.train.eval_every_steps = 4
    trainer.train_and_evaluate(config, tmp_path / "run")
    latest = workdir_lib.latest_checkpoint(tmp_path / "run", "latest")
    names = {name for name, _ in tf.train.list_variables(latest)}
    assert any(n.startswith("owned/discriminator/") and "momentum" in n for n in names)
    reader = tf.train.load_checkpoint(latest)
    iterations = [n for n in names if n.startswith("owned/discriminator/") and "iteration" in n]
    assert len(iterations) == 1
    assert reader.get_tensor(iterations[0]) == 4 * config.model.discriminator_steps


def test_checkpoints_of_the_earlier_positional_format_still_load(checkpointed_run, tmp_path):
    config, workdir = checkpointed_run
    run = workdir_lib.load_run(workdir)
    prefix = tf.train.Checkpoint(model=list(run.model.weights)).write(str(tmp_path / "positional"))
    assert checkpoints.is_positional(prefix)
    model = workdir_lib.build_model(config, run.tokenizers)
    checkpoints.restore_model_weights(model, prefix)
    for variable, expected in zip(model.weights, run.model.weights):
        np.testing.assert_array_equal(variable.numpy(), expected.numpy())


def test_a_relative_or_moved_run_directory_finds_its_checkpoints(checkpointed_run, tmp_path, monkeypatch, caplog):
    import shutil

    _, source = checkpointed_run
    shutil.copytree(source, tmp_path / "moved")  # Its state files name the old, absolute location.
    monkeypatch.chdir(tmp_path)
    best = os.path.basename(workdir_lib.latest_checkpoint(source, "best"))
    run = workdir_lib.load_run("moved")
    assert run.checkpoint == os.path.join("moved", "checkpoints", "best", best)
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]
    assert checkpoints.checkpoint_paths("moved/checkpoints")[0] == "moved/checkpoints/ckpt-6"
