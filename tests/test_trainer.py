"""The training loop end to end on the tiny corpus: train, resume, refuse, evaluate, translate."""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_cli_commands
from xling_zoo import config as config_lib
from xling_zoo import evaluate, trainer
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus, pipeline
from xling_zoo.errors import UserError


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_tsv):
    from tests.conftest import shrink

    config = shrink(config_lib.load_config("lstm_seq2seq"), tiny_tsv)
    for assignment in ["model.embedding_dim=16", "model.units=16"]:
        config_lib.apply_override(config, assignment)
    workdir = tmp_path_factory.mktemp("runs") / "lstm"
    metrics = trainer.train_and_evaluate(config, workdir)
    return config, workdir, metrics


def test_run_directory_holds_everything(trained_run):
    config, workdir, metrics = trained_run
    for name in ["config.json", "tokenizer", "checkpoints", "checkpoints/best", "logs/train", "metrics.json"]:
        assert (workdir / name).exists(), name
    assert metrics["step"] == config.train.steps == 6
    assert len(metrics["history"]) == 2  # eval_every_steps=3
    record = metrics["history"][-1]
    for key in ["train_loss", "validation_loss", "validation_bleu", "target_tokens_per_second"]:
        assert key in record
    assert metrics["data"]["train"]["examples"] == 1200


def test_the_run_records_what_copying_the_source_scores_and_says_when_it_is_not_beaten(trained_run):
    config, workdir, metrics = trained_run
    validation = corpus.read_split(config.corpus, config.pair, "validation")
    validation = validation[:config.eval.validation_bleu_examples or len(validation)]
    copy = evaluate.score([e["source"] for e in validation], [e["target"] for e in validation], "de")
    floor = json.loads((workdir / "metrics.json").read_text())["validation_floor"]
    assert floor["description"] == "copying the source"
    assert (floor["validation_bleu"], floor["validation_chrf"]) == (copy["bleu"], copy["chrf"])
    # Six updates of a 16-unit model translate worse than copying the made-up sentences.
    best = next(h for h in metrics["history"] if h["step"] == metrics["best_step"])
    assert best["validation_bleu"] <= copy["bleu"]
    assert f"({best['validation_bleu']}) is not above copying the source ({copy['bleu']:.2f})" in floor["not_beaten"]


def test_validation_traces_its_loss_step_once_whatever_the_batch_shapes(trained_run):
    config, workdir, _ = trained_run
    run = workdir_lib.load_run(workdir)
    pair = run.pair
    common = dict(target_language=pair.target_languages[0], source_languages=pair.source_languages,
                  target_languages=pair.target_languages)

    def dataset_fn(input_context=None):
        examples = corpus.load_split(config.corpus, pair, "validation")
        return pipeline.make_dataset(examples, run.tokenizers, config.data, training=False, **common)

    shapes = {tuple(batch["encoder_token_ids"].shape) for batch in dataset_fn()}
    assert len(shapes) >= 3  # Several length buckets, else the test shows nothing.
    validator = run.model.make_validator(tf.distribute.get_strategy(), dataset_fn, config, run.tokenizers,
                                         corpus.read_split(config.corpus, pair, "validation"), pair)
    first, second = validator(), validator()
    assert validator.loss_sums.step.experimental_get_tracing_count() == 1
    assert first == second and np.isfinite(first["validation_loss"])


def count_reads(monkeypatch):
    """{(pair, split): times read from the corpus} while the test runs."""
    reads, load_split = collections.Counter(), corpus.load_split

    def counted(spec, pair, split, **kwargs):
        reads[(str(pair), split)] += 1
        return load_split(spec, pair, split, **kwargs)

    monkeypatch.setattr(corpus, "load_split", counted)
    return reads


def test_a_run_reads_its_train_and_validation_splits_once(tiny_config, tmp_path, monkeypatch):
    reads = count_reads(monkeypatch)
    config = tiny_config("lstm_seq2seq")
    for assignment in ["train.steps=4", "train.eval_every_steps=2"]:
        config_lib.apply_override(config, assignment)
    metrics = trainer.train_and_evaluate(config, tmp_path / "run")
    assert len(metrics["history"]) == 2  # Two validations, two passes and more over the train split.
    assert reads == {("en-de", "train"): 1, ("en-de", "validation"): 1}


