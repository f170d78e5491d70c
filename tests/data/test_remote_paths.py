"""Corpus files, data_dir and tokenizers on a non-local TensorFlow filesystem: TensorFlow's in-memory
ram://, standing in for a bucket (gs://) offline. Everything goes through tf.io.gfile.

TFDS keeps the prepared corpora through etils.epath, which knows gs://, s3://, az:// and hf:// and
reaches gs:// through its tf.io.gfile backend. ``tfds_reads_remote`` registers ram:// with epath the
way etils registers gs:// (same path class, same backend), so a data_dir on ram:// takes the gs:// route.

$XLING_ZOO_TEST_REMOTE_DIR=gs://BUCKET/DIR runs the same tests in a real bucket, or in a GCS emulator
that TensorFlow's GCS client reaches (it has no endpoint setting: the emulator must answer for
www.googleapis.com and storage.googleapis.com over HTTPS).
"""

import hashlib
import os
import pathlib
import uuid

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.conftest import make_pairs, register_ram_with_tfds
from xling_zoo.data import builtin, corpus, local_files
from xling_zoo.data import tokenizer as tok
from xling_zoo.errors import UserError


REMOTE_DIR = os.environ.get("XLING_ZOO_TEST_REMOTE_DIR", "ram://xling_zoo_test").rstrip("/")


@pytest.fixture
def remote():
    """A fresh directory in REMOTE_DIR: by default on ram:// (TensorFlow's in-memory filesystem, this
    process only)."""
    root = f"{REMOTE_DIR}/{uuid.uuid4().hex[:8]}"
    tf.io.gfile.makedirs(root)
    return root


@pytest.fixture
def tfds_reads_remote(monkeypatch):
    """ram:// in etils.epath's tables (private ones: test scaffolding) exactly where gs:// is."""
    if REMOTE_DIR.startswith("ram://"):
        register_ram_with_tfds(monkeypatch)


def write(path, text):
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)  # ram:// opened with "w" appends to an existing file (TF 2.21).
    with tf.io.gfile.GFile(path, "w") as stream:
        stream.write(text)
    return path


def tsv_text(count=300):
    return "".join(f"{english}\t{german}\n" for english, german in make_pairs(count))


def all_files(root):
    """Paths under ``root``, relative to it (gs:// lists directories with a trailing "/")."""
    return sorted(f"{directory.rstrip('/')}/{name}"[len(root) + 1:]
                  for directory, _, names in tf.io.gfile.walk(root) for name in names)


def all_splits(spec, pair, data_dir, **kwargs):
    return {split: corpus.read_split(spec, pair, split, data_dir=data_dir, **kwargs) for split in corpus.SPLITS}


# --- Corpus files in a remote directory -----------------------------------------------------------

def test_remote_tsv_reads_like_the_same_file_on_disk(remote, tmp_path):
    path = write(f"{remote}/en-de.tsv", tsv_text())
    local = tmp_path / "en-de.tsv"
    local.write_text(tsv_text(), encoding="utf-8")
    from_remote = all_splits(f"tsv:{path}", "en-de", tmp_path / "data_a")
    assert from_remote == all_splits(f"tsv:{local}", "en-de", tmp_path / "data_b")
    assert sum(map(len, from_remote.values())) == 300 and from_remote["test"]
    summary = corpus.summarize(f"tsv:{path}", "en-de", data_dir=tmp_path / "data_a")
    assert summary["sources"]["files"] == [path]
    # Edited in place: prepared again (the dataset is named by the files' sha256, read through gfile).
    write(path, tsv_text(200))
    assert sum(corpus.summarize(f"tsv:{path}", "en-de", data_dir=tmp_path / "data_a")["splits"].values()) == 200


