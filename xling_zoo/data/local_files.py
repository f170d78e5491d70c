"""Corpora in the user's own files, prepared as TFDS datasets like every other corpus.

  tsv:PATH                      one file of ``source<TAB>target`` lines, split by the hash rule
  tsv:TRAIN,VALIDATION,TEST     one file per split
  text:PREFIX                   aligned files PREFIX.<src> and PREFIX.<tgt>, split by the hash rule
  text:TRAIN,VALIDATION,TEST    one prefix per split

The prepared dataset is named after a sha256 of the files' contents, so editing a file prepares it
again instead of reading a stale copy. Training pairs are stored in hash order (nested
``max_train_examples`` subsamples); validation and test keep the order of the files.

Files may be on any filesystem tf.io.gfile reaches (a local disk, gs://, TensorFlow's in-memory
ram://). The file helpers below (reading, writing aside then renaming, preparing a TFDS builder
into a data dir that may be a bucket) serve the other data modules too.
"""

import contextlib
import dataclasses
import hashlib
import os
import re
import tempfile
import uuid

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from xling_zoo.data import hash_split
from xling_zoo.errors import UserError

KINDS = ("tsv", "text")

# ---------------------------------------------------------------------------------------------
# Files anywhere tf.io.gfile reaches

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_COLLAPSED_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/[^/]")  # gs:/bucket; not a drive letter (C:/x).


def is_url(path):
    """True for gs://bucket/dir, ram://dir: paths to take as given, never made absolute."""
    return bool(_URL.match(os.fspath(path)))


def fspath(path):
    """``path`` (str or os.PathLike) as a str; a UserError for gs:/bucket, a URL that went through
    pathlib (which collapses "//"), as it would silently become a local directory named "gs:"."""
    path = os.fspath(path)
    if _COLLAPSED_URL.match(path):
        raise UserError(f"{path} looks like a URL that lost a '/' of its '//' (pathlib.Path does that): "
                        f"keep URLs such as gs://bucket/dir as strings")
    return path


@contextlib.contextmanager
def _naming_errors(path):
    """Storage errors (permission denied, no such bucket) as one line naming ``path``."""
    try:
        yield
    except tf.errors.NotFoundError:
        raise UserError(f"file {path} does not exist") from None
    except tf.errors.OpError as error:
        raise UserError(f"cannot read {path}: {error.message}") from None


def check_file(path):
    """A UserError naming ``path`` unless it is an existing file."""
    with _naming_errors(path):
        if tf.io.gfile.isdir(path):
            raise UserError(f"{path} is a directory, expected a file")
        if not tf.io.gfile.exists(path):
            raise UserError(f"file {path} does not exist")


def read_bytes(path):
    """The contents of a file; a one-line UserError naming it when it cannot be read."""
    path = fspath(path)
    check_file(path)
    with _naming_errors(path), tf.io.gfile.GFile(path, "rb") as stream:
        return stream.read()


def _put_atomically(path, write):
    """``write(aside)`` writes to a temporary name next to ``path``, then it is renamed onto ``path``:
    a reader, or a run that crashes midway, never finds a half-written file there."""
    path = fspath(path)
    aside = f"{path}.incomplete-{uuid.uuid4().hex[:12]}"
    try:
        write(aside)
        tf.io.gfile.rename(aside, path, overwrite=True)
    except BaseException:
        with contextlib.suppress(tf.errors.OpError):
            tf.io.gfile.remove(aside)
        raise


def write_atomically(path, data):
    """Writes ``data`` (bytes or str) to ``path``, aside first (see ``_put_atomically``)."""

    def write(aside):
        with tf.io.gfile.GFile(aside, "wb") as stream:
            stream.write(data)

    _put_atomically(path, write)


def _copy_atomically(source, path):
    _put_atomically(path, lambda aside: tf.io.gfile.copy(source, aside, overwrite=True))


# TFDS takes a dataset directory as prepared once these exist; copied last, in this order.
_PREPARED_MARKERS = ("features.json", "dataset_info.json")