@pytest.mark.parametrize("pair", ["en-de", "en-de,nl"])
def test_a_split_read_into_memory_is_the_corpus_split_in_its_order(multiway, pair):
    loaded = list(corpus.load_split(multiway, pair, "train").as_numpy_iterator())
    in_memory = list(trainer.in_memory(corpus.read_split(multiway, pair, "train")).as_numpy_iterator())
    assert len(loaded) > 100 and in_memory == loaded
    assert list(trainer.in_memory([]).as_numpy_iterator()) == []


class _Validator:
    floor, floor_description = {"validation_bleu": 20.0, "validation_chrf": 30.0}, "copying the source"


class _Model:
    selection_metrics = {"bleu": "max", "chrf": "max", "loss": "min"}


@pytest.mark.parametrize("metric, best, warned", [
    ("bleu", {"validation_bleu": 20.5, "validation_chrf": 10.0}, False),
    ("bleu", {"validation_bleu": 20.0, "validation_chrf": 40.0}, True),
    ("chrf", {"validation_bleu": 10.0, "validation_chrf": 29.9}, True),
    ("loss", {"validation_bleu": 1.0, "validation_loss": 9.0}, False),  # A loss has no floor to beat.
])
def test_the_floor_warning_follows_the_selection_metric(metric, best, warned):
    report = trainer._floor_report(_Validator(), best, metric, _Model())
    assert report["validation_bleu"] == 20.0 and ("not_beaten" in report) == warned
    assert trainer._floor_report(object(), best, metric, _Model()) == {}  # A validator without a floor.


def test_rerun_resumes_from_the_latest_checkpoint(trained_run):
    config, workdir, _ = trained_run
    config = config.copy_and_resolve_references()
    config.train.steps = 9
    metrics = trainer.train_and_evaluate(config, workdir)
    assert metrics["step"] == 9
    assert [h["step"] for h in metrics["history"]] == [3, 6, 9]


def test_incompatible_config_is_refused_and_nothing_changes(trained_run):
    config, workdir, _ = trained_run
    before = (workdir / "config.json").read_text()
    checkpoints = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    other = config.copy_and_resolve_references()
    other.model.units = 32
    with pytest.raises(UserError, match="different model"):
        trainer.train_and_evaluate(other, workdir)
    assert (workdir / "config.json").read_text() == before
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == checkpoints


def test_workdir_that_is_a_file_or_a_foreign_directory(tmp_path, tiny_config):
    config = tiny_config("lstm_seq2seq")
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(UserError, match="is a file"):
        workdir_lib.prepare(config, a_file)
    assert a_file.read_text() == "keep me"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a run directory"):
        workdir_lib.prepare(config, foreign)


def test_workdir_of_another_model_is_refused(trained_run):
    config, workdir, _ = trained_run
    other = config.copy_and_resolve_references()
    other.model_name = "transformer"
    with pytest.raises(UserError, match="holds a 'lstm_seq2seq' run"):
        workdir_lib.prepare(other, workdir)


def test_evaluate_writes_sacrebleu_metrics_and_the_copy_floor(trained_run):
    _, workdir, _ = trained_run
    metrics = evaluate.evaluate_run(workdir, split="test", beam_size=2, max_examples=20)
    for key in ["bleu", "chrf", "ter", "signatures", "copy_source"]:
        assert key in metrics
    assert metrics["sources_cut_to_max_length"] == 0  # The made-up test sentences are short.
    assert set(metrics["signatures"]) == {"bleu", "chrf", "ter"}
    assert "nrefs:1" in metrics["signatures"]["bleu"]
    saved = json.loads((workdir / "metrics.json").read_text())
    assert saved["bleu"] == metrics["bleu"] and "history" in saved  # Merged, not overwritten.
    assert len((workdir / metrics["hypotheses"]).read_text().splitlines()) == 20
    validation = evaluate.evaluate_run(workdir, split="validation", max_examples=5)
    assert (workdir / "metrics_validation.json").exists() and validation["split"] == "validation"


def test_xla_decoding_gives_the_same_translations(trained_run):
    _, workdir, _ = trained_run
    plain = evaluate.evaluate_run(workdir, split="validation", max_examples=30)
    plain_text = (workdir / plain["hypotheses"]).read_text()
    compiled = evaluate.evaluate_run(workdir, split="validation", max_examples=30, jit_compile=True)
    assert compiled["decoding"]["jit_compile"] and not plain["decoding"]["jit_compile"]
    # Sources padded to a multiple of 16 tokens under XLA: padding is masked, the output the same.
    assert (workdir / compiled["hypotheses"]).read_text() == plain_text
    assert compiled["bleu"] == plain["bleu"]