def test_remote_aligned_text_lists_and_reads(remote, tmp_path):
    pairs = make_pairs(120)
    write(f"{remote}/corpus.en", "".join(f"{english}\n" for english, _ in pairs))
    write(f"{remote}/corpus.de", "".join(f"{german}\n" for _, german in pairs))
    write(f"{remote}/corpus.nl", "".join(f"{dutch}\n" for _, dutch in make_pairs(120, column=1)))
    write(f"{remote}/corpus.de.bak", "not a language\n")
    spec = f"text:{remote}/corpus"
    assert corpus.list_pairs(spec, data_dir=tmp_path) == [
        {"pair": pair, "lines": 120} for pair in ("de-en", "de-nl", "en-nl")]
    test = corpus.read_split(spec, "de,nl-en", "test", data_dir=tmp_path)
    assert test and [row["source_language"] for row in test[:2]] == ["de", "nl"]
    assert {row["target"] for row in test} <= {english for english, _ in pairs}


def test_remote_tsv_with_skipped_bad_lines(remote, tmp_path):
    path = write(f"{remote}/bad.tsv", tsv_text(50) + "no tab here\n")
    with pytest.raises(UserError, match=rf"{remote}/bad\.tsv:51: has 1 tab-separated columns.*--skip_bad_lines"):
        corpus.read_split(f"tsv:{path}", "en-de", "train", data_dir=tmp_path)
    rows = all_splits(f"tsv:{path}", "en-de", tmp_path, skip_bad_lines=True)
    assert sum(map(len, rows.values())) == 50


@pytest.mark.parametrize("spec, message", [
    ("tsv:{remote}/nowhere.tsv", "file {remote}/nowhere.tsv does not exist"),
    ("tsv:{remote}/folder", "{remote}/folder is a directory, expected a file"),
    ("tsv:{remote}/en-de.tsv,{remote}/folder,{remote}/en-de.tsv", "{remote}/folder is a directory, expected a file"),
    ("text:{remote}/corpus", "file {remote}/corpus.de does not exist"),
])
def test_bad_remote_paths_name_the_file(remote, tmp_path, spec, message):
    write(f"{remote}/en-de.tsv", tsv_text(20))
    write(f"{remote}/corpus.en", "Hello\n")
    tf.io.gfile.makedirs(f"{remote}/folder")
    with pytest.raises(UserError, match=message.format(remote=remote).replace(".", r"\.")):
        corpus.load_split(spec.format(remote=remote), "en-de", "train", data_dir=tmp_path)


# --- Tokenizers in a remote directory -------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """Joint and separate tokenizers, trained as in test_tokenizer.py."""
    from tests.data.test_tokenizer import SEPARATE_VOCAB_SIZE, VOCAB_SIZE, examples, tokenizer_config

    return {"joint": tok.train_tokenizers(examples(), tokenizer_config(joint=True), ["en", "de"]),
            "separate": tok.train_tokenizers(examples(), tokenizer_config(joint=False, vocab_size=SEPARATE_VOCAB_SIZE),
                                             ["en", "de"])}


def ids(tokenizer, sentences):
    return tokenizer.tokenize(sentences).to_list()


@pytest.mark.parametrize("kind, files", [
    ("joint", ["spm.model", "tokenizers.json"]),
    ("separate", ["source_spm.model", "target_spm.model", "tokenizers.json"]),
])
def test_remote_tokenizers_load_with_identical_ids(remote, trained, kind, files):
    tokenizers = trained[kind]
    directory = f"{remote}/run/tokenizer"  # A string, as the trainer passes it; parents are created.
    tokenizers.save(directory)
    assert sorted(tf.io.gfile.listdir(directory)) == files  # Nothing left aside.
    loaded = tok.Tokenizers.load(directory)
    sentences = ["The red user opens the big file.", "Der alte Ordner zeigt ein Bild.", "ÄÖÜ 123 中文"]
    assert loaded.joint == tokenizers.joint
    assert ids(loaded.source, sentences) == ids(tokenizers.source, sentences)
    assert ids(loaded.target, sentences) == ids(tokenizers.target, sentences)
    tokenizers.save(directory)  # Saving again writes over the files.
    assert sorted(tf.io.gfile.listdir(directory)) == files


