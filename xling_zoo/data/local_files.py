"""Corpora in the user's own files, prepared as TFDS datasets like every other corpus.

  tsv:PATH                      one file of ``source<TAB>target`` lines, split by the hash rule
  tsv:TRAIN,VALIDATION,TEST     one file per split
  text:PREFIX                   aligned files PREFIX.<src> and PREFIX.<tgt>, split by the hash rule
  text:TRAIN,VALIDATION,TEST    one prefix per split

The prepared dataset is named after a sha256 of the files' contents, so editing a file prepares it
again instead of reading a stale copy. Training pairs are stored in hash order (nested
``max_train_examples`` subsamples); validation and test keep the order of the files.
"""

import dataclasses
import hashlib
import os
import pathlib

import tensorflow_datasets as tfds
from absl import logging

from xling_zoo.data import hash_split
from xling_zoo.errors import UserError

KINDS = ("tsv", "text")


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
    try:
        data = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, expected a file") from None
    lines = data.split(b"\n")
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
        del dl_manager  # Reads local files only.
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
    if not os.path.isfile(path):
        raise UserError(f"file {path} does not exist" if not os.path.exists(path)
                        else f"{path} is not a regular file")
    return hash_split.file_sha256(path)


def prepare(kind, locations, source_language, target_language, tfds_dir, skip_bad_lines=False):
    """The prepared builder for one language pair of local files."""
    config = make_config(kind, locations, source_language, target_language, skip_bad_lines)
    builder = XlingZooLocalFiles(config=config, data_dir=tfds_dir)
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    skipped = builder.info.metadata.get("skipped_lines", 0)
    if skipped:
        logging.warning("skipped %d bad lines in %s files (first: %s)", skipped, kind,
                        builder.info.metadata.get("first_skipped_line", ""))
    return builder
