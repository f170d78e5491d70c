import json
import subprocess
import sys

import pytest
import tensorflow as tf

from xling_zoo import config as config_lib
from xling_zoo import export, trainer
from xling_zoo import workdir as workdir_lib
from xling_zoo.decode import Translator
from xling_zoo.errors import UserError

SIZES = {
    "lstm_seq2seq": ["model.embedding_dim=16", "model.units=16"],
    "transformer": ["model.num_encoder_layers=1", "model.num_decoder_layers=1", "model.hidden_dim=16",
                    "model.num_heads=2", "model.intermediate_dim=32", "model.max_length=64"],
}
SENTENCES = ["The red user opens the file.", "  The old   window closes a big picture. ", "The user saves."]


@pytest.fixture(scope="module", params=sorted(SIZES))
def trained_run(request, tmp_path_factory, tiny_tsv):
    from tests.conftest import shrink

    config = shrink(config_lib.load_config(request.param), tiny_tsv)
    for assignment in SIZES[request.param]:
        config_lib.apply_override(config, assignment)
    workdir = tmp_path_factory.mktemp("runs") / request.param
    trainer.train_and_evaluate(config, workdir)
    return workdir


def serve(version_dir, sentences):
    signature = tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE_KEY]
    batch = tf.constant(sentences, tf.string)
    return [t.decode("utf-8") for t in signature(sentences=batch)["translations"].numpy()]


def test_export_serves_raw_strings_like_the_run(trained_run, tmp_path):
    first = export.export_run(trained_run, tmp_path / "serving", check_sentences=4)
    assert first == tmp_path / "serving" / "1"
    run = workdir_lib.load_run(trained_run)
    expected = [t.decode("utf-8") for t in Translator(run.model, run.tokenizers, run.config)
                .translate(tf.constant(SENTENCES)).numpy()]
    assert serve(first, SENTENCES) == expected
    assert serve(first, []) == []  # An empty request is answered, not an error.
    metadata = json.loads((first / export.METADATA_FILE).read_text())
    assert metadata["checked_sentences"] == 4 and metadata["max_source_tokens"] == 48
    # The next export takes the next version; no staging folder is left behind.
    second = export.export_run(trained_run, tmp_path / "serving", beam_size=2, check_sentences=0)
    assert second.name == "2"
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["1", "2"]
    assert json.loads((second / export.METADATA_FILE).read_text())["beam_size"] == 2


@pytest.fixture(scope="module")
def exported_lstm(tmp_path_factory, tiny_tsv):
    from tests.conftest import shrink

    config = shrink(config_lib.load_config("lstm_seq2seq"), tiny_tsv)
    for assignment in SIZES["lstm_seq2seq"]:
        config_lib.apply_override(config, assignment)
    workdir = tmp_path_factory.mktemp("runs") / "lstm"
    trainer.train_and_evaluate(config, workdir)
    return workdir, export.export_run(workdir, check_sentences=0)


@pytest.mark.parametrize("bad_index, sentence, message", [
    (1, "   ", r"empty sentences \(nothing but whitespace\) at index\] \[1\]"),
    (2, "x" * 5000, r"longer than max_input_bytes=4096 UTF-8 bytes, at index\] \[2\] \[values:\] \[5000\]"),
    (0, " ".join(["The red user opens the file."] * 20), r"more than data.max_length=48 source tokens.*\[0\]"),
])
def test_bad_requests_name_the_sentence(exported_lstm, bad_index, sentence, message):
    _, version_dir = exported_lstm
    sentences = ["The user saves.", "The file closes.", "The red window opens."]
    sentences[bad_index] = sentence
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(version_dir, sentences)


def test_an_existing_version_is_never_overwritten(exported_lstm):
    workdir, version_dir = exported_lstm
    before = {p: p.read_bytes() for p in version_dir.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="already exists: TF Serving versions are never overwritten"):
        export.export_run(workdir, version=int(version_dir.name), check_sentences=0)
    assert {p: p.read_bytes() for p in version_dir.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in version_dir.parent.iterdir()) == [version_dir.name]


def test_a_run_without_weights_is_refused_before_writing(tmp_path, tiny_config):
    config = tiny_config("lstm_seq2seq")
    workdir = tmp_path / "untrained"
    workdir_lib.prepare(config, workdir)
    with pytest.raises(UserError, match="tokenizer|no checkpoint"):
        export.export_run(workdir, tmp_path / "serving")
    assert not (tmp_path / "serving").exists()


def test_export_cli(exported_lstm, tmp_path):
    workdir, _ = exported_lstm
    done = subprocess.run([sys.executable, "-m", "xling_zoo.export", f"--workdir={workdir}",
                           f"--export_dir={tmp_path / 'serving'}", "--version=7", "--check_sentences=2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"to {tmp_path / 'serving' / '7'}" in done.stdout
    assert "2 validation sentences translate identically" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "xling_zoo.export", f"--workdir={tmp_path / 'missing'}"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