def test_interrupted_save_keeps_the_saved_tokenizers(remote, trained, monkeypatch):
    directory = f"{remote}/tokenizer"
    trained["joint"].save(directory)
    good = tf.io.gfile.GFile(f"{directory}/spm.model", "rb").read()

    def fail(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, "connection reset")

    monkeypatch.setattr(tf.io.gfile, "rename", fail)  # Dies between writing aside and renaming.
    with pytest.raises(tf.errors.UnavailableError):
        trained["separate"].save(directory)
    monkeypatch.undo()
    assert sorted(tf.io.gfile.listdir(directory)) == ["spm.model", "tokenizers.json"]
    assert tf.io.gfile.GFile(f"{directory}/spm.model", "rb").read() == good
    assert tok.Tokenizers.load(directory).joint


def test_remote_tokenizer_load_errors_name_the_path(remote, trained):
    with pytest.raises(UserError, match=f"{remote}/nowhere holds no tokenizers"):
        tok.Tokenizers.load(f"{remote}/nowhere")
    trained["joint"].save(f"{remote}/broken")
    write(f"{remote}/broken/spm.model", "not a model")
    with pytest.raises(UserError, match=f"tokenizers in {remote}/broken are corrupt"):
        tok.Tokenizers.load(f"{remote}/broken")
    with pytest.raises(UserError, match=f"{remote}/broken is a directory"):
        tok.SubwordTokenizer.load(f"{remote}/broken")


# --- A remote data_dir ----------------------------------------------------------------------------

def test_remote_data_dir_holds_the_prepared_corpus(remote, tmp_path, tfds_reads_remote, monkeypatch):
    path = tmp_path / "en-de.tsv"
    path.write_text(tsv_text(), encoding="utf-8")
    spec, data_dir = f"tsv:{path}", f"{remote}/data/"
    remote_splits = all_splits(spec, "en-de", data_dir)
    assert remote_splits == all_splits(spec, "en-de", tmp_path / "data")
    files = all_files(f"{remote}/data")
    config_name = local_files.make_config("tsv", (str(path),), "en", "de", False).name
    dataset_dir = f"tfds/xling_zoo_local_files/{config_name}/1.0.0"
    assert {f"{dataset_dir}/{name}" for name in ("dataset_info.json", "features.json")} <= set(files)
    assert all(name.startswith(dataset_dir) and ".incomplete" not in name for name in files), files
    summary = corpus.summarize(spec, "en-de", data_dir=data_dir)
    assert summary["data_dir"] == f"{remote}/data" and summary["splits"] == {s: len(remote_splits[s]) for s in corpus.SPLITS}

    # Prepared once: read back without preparing again.
    monkeypatch.setattr(local_files, "read_splits", lambda config: pytest.fail("prepared again"))
    assert corpus.read_split(spec, "en-de", "test", data_dir=data_dir) == remote_splits["test"]


def test_copy_into_a_remote_data_dir_writes_the_prepared_marker_last(remote, tmp_path, tfds_reads_remote, monkeypatch):
    path = tmp_path / "en-de.tsv"
    path.write_text(tsv_text(100), encoding="utf-8")
    copied = []
    copy = tf.io.gfile.copy

    def record(source, target, overwrite=False):
        copied.append(source.rsplit("/", 1)[-1])
        if source.endswith("dataset_info.json"):
            raise tf.errors.UnavailableError(None, None, "preempted")  # Killed before the last file.
        copy(source, target, overwrite=overwrite)

    with monkeypatch.context() as patch:
        patch.setattr(tf.io.gfile, "copy", record)
        with pytest.raises(tf.errors.UnavailableError):
            corpus.read_split(f"tsv:{path}", "en-de", "test", data_dir=remote)
    assert copied[-2:] == ["features.json", "dataset_info.json"] and len(copied) > 2
    # Not taken as prepared: the next run prepares and copies again, and reads it all.
    assert sum(map(len, all_splits(f"tsv:{path}", "en-de", remote).values())) == 100


