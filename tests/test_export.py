"""Export: the SavedModel runs in TF Serving's session-based loader and translates like the CLI.

Trained runs are shared by the whole module (one per model, a few seconds each); the loaders run in
subprocesses that import only tensorflow and tensorflow_text (xling_zoo/tools/, run as files).
"""

import base64
import contextlib
import functools
import json
import os
import pathlib
import subprocess
import sys
import uuid

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import make_pairs, run_cli_commands, shrink, write_tsv
from xling_zoo import config as config_lib
from xling_zoo import decode, export, serving, trainer
from xling_zoo import transfer as transfer_lib
from xling_zoo import workdir as workdir_lib
from xling_zoo.decode import Translator, normalize_whitespace
from xling_zoo.errors import UserError

TOOLS = pathlib.Path(export.__file__).parent / "tools"
SIZES = {
    "lstm_seq2seq": ["model.embedding_dim=16", "model.units=16"],
    "transformer": ["model.num_encoder_layers=1", "model.num_decoder_layers=1", "model.hidden_dim=16",
                    "model.num_heads=2", "model.intermediate_dim=32", "model.max_length=64"],
    "adversarial": ["model.transformer.num_encoder_layers=1", "model.transformer.num_decoder_layers=1",
                    "model.transformer.hidden_dim=16", "model.transformer.num_heads=2",
                    "model.transformer.intermediate_dim=32", "model.transformer.max_length=64",
                    "model.discriminator_hidden_dim=8", "model.discriminator_steps=1", "pair=de,nl-en"],
}
ENGLISH = ["The red user opens the file.", "  The old   window closes a big picture. ", "The user saves.",
           "A green folder copies the small house.", "The window shows a red picture."]
GERMAN = ["Der rote Benutzer öffnet die Datei.", "Das alte Fenster schließt ein großes Bild.",
          "Der Benutzer speichert.", "Ein grüner Ordner kopiert das kleine Haus."]


def train(config_name, corpus_spec, workdir, extra=()):
    config = shrink(config_lib.load_config(config_name), corpus_spec)
    for assignment in SIZES[config_name] + list(extra):
        config_lib.apply_override(config, assignment)
    trainer.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def lstm_run(tiny_tsv, tmp_path_factory):
    return train("lstm_seq2seq", tiny_tsv, tmp_path_factory.mktemp("runs") / "lstm")


@pytest.fixture(scope="module")
def transformer_run(tiny_tsv, tmp_path_factory):
    return train("transformer", tiny_tsv, tmp_path_factory.mktemp("runs") / "transformer")


@pytest.fixture(scope="module")
def adversarial_run(tmp_path_factory):
    """German and Dutch into English: aligned text files of the made-up grammar."""
    directory = tmp_path_factory.mktemp("multi_corpus")
    german, dutch = make_pairs(900, seed=11, column=0), make_pairs(900, seed=11, column=1)
    prefixes = []
    for split, rows in (("train", slice(0, 700)), ("validation", slice(700, 800)), ("test", slice(800, 900))):
        for language, lines in (("en", [e for e, _ in german[rows]]), ("de", [t for _, t in german[rows]]),
                                ("nl", [t for _, t in dutch[rows]])):
            (directory / f"{split}.{language}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        prefixes.append(str(directory / split))
    return train("adversarial", "text:" + ",".join(prefixes), tmp_path_factory.mktemp("runs") / "adversarial")


@pytest.fixture(scope="module")
def child_run(lstm_run, tmp_path_factory):
    """An en-nl child of the lstm run, with its own vocabulary (tests/test_transfer.py's recipe)."""
    directory = tmp_path_factory.mktemp("nl_corpus")
    pairs = make_pairs(800, seed=7, column=1)
    files = [write_tsv(directory / f"{split}.tsv", rows)
             for split, rows in (("train", pairs[:600]), ("validation", pairs[600:700]), ("test", pairs[700:]))]
    workdir = tmp_path_factory.mktemp("runs") / "child"
    transfer_lib.transfer(lstm_run, workdir, "en-nl", corpus_spec="tsv:" + ",".join(map(str, files)), vocab="child",
                          overrides=["train.steps=3", "train.eval_every_steps=3", "tokenizer.vocab_size=290"])
    return workdir


@pytest.fixture(scope="module")
def lstm_export(lstm_run, tmp_path_factory):
    return export.export_run(lstm_run, tmp_path_factory.mktemp("serving"), check_sentences=2)


def in_process(version_dir, sentences):
    """The signature through TF2's loader: {name: list of str}."""
    signature = tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE_KEY]
    outputs = signature(sentences=tf.constant(sentences, tf.string, shape=[len(sentences)]))
    return {name: [v.decode("utf-8") for v in value.numpy()] for name, value in outputs.items()}