def prepared_builder(make_builder, tfds_dir, download_config):
    """``make_builder(tfds_dir)``, prepared (TFDS ``download_and_prepare``) unless it already is.

    TFDS prepares into an incomplete directory and renames it: atomic on a local disk, but a bucket
    renames object by object (a crash midway can leave a directory TFDS takes as prepared) and
    TensorFlow's ram:// renames a directory without its files. So under a URL the dataset is
    prepared in a local temporary directory, then copied in file by file, each written aside and
    renamed, the files that mark it prepared last.
    """
    builder = make_builder(tfds_dir)
    if builder.is_prepared():
        return builder
    if not is_url(tfds_dir):
        try:
            builder.download_and_prepare(download_config=download_config)
        except FileExistsError:
            # Another process preparing the same dataset (two jobs started on a fresh data dir) renamed
            # its finished copy into place first: that copy is the same dataset.
            builder = make_builder(tfds_dir)
            if not builder.is_prepared():
                raise
        return builder
    with tempfile.TemporaryDirectory(prefix="xling_zoo_tfds-") as staging_dir:
        staged = make_builder(staging_dir)
        staged.download_and_prepare(download_config=download_config)
        source_dir, target_dir = os.fspath(staged.data_path), os.fspath(builder.data_path)
        files = [os.path.relpath(os.path.join(root, name), source_dir)
                 for root, _, names in os.walk(source_dir) for name in names]
        files.sort(key=lambda name: _PREPARED_MARKERS.index(name) + 1 if name in _PREPARED_MARKERS else 0)
        for name in files:
            tf.io.gfile.makedirs(os.path.dirname(os.path.join(target_dir, name)))
            _copy_atomically(os.path.join(source_dir, name), os.path.join(target_dir, name))
    return make_builder(tfds_dir)  # Reads the copied dataset_info.json (split sizes, metadata).


# ---------------------------------------------------------------------------------------------
# tsv and aligned text files


@dataclasses.dataclass(eq=False)
class LocalFilesConfig(tfds.core.BuilderConfig):
    """Which files make which split. ``roles`` holds ("all", path) or one (split, path) per split."""

    kind: str = "tsv"
    roles: tuple = ()
    source_language: str = ""
    target_language: str = ""
    skip_bad_lines: bool = False


def _lines(path):
    """(line number, bytes) of a file, without line ends; a missing final newline is fine."""
    lines = read_bytes(path).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]  # UTF-8 byte order mark.
    return [(number, line.rstrip(b"\r")) for number, line in enumerate(lines, start=1)]


def _decode(line, where):
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _BadLine(f"{where}: not valid UTF-8 (byte {error.start + 1} of the line)") from None


class _BadLine(Exception):
    """A line problem: an error, or with skip_bad_lines a skipped line."""


class _LineChecker:
    """Raises a UserError for the first bad line, or counts and skips bad lines."""

    def __init__(self, skip_bad_lines):
        self.skip_bad_lines = skip_bad_lines
        self.skipped = 0
        self.first_problem = ""

    def check(self, make_row):
        try:
            return make_row()
        except _BadLine as problem:
            if not self.skip_bad_lines:
                raise UserError(f"{problem}. Fix the line, or pass --skip_bad_lines to skip such lines") from None
            self.skipped += 1
            self.first_problem = self.first_problem or str(problem)
            return None


def _tsv_row(number, line, path):
    where = f"{path}:{number}"
    text = _decode(line, where)
    columns = text.split("\t")
    if len(columns) != 2:
        raise _BadLine(f"{where}: has {len(columns)} tab-separated columns, expected 2 (source<TAB>target)")
    return _row(columns[0], columns[1], where)


def _row(source, target, where):
    source, target = source.strip(), target.strip()
    if not source:
        raise _BadLine(f"{where}: the source side is empty")
    if not target:
        raise _BadLine(f"{where}: the target side is empty")
    return source, target


def read_tsv(path, checker):
    rows = (checker.check(lambda: _tsv_row(number, line, path)) for number, line in _lines(path))
    return [row for row in rows if row]


def read_aligned(source_path, target_path, checker):
    source_lines, target_lines = _lines(source_path), _lines(target_path)
    if len(source_lines) != len(target_lines):
        raise UserError(f"aligned files differ in length: {source_path} has {len(source_lines)} lines, "
                        f"{target_path} has {len(target_lines)}")

    def make_row(number, source_line, target_line):
        return _row(_decode(source_line, f"{source_path}:{number}"),
                    _decode(target_line, f"{target_path}:{number}"),
                    f"{source_path}:{number} / {target_path}:{number}")

    rows = (checker.check(lambda: make_row(number, source_line, target_line))
            for (number, source_line), (_, target_line) in zip(source_lines, target_lines))
    return [row for row in rows if row]