def test_builtin_corpus_with_a_remote_data_dir(remote, tmp_path, tfds_reads_remote, monkeypatch):
    from tests.data.test_builtin import fake_entries, make_catalog, write_wheel  # Made-up wheels.

    wheel = write_wheel(tmp_path / "first-1.0-py3-none-any.whl", {
        "first/locale/de/LC_MESSAGES/app.po": make_catalog(fake_entries("de", 300), "de")})
    monkeypatch.setattr(builtin, "PACKAGES", (builtin.PinnedWheel(
        "first", "1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), "MIT"),))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # The local wheels cache, for a data_dir at a URL.
    local = all_splits("builtin", "en-de", tmp_path / "data", wheels_dir=str(tmp_path))
    assert all_splits("builtin", "en-de", f"{remote}/data", wheels_dir=str(tmp_path)) == local
    assert corpus.list_pairs("builtin", data_dir=f"{remote}/data") == corpus.list_pairs("builtin", data_dir=tmp_path / "data")
    files = all_files(f"{remote}/data")
    assert f"builtin/{builtin.CORPUS_VERSION}/languages.json" in files and f"builtin/{builtin.CORPUS_VERSION}/de.tsv" in files
    assert any(name.startswith("tfds/xling_zoo_builtin/de-en/") for name in files)
    assert builtin.wheels_cache_dir(f"{remote}/data") == tmp_path / "home" / ".cache" / "xling_zoo" / "wheels"


class XlingZooRemoteTestTranslate(tfds.core.GeneratorBasedBuilder):
    """A tiny TFDS translation dataset with no held-out splits (they are carved out of train)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.Translation(languages=("de", "en")))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index, (english, german) in enumerate(make_pairs(150)):
            yield index, {"de": german, "en": english}


def test_tfds_dataset_prepared_into_a_remote_data_dir(remote, tmp_path, tfds_reads_remote):
    spec = "tfds:xling_zoo_remote_test_translate"
    remote_splits = all_splits(spec, "de-en", remote)
    assert remote_splits == all_splits(spec, "de-en", tmp_path)
    assert sum(map(len, remote_splits.values())) == 150 and remote_splits["test"]
    assert tf.io.gfile.exists(f"{remote}/tfds/xling_zoo_remote_test_translate/1.0.0/dataset_info.json")


def test_a_url_collapsed_by_pathlib_is_refused(tmp_path, monkeypatch, trained):
    """pathlib.Path("gs://bucket/run") is gs:/bucket/run, which would be a local directory "gs:"."""
    monkeypatch.chdir(tmp_path)
    collapsed = str(pathlib.Path("gs://bucket/run") / "tokenizer")
    for call in (lambda: trained["joint"].save(collapsed), lambda: tok.Tokenizers.load(collapsed),
                 lambda: corpus.load_split("tsv:x.tsv", "en-de", "train", data_dir=pathlib.Path("gs://bucket/data"))):
        with pytest.raises(UserError, match="gs:/bucket/.* looks like a URL that lost a '/'"):
            call()
    assert not (tmp_path / "gs:").exists()


def test_data_dir_urls_are_kept_as_given(monkeypatch):
    assert corpus._data_dir("gs://bucket/run/data/") == "gs://bucket/run/data"  # Not made absolute.
    monkeypatch.setenv(corpus.DATA_DIR_ENV, "gs://bucket/data")
    assert corpus._data_dir(None) == "gs://bucket/data"
    assert builtin.wheels_cache_dir("gs://bucket/data").is_absolute()  # pip needs a local disk.
    with pytest.raises(UserError, match="cannot store datasets at ram:// paths; use a local directory or a gs://"):
        corpus.load_split("tsv:x.tsv", "en-de", "train", data_dir="ram://data")  # Without tfds_reads_remote.