def translator_outputs(workdir, sentences, beam_size=None):
    run = workdir_lib.load_run(workdir)
    translator = Translator(run.model, run.tokenizers, run.config, beam_size=beam_size)
    return [t.decode("utf-8") for t in translator.translate(tf.constant(sentences)).numpy()]


def start(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **kwargs)


def finish(process, stdin=None, timeout=300):
    stdout, stderr = process.communicate(stdin, timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    assert "could not turn XLA compilation off" not in stderr
    return stdout


# === The session loader (TF Serving's) translates exactly like python -m xling_zoo.translate ===

@pytest.mark.parametrize("name, sentences, beam_size", [
    ("lstm_seq2seq", ENGLISH, 1), ("transformer", ENGLISH, 3), ("adversarial", GERMAN, 2), ("child", ENGLISH, None)])
def test_session_loaders_translate_like_the_translate_cli(request, tmp_path, name, sentences, beam_size):
    workdir = request.getfixturevalue({"lstm_seq2seq": "lstm_run"}.get(name, f"{name}_run"))
    version_dir = export.export_run(workdir, tmp_path / "serving", beam_size=beam_size, check_sentences=2)
    # No op that only XLA runs (the Transformer's cache updates): the session client below turns XLA
    # compilation off, as the model server does by default.
    assert json.loads((version_dir / export.METADATA_FILE).read_text())["xla_ops"] == []
    beam = [] if beam_size is None else [f"--beam_size={beam_size}"]
    translate = start(["-m", "xling_zoo.translate", f"--workdir={workdir}", *beam], stdin=subprocess.PIPE)
    # The command line of README "Export to TF Serving", outputs saved as .npy files.
    saved_model_cli = start([str(TOOLS / "saved_model_cli.py"), "run", f"--dir={version_dir}", "--tag_set=serve",
                             f"--signature_def={export.SIGNATURE_KEY}", f"--input_exprs=sentences={sentences!r}",
                             f"--outdir={tmp_path / 'npy'}"])
    session = start([str(TOOLS / "session_client.py"), f"--dir={version_dir}"], stdin=subprocess.PIPE)

    expected = finish(translate, "".join(f"{s}\n" for s in sentences)).split("\n")[:-1]
    assert len(expected) == len(sentences)
    finish(saved_model_cli)
    assert [t.decode("utf-8") for t in np.load(tmp_path / "npy" / "translations.npy", allow_pickle=True)] == expected
    assert list(np.load(tmp_path / "npy" / "status.npy", allow_pickle=True)) == [b"ok"] * len(sentences)
    statuses = ["ok"] * len(sentences)
    assert json.loads(finish(session, json.dumps(sentences))) == {"translations": expected, "status": statuses}


def test_the_export_needs_only_tensorflow_texts_sentencepiece_ops(lstm_export):
    metadata = json.loads((lstm_export / export.METADATA_FILE).read_text())
    assert metadata["custom_ops"] == ["SentencepieceDetokenizeOp", "SentencepieceOp", "SentencepieceTokenizeOp"]
    assert metadata["xla_ops"] == []
    assert (metadata["checked_sentences"], metadata["max_source_tokens"]) == (2, 48)
    assert metadata["split_long_sentences"] is False
    assert set(metadata["statuses"]) == {"ok", "split", "empty", "too_long", "too_many_tokens"}
    # Only the variables the signature reads, once each (not the Keras model's object graph too).
    run = workdir_lib.load_run(metadata["workdir"])
    saved = [shape for name, shape in tf.train.list_variables(str(lstm_export / "variables" / "variables"))
             if name != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert sum(int(np.prod(shape)) for shape in saved) == sum(int(np.prod(w.shape)) for w in run.model.weights)


# === One status per sentence: a bad sentence does not fail the batch ===

def test_each_sentence_gets_a_status_and_only_good_ones_are_translated(lstm_run, lstm_export):
    overlong = " ".join(["The red user opens the file."] * 20)
    sentences = ["The user saves.", "   ", "x" * 5000, overlong, "", "The file closes.", "The red window opens."]
    statuses = ["ok", "empty", "too_long", "too_many_tokens", "empty", "ok", "ok"]
    good = [s for s, status in zip(sentences, statuses) if status == "ok"]
    translations = iter(translator_outputs(lstm_run, good))
    expected = {"translations": [next(translations) if status == "ok" else "" for status in statuses],
                "status": statuses}
    assert in_process(lstm_export, sentences) == expected
    session = serving.session_outputs(str(lstm_export), sentences)
    assert {k: [v.decode("utf-8") for v in values] for k, values in session.items()} == expected
    # An empty request, or one with nothing to translate, is answered too.
    assert in_process(lstm_export, []) == {"translations": [], "status": []}
    assert in_process(lstm_export, [" ", "x" * 5000]) == {"translations": ["", ""], "status": ["empty", "too_long"]}


# === TF Serving's REST API ===

def test_rest_requests_in_both_forms(lstm_run, lstm_export):
    signatures = tf.saved_model.load(str(lstm_export)).signatures
    ok = translator_outputs(lstm_run, ["The user saves.", "Der Benutzer."])
    row = serving.rest_predict(signatures, {"instances": ["The user saves.", "  ", "Der Benutzer."]})
    assert row == {"predictions": [{"status": "ok", "translations": ok[0]}, {"status": "empty", "translations": ""},
                                   {"status": "ok", "translations": ok[1]}]}
    # Instances as objects, a signature named, a string as base64: the same answer.
    b64 = {"b64": base64.b64encode("Der Benutzer.".encode("utf-8")).decode("ascii")}
    assert serving.rest_predict(signatures, {"signature_name": "serving_default", "instances": [
        {"sentences": "The user saves."}, {"sentences": "  "}, {"sentences": b64}]}) == row
    columnar = serving.rest_predict(signatures, {"signature_name": "serving_default",
                                                 "inputs": {"sentences": ["The user saves.", "  ", "Der Benutzer."]}})
    assert columnar == {"outputs": {"translations": [ok[0], "", ok[1]], "status": ["ok", "empty", "ok"]}}
    assert serving.rest_predict(signatures, {"inputs": ["The user saves.", "  ", "Der Benutzer."]}) == columnar
    assert json.loads(json.dumps(row)) == row  # What the server sends is plain JSON.
    assert serving.rest_predict(signatures, {"instances": []}) == {"predictions": []}
    for bad, message in [({"instances": ["a"], "inputs": ["a"]}, "exactly one of"), ({"instances": [3]}, "JSON string"),
                         ({"inputs": {"text": ["a"]}}, "exactly the input"),
                         ({"signature_name": "predict", "instances": ["a"]}, "no signature 'predict'")]:
        with pytest.raises(ValueError, match=message):
            serving.rest_predict(signatures, bad)


# === Long sentences split into pieces the model was trained on ===

class EchoTranslator:
    """A translator whose "translation" shows its input: checks which piece went to which sentence."""

    def __init__(self, workdir):
        run = workdir_lib.load_run(workdir)
        self.tokenizers, self.data_config = run.tokenizers, run.config.data
        self.target_language = run.pair.target_language

    def translate(self, sentences):
        return tf.strings.join(["<", normalize_whitespace(sentences), ">"])


def test_splitting_cuts_at_sentence_ends_then_between_words(lstm_run):
    graph = serving.ServingGraph(EchoTranslator(lstm_run), 4096, split_long_sentences=True)
    sentence = "The red user opens the file."
    sentences_only = "  ".join([sentence, "The user saves!", "A window closes?"] * 6)
    words_only = " ".join(["the old user opens a big file"] * 12)
    long_word = "x" * 300
    pieces, owners = graph.split(tf.constant([sentences_only, words_only, f"Save {long_word} now."]))
    pieces = [p.decode("utf-8") for p in pieces.numpy()]
    owners = owners.numpy().tolist()
    assert owners == sorted(owners) and set(owners) == {0, 1, 2}
    lengths = graph._source_lengths(tf.constant(pieces)).numpy()
    assert max(lengths) <= graph.max_source_tokens
    by_owner = [[p for p, o in zip(pieces, owners) if o == i] for i in range(3)]
    assert by_owner[0] == [sentence, "The user saves!", "A window closes?"] * 6
    # Windows of words: nothing lost, each as long as it can be.
    assert " ".join(by_owner[1]) == words_only and len(by_owner[1]) > 1
    for piece, following in zip(by_owner[1], by_owner[1][1:]):
        grown = f"{piece} {following.split()[0]}"
        assert graph._source_lengths(tf.constant([grown])).numpy()[0] > graph.max_source_tokens
    # A word longer than a window is cut into runs of characters.
    assert "".join(by_owner[2]).replace(" ", "") == f"Save{long_word}now." and len(by_owner[2]) > 2

    batch = ["The user saves.", sentences_only, " ", words_only, "Short. Two sentences."]
    outputs = graph.serve(tf.constant(batch))
    assert [s.decode() for s in outputs["status"].numpy()] == ["ok", "split", "empty", "split", "ok"]
    translations = [t.decode("utf-8") for t in outputs["translations"].numpy()]
    # A sentence that fits goes whole, even with several sentence ends in it.
    assert translations[0] == "<The user saves.>" and translations[4] == "<Short. Two sentences.>"
    assert translations[1] == " ".join(f"<{p}>" for p in by_owner[0]) and translations[2] == ""
    assert translations[3] == " ".join(f"<{p}>" for p in by_owner[1])


def test_split_long_sentences_export(lstm_run, tmp_path):
    version_dir = export.export_run(lstm_run, tmp_path / "serving", split_long_sentences=True, check_sentences=2)
    assert json.loads((version_dir / export.METADATA_FILE).read_text())["split_long_sentences"] is True
    overlong = " ".join(["The red user opens the file.", "The window saves a big picture."] * 6)
    sentences = ["The user saves.", overlong, "x" * 5000]
    session = serving.session_outputs(str(version_dir), sentences)
    assert [s.decode() for s in session["status"]] == ["ok", "split", "too_long"]
    parts = ["The red user opens the file.", "The window saves a big picture."] * 6
    expected = translator_outputs(lstm_run, ["The user saves."] + parts)
    assert [t.decode("utf-8") for t in session["translations"]] == [expected[0], " ".join(expected[1:]), ""]


# === Paths through tf.io.gfile; publishing ===

def test_export_to_tensorflows_in_memory_filesystem(lstm_run):
    # $XLING_ZOO_TEST_REMOTE_DIR=gs://BUCKET/DIR runs it in a bucket (tests/data/test_remote_paths.py).
    remote = os.environ.get("XLING_ZOO_TEST_REMOTE_DIR", "ram://xling_zoo_test").rstrip("/")
    base = f"{remote}/{uuid.uuid4().hex[:8]}/xling"
    first = export.export_run(lstm_run, base, check_sentences=2)
    second = export.export_run(lstm_run, base, beam_size=2, check_sentences=0)
    assert (first, second) == (f"{base}/1", f"{base}/2")
    # No staging folder left (GCS lists folders as "1/").
    assert sorted(name.rstrip("/") for name in tf.io.gfile.listdir(base)) == ["1", "2"]
    with tf.io.gfile.GFile(f"{second}/{export.METADATA_FILE}") as f:
        assert json.load(f)["beam_size"] == 2
    assert in_process(first, ENGLISH[:2])["translations"] == translator_outputs(lstm_run, ENGLISH[:2])
    outputs = serving.session_outputs(second, ENGLISH[:2])
    assert [t.decode("utf-8") for t in outputs["translations"]] == translator_outputs(lstm_run, ENGLISH[:2], 2)


@pytest.mark.parametrize("base", ["local", "ram://failing/xling"])
def test_a_failed_export_leaves_no_version_folder(lstm_run, tmp_path, monkeypatch, base):
    base = str(tmp_path / "serving") if base == "local" else base

    def disagree(*args):
        raise RuntimeError("the exported model disagrees")

    monkeypatch.setattr(serving.ServingGraph, "check", disagree)
    with pytest.raises(RuntimeError, match="disagrees"):
        export.export_run(lstm_run, base, check_sentences=1)
    assert tf.io.gfile.listdir(base) == []
    monkeypatch.undo()
    if base.startswith("ram://"):
        # The copy that publishes to a filesystem without folder renames fails half way.
        copy, copied = tf.io.gfile.copy, []

        def copy_then_fail(source, target, overwrite=False):
            if copied:
                raise tf.errors.UnavailableError(None, None, "connection reset")
            copied.append(target)
            copy(source, target, overwrite)

        monkeypatch.setattr(tf.io.gfile, "copy", copy_then_fail)
        with pytest.raises(UserError, match=f"could not publish {base}/1: connection reset"):
            export.export_run(lstm_run, base, check_sentences=0)
        assert copied and tf.io.gfile.listdir(base) == []


def test_versions_count_up_and_are_never_overwritten(lstm_run, lstm_export):
    base = lstm_export.parent
    before = {p: p.read_bytes() for p in lstm_export.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="already exists: TF Serving versions are never overwritten"):
        export.export_run(lstm_run, base, version=int(lstm_export.name), check_sentences=0)
    assert {p: p.read_bytes() for p in lstm_export.rglob("*") if p.is_file()} == before
    following = export.export_run(lstm_run, base, check_sentences=0)
    assert following == base / str(int(lstm_export.name) + 1)
    assert sorted(p.name for p in base.iterdir()) == sorted([lstm_export.name, following.name])


def test_bad_requests_are_refused_before_writing(tmp_path, tiny_config, lstm_run):
    config = tiny_config("lstm_seq2seq")
    workdir = tmp_path / "untrained"
    workdir_lib.prepare(config, workdir)
    with pytest.raises(UserError, match="tokenizer|no checkpoint"):
        export.export_run(workdir, tmp_path / "serving")
    assert not (tmp_path / "serving").exists()
    (tmp_path / "a_file").write_text("x")
    for kwargs, message in [(dict(export_dir=tmp_path / "a_file"), "is a file, not a folder"),
                            (dict(export_dir="nosuchfs://bucket/models"), "--export_dir=nosuchfs://bucket/models "),
                            (dict(export_dir=tmp_path / "serving", max_input_bytes=0), "--max_input_bytes must be"),
                            (dict(export_dir=tmp_path / "serving", version=0), "--version must be >= 1")]:
        with pytest.raises(UserError, match=message):
            export.export_run(lstm_run, **kwargs)
    assert not (tmp_path / "serving").exists()


def test_export_cli(lstm_run, tmp_path):
    # Both command lines in one Python (tests/conftest.py run_cli_commands).
    done, bad = run_cli_commands("export", [
        ([f"--workdir={lstm_run}", f"--export_dir={tmp_path / 'serving'}", "--version=7", "--check_sentences=2",
          "--split_long_sentences"], ""),
        ([f"--workdir={tmp_path / 'missing'}"], "")], tmp_path / "results.json")
    assert done.returncode == 0, done.stderr
    assert f"to {tmp_path / 'serving' / '7'}" in done.stdout
    assert "2 validation sentences translate identically in the session loader" in done.stdout
    assert "long sentences are split" in done.stdout
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_the_session_client_refuses_xla_only_ops_like_the_model_server(transformer_run, tmp_path, monkeypatch):
    # Without core_tensorflow_ops, Keras' update of a preallocated cache (the decoding caches XLA
    # needs) is XlaDynamicUpdateSlice: what a default model server fails on, and so must the client
    # the tests above rely on.
    monkeypatch.setattr(serving, "core_tensorflow_ops", contextlib.nullcontext)
    monkeypatch.setattr(decode, "Translator", functools.partial(decode.Translator, static_shapes=True))
    version_dir = export.export_run(transformer_run, tmp_path / "serving", check_sentences=0)
    assert json.loads((version_dir / export.METADATA_FILE).read_text())["xla_ops"] == ["XlaDynamicUpdateSlice"]
    session = start([str(TOOLS / "session_client.py"), f"--dir={version_dir}"], stdin=subprocess.PIPE)
    _, stderr = session.communicate(json.dumps(ENGLISH[:1]), timeout=300)
    assert session.returncode != 0 and "XLA compilation disabled" in stderr


@pytest.mark.parametrize("shape, update_shape, start", [
    ((3, 2, 7, 4), (3, 2, 1, 4), [0, 0, 5, 0]), ((3, 2, 7, 4), (3, 2, 2, 4), [0, 0, 6, 0]),
    ((5,), (2,), [-3]), ((4, 4), (2, 3), [1, 2]), ((4, 4), (2, 4), [3, 0])])
def test_the_exports_slice_update_equals_keras(shape, update_shape, start):
    import keras

    rng = np.random.default_rng(0)
    inputs, updates = rng.normal(size=shape).astype("float32"), rng.normal(size=update_shape).astype("float32")
    starts = [tf.constant(i) if i else 0 for i in start]  # Tensors, and 0 as Python ints like the caches'.
    np.testing.assert_array_equal(serving.slice_update(inputs, starts, updates),
                                  keras.ops.slice_update(inputs, start, updates))