def test_beam_search_stopping_early_keeps_the_translations(trained_run):
    from xling_zoo.data import corpus
    from xling_zoo.decode import Translator

    config, workdir, _ = trained_run
    run = workdir_lib.load_run(workdir)
    sources = [e["source"] for e in corpus.read_split(config.corpus, run.pair, "test", data_dir=config.data_dir)]
    translations = {}
    for stop_early in (False, True):
        translator = Translator(run.model, run.tokenizers, run.config, beam_size=4, stop_early=stop_early)
        translations[stop_early] = translator.translate_all(sources)
    assert len(sources) >= 100 and translations[True] == translations[False]


def test_evaluate_another_pair_into_the_same_target(trained_run):
    _, workdir, _ = trained_run
    before = (workdir / "metrics.json").read_text()
    # A TSV corpus holds whatever pair it is named as: here the same file read as French-German.
    metrics = evaluate.evaluate_run(workdir, split="test", max_examples=5, pair="fr-de")
    assert metrics["pair"] == "fr-de" and metrics["examples"] == 5
    assert (workdir / "metrics_test_fr-de.json").exists()
    assert (workdir / "hypotheses_test_fr-de.beam1.txt").exists()
    assert (workdir / "metrics.json").read_text() == before  # The run's own test figures stay.
    with pytest.raises(UserError, match="translates into de .*not nl"):
        evaluate.evaluate_run(workdir, pair="en-nl")


def test_evaluate_without_a_checkpoint_is_a_clear_error(tmp_path, tiny_config):
    config = tiny_config("lstm_seq2seq")
    workdir_lib.prepare(config, tmp_path / "empty_run")
    with pytest.raises(UserError, match="tokenizer|no checkpoint"):
        evaluate.evaluate_run(tmp_path / "empty_run")
    with pytest.raises(UserError, match="is not one of"):
        evaluate.evaluate_run(tmp_path / "empty_run", split="dev")