def _files_of_role(config, location):
    if config.kind == "tsv":
        return (location,)
    return (f"{location}.{config.source_language}", f"{location}.{config.target_language}")


def read_rows(config, location, checker):
    if config.kind == "tsv":
        return read_tsv(location, checker)
    return read_aligned(*_files_of_role(config, location), checker)


def read_splits(config):
    """({split: [(source, target)]}, the line checker holding the skipped count); UserError on bad input."""
    checker = _LineChecker(config.skip_bad_lines)
    roles = dict(config.roles)
    key_side = 0 if hash_split.key_language(config.source_language, config.target_language) \
        == config.source_language else 1
    if "all" in roles:
        splits = hash_split.split_rows(read_rows(config, roles["all"], checker), lambda row: row[key_side],
                                       sort_held_out=False)
    else:
        splits = {name: read_rows(config, roles[name], checker) for name in hash_split.SPLITS}
        splits["train"] = hash_split.sort_by_key(splits["train"], lambda row: row[key_side])
    return splits, checker


class XlingZooLocalFiles(tfds.core.GeneratorBasedBuilder):
    """A corpus from tsv or aligned text files (see ``LocalFilesConfig``)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        config = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{config.kind} files: {dict(config.roles)}",
            features=tfds.features.Translation(languages=(config.source_language, config.target_language)),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Reads the user's files, downloads nothing.
        config = self.builder_config
        splits, checker = read_splits(config)
        self.info.metadata["files"] = {role: list(_files_of_role(config, location)) for role, location in config.roles}
        self.info.metadata["checksums"] = {name: hash_split.checksum(rows) for name, rows in splits.items()}
        self.info.metadata["sizes"] = {name: len(rows) for name, rows in splits.items()}
        self.info.metadata["skipped_lines"] = checker.skipped
        self.info.metadata["first_skipped_line"] = checker.first_problem
        return {name: self._generate_examples(rows) for name, rows in splits.items() if rows}

    def _generate_examples(self, rows):
        languages = (self.builder_config.source_language, self.builder_config.target_language)
        for index, row in enumerate(rows):
            yield index, dict(zip(languages, row))


def make_config(kind, locations, source_language, target_language, skip_bad_lines):
    """The config for files at ``locations`` (one, or train/validation/test), named by their content."""
    if len(locations) == 1:
        roles = (("all", locations[0]),)
    elif len(locations) == 3:
        roles = tuple(zip(hash_split.SPLITS, locations))
    else:
        raise UserError(f"{kind}: takes one location or three (train,validation,test), got {len(locations)}: "
                        f"{','.join(locations)}")
    config = LocalFilesConfig(name="pending", kind=kind, roles=roles, source_language=source_language,
                              target_language=target_language, skip_bad_lines=skip_bad_lines)
    digest = hashlib.sha256(repr((kind, source_language, target_language, skip_bad_lines)).encode())
    for role, location in roles:
        for path in _files_of_role(config, location):
            digest.update(role.encode() + b"\0")
            digest.update(_file_sha256(path).encode())
    config.name = f"{kind}-{source_language}-{target_language}-{digest.hexdigest()[:16]}"
    return config


def _file_sha256(path):
    check_file(path)
    with _naming_errors(path):
        return hash_split.file_sha256(path)


def prepare(kind, locations, source_language, target_language, tfds_dir, skip_bad_lines=False):
    """The prepared builder for one language pair of the user's files."""
    config = make_config(kind, locations, source_language, target_language, skip_bad_lines)
    builder = prepared_builder(lambda data_dir: XlingZooLocalFiles(config=config, data_dir=data_dir), tfds_dir,
                               tfds.download.DownloadConfig(try_download_gcs=False))
    skipped = builder.info.metadata.get("skipped_lines", 0)
    if skipped:
        logging.warning("skipped %d bad lines in %s files (first: %s)", skipped, kind,
                        builder.info.metadata.get("first_skipped_line", ""))
    return builder