def run_cli(module, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", f"xling_zoo.{module}", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


LONG_LINE = " ".join(["The red user opens the file."] * 20)


@pytest.fixture(scope="module")
def translate_cli(trained_run, tmp_path_factory):
    """The translate command lines of the tests below, one Python for all: name -> CompletedProcess."""
    _, workdir, _ = trained_run
    directory = tmp_path_factory.mktemp("translate_cli")
    commands = {
        "two_lines_and_a_blank": ([f"--workdir={workdir}"],
                                  "The red user opens the file.\n\nThe old window closes a big picture.\n"),
        "empty_stdin": ([f"--workdir={workdir}"], ""),
        "long_line": ([f"--workdir={workdir}"], f"The user saves.\n{LONG_LINE}\n"),
        "missing_run": ([f"--workdir={directory / 'nothing'}"], "hello\n"),
        "negative_threads": ([f"--workdir={workdir}", "--inter_op_threads=-1"], "hello\n"),
    }
    return dict(zip(commands, run_cli_commands("translate", list(commands.values()), directory / "results.json")))


def test_translate_cli(translate_cli):
    done = translate_cli["two_lines_and_a_blank"]
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    empty = translate_cli["empty_stdin"]
    assert empty.returncode == 2 and "stdin is empty" in empty.stderr
    cut = translate_cli["long_line"]
    assert cut.returncode == 0 and len(cut.stdout.splitlines()) == 2
    assert "warning: line 2 has" in cut.stderr and "at most 48 (data.max_length)" in cut.stderr


@pytest.fixture(scope="module")
def evaluate_cli(trained_run, tmp_path_factory):
    """The evaluate command lines of the test below, one Python for all: name -> CompletedProcess."""
    _, workdir, _ = trained_run
    directory = tmp_path_factory.mktemp("evaluate_cli")
    commands = {
        "validation": ([f"--workdir={workdir}", "--split=validation", "--max_examples=12"], ""),
        "bad_split": ([f"--workdir={workdir}", "--split=dev"], ""),
        "missing_run": ([f"--workdir={directory / 'nothing'}"], ""),
    }
    return dict(zip(commands, run_cli_commands("evaluate", list(commands.values()), directory / "results.json")))


def test_evaluate_cli(trained_run, evaluate_cli):
    _, workdir, _ = trained_run
    done = evaluate_cli["validation"]
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["split"] == "validation" and summary["examples"] == 12
    assert json.loads((workdir / "metrics_validation.json").read_text())["bleu"] == summary["bleu"]
    # Six updates of a 16-unit model: below copying the made-up sources, and the command says so.
    assert summary["bleu"] <= summary["copy_source"]["bleu"]
    assert f"Warning: BLEU {summary['bleu']} is not above copying the source" in done.stderr
    for name, message in (("bad_split", "--split='dev' is not one of"), ("missing_run", "nothing")):
        assert evaluate_cli[name].returncode != 0 and message in evaluate_cli[name].stderr
        assert "Traceback" not in evaluate_cli[name].stderr


BAD_TRAIN_INPUT = [
    (["--model=nope"], "unknown model 'nope'; registered models: "),
    (["--set=train.stepz=1"], "unknown key 'train.stepz'"),
    (["--set=train.steps=lots"], "takes a int"),
    (["--strategy=gpus"], "gpus"),
    (["--pair=en-en"], "translates en into itself"),
    (["--set=model.dropout=1.5"], "model.dropout=1.5 must be in [0, 1)"),
    (["--set=train.learning_rate=0"], "train.learning_rate=0.0 must be > 0"),
    (["--set=train.learning_rate=-0.001"], "train.learning_rate=-0.001 must be > 0"),
    (["--steps=-5"], "train.steps=-5 must be >= 0"),
]


@pytest.fixture(scope="module")
def train_cli(tmp_path_factory):
    """Every train command line of the tests below, one Python for all: (directory, results); the
    i-th bad input writes to directory/run<i>, then --list_models."""
    directory = tmp_path_factory.mktemp("train_cli")
    commands = [([f"--workdir={directory / f'run{i}'}", *args], "") for i, (args, _) in enumerate(BAD_TRAIN_INPUT)]
    commands.append((["--list_models"], ""))
    return directory, run_cli_commands("train", commands, directory / "results.json")


@pytest.mark.parametrize("case", range(len(BAD_TRAIN_INPUT)),
                         ids=[f"args{i}-{message}" for i, (_, message) in enumerate(BAD_TRAIN_INPUT)])
def test_train_cli_bad_input(case, train_cli):
    directory, results = train_cli
    message = BAD_TRAIN_INPUT[case][1]
    done = results[case]
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (directory / f"run{case}").exists()


def test_thread_flags_set_tensorflow_thread_pools(trained_run, translate_cli):
    _, workdir, _ = trained_run
    bad = translate_cli["negative_threads"]
    assert bad.returncode == 2 and "--inter_op_threads must be >= 0" in bad.stderr
    # A fresh process (thread pools are fixed once TensorFlow runs an op): the flags reach TensorFlow
    # before the first op, and the translation is the one of the default pools.
    probe = ("import sys; from absl import flags; from xling_zoo import cli; import tensorflow as tf; "
             "cli.define_thread_flags(); flags.FLAGS(sys.argv); cli.apply_thread_flags(); "
             "tf.constant(1) + 1; print(tf.config.threading.get_intra_op_parallelism_threads(), "
             "tf.config.threading.get_inter_op_parallelism_threads())")
    done = subprocess.run([sys.executable, "-c", probe, "--intra_op_threads=1", "--inter_op_threads=2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "2"]
    single = subprocess.run([sys.executable, "-m", "xling_zoo.translate", f"--workdir={workdir}",
                             "--intra_op_threads=1", "--inter_op_threads=1"], input="The red user opens the file.\n",
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    default = translate_cli["two_lines_and_a_blank"].stdout.split("\n")[0]
    assert single.stdout.split("\n")[0] == default


def test_translate_cli_missing_run(translate_cli):
    done = translate_cli["missing_run"]
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_list_models_cli(train_cli):
    done = train_cli[1][-1]
    assert done.returncode == 0 and "lstm_seq2seq" in done.stdout.split()


def test_time_budget_stops_mid_epoch_and_keeps_what_was_trained(tmp_path, tiny_config):
    config = tiny_config("lstm_seq2seq")
    for assignment in ["train.steps=1000", "train.eval_every_steps=500", "train.max_minutes=0.001"]:
        config_lib.apply_override(config, assignment)
    metrics = trainer.train_and_evaluate(config, tmp_path / "run")
    assert metrics["stop_reason"].startswith("time budget")
    assert metrics["step"] < 500  # Stopped inside the first evaluation interval...
    assert workdir_lib.latest_checkpoint(tmp_path / "run") is not None  # ...and saved it.


@pytest.mark.parametrize("jit_compile", [False, True])
def test_train_step_reads_the_output_layer_at_real_positions_unless_compiled(jit_compile):
    from tests.models import test_base
    from tests.models.test_lstm_seq2seq import tiny_model

    # XLA needs static shapes, so a model built for them leaves the gather of real positions out.
    model = tiny_model(static_shapes=jit_compile, attention=True)
    assert model.loss_on_real_positions is not jit_compile
    batch = test_base._batch()
    del batch["source_language_id"]
    model(batch)
    train_config = config_lib.load_config("lstm_seq2seq").train
    strategy = trainer.make_strategy(train_config)
    optimizer = trainer.make_optimizer(train_config)
    optimizer.build(model.trainable_variables)
    if jit_compile:
        with pytest.raises(ValueError, match="static_shapes=True"):
            trainer.make_train_step(strategy, tiny_model(attention=True), optimizer, jit_compile=True)
    step = trainer.make_train_step(strategy, model, optimizer, jit_compile=jit_compile)
    logs = step(iter(tf.data.Dataset.from_tensors(batch).repeat()))
    assert float(logs["target_tokens"]) == 6.0
    assert np.isfinite(float(logs["loss"]))


def test_a_start_that_failed_before_its_first_checkpoint_does_not_block_the_corrected_command(tmp_path, tiny_config):
    """What an earlier version left after a bad flag: config.json (another pair) and a tokenizer, no
    checkpoint. Nothing there is worth keeping, so the corrected command takes the directory over."""
    wrong = tiny_config("lstm_seq2seq")
    wrong.pair = "en-nl"
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(config_lib.to_json(wrong))
    (workdir / "tokenizer").mkdir()
    (workdir / "tokenizer" / "tokenizers.json").write_text("{}")
    config = tiny_config("lstm_seq2seq")
    config.train.steps = 3
    metrics = trainer.train_and_evaluate(config, workdir)
    assert metrics["step"] == 3
    assert json.loads((workdir / "config.json").read_text())["pair"] == "en-de"
    # Once it has a checkpoint, the run is protected again.
    with pytest.raises(UserError, match="different pair"):
        trainer.train_and_evaluate(wrong, workdir)


def test_an_unwritable_workdir_is_one_clear_error(tmp_path, tiny_config):
    config = tiny_config("lstm_seq2seq")
    with pytest.raises(UserError, match="cannot write to --workdir=/proc/xling_zoo_run"):
        trainer.train_and_evaluate(config, "/proc/xling_zoo_run")
    if os.geteuid() != 0:  # root writes through file permissions
        read_only = tmp_path / "read_only"
        read_only.mkdir(mode=0o500)
        with pytest.raises(UserError, match="cannot write to --workdir"):
            trainer.train_and_evaluate(config, read_only / "run")


def test_skip_bad_lines_reaches_training(tmp_path, tiny_config, tiny_tsv):
    train = tiny_tsv.split(":", 1)[1].split(",")[0]
    lines = open(train, encoding="utf-8").read().splitlines()
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines[:600] + ["no tab on this line"] + lines[600:]) + "\n", encoding="utf-8")
    config = tiny_config("lstm_seq2seq")
    config.corpus = f"tsv:{bad}," + ",".join(tiny_tsv.split(":", 1)[1].split(",")[1:])
    config.train.steps = 2
    with pytest.raises(UserError, match="--skip_bad_lines"):
        trainer.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    config.skip_bad_lines = True
    assert trainer.train_and_evaluate(config, tmp_path / "run")["step"] == 2
    done = run_cli("train", f"--workdir={tmp_path / 'cli'}", f"--corpus={config.corpus}", "--steps=1",
                   "--set=tokenizer.vocab_size=330", "--set=data.max_length=48", "--skip_bad_lines",
                   "--set=model.units=16", "--set=model.embedding_dim=16", "--set=eval.validation_bleu_examples=4",
                   "--set=train.max_minutes=0")
    assert done.returncode == 0, done.stderr[-2000:]
