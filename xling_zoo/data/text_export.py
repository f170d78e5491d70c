"""Writes a corpus's splits as aligned plain-text files, for other toolkits (OpenNMT-tf, fairseq,
Marian, CTranslate2, sacrebleu) and side-by-side comparisons; ``python -m xling_zoo.data
--write_text=DIR`` runs it (its docstring says what is written, and what is refused).
"""

import contextlib
import os
import uuid

import tensorflow as tf

from xling_zoo.data import corpus, local_files
from xling_zoo.errors import UserError

_BATCH = 4096  # Examples per step when streaming a split to text: one Python step per example is slow.
_FLUSH_BYTES = 1 << 20
_LINE_BREAKS = {b"\n": "a line feed (\\n, U+000A)", b"\r": "a carriage return (\\r, U+000D)"}


def write_text(corpus_spec, pair, directory, *, splits=corpus.SPLITS, data_dir=None, max_train_examples=0,
               skip_bad_lines=False, wheels_dir=None, overwrite=False):
    """Writes ``splits`` of ``pair`` as aligned plain-text files in ``directory`` (see the module
    docstring for the names and the refusals); returns [(path, lines)] in the order written."""
    pair = pair if isinstance(pair, corpus.Pair) else corpus.Pair.parse(pair)
    splits = _checked_splits(splits)
    directory = local_files.fspath(directory)
    if not local_files.is_url(directory):
        directory = os.path.abspath(os.path.expanduser(directory))
    files = {(split, direction): tuple(os.path.join(directory, name) for name in _file_names(pair, split, direction))
             for split in splits for direction in _directions(pair)}
    paths = [path for pair_paths in files.values() for path in pair_paths]
    missing_directories = _check_destination(directory, paths, overwrite)
    # Reading a corpus prepares it first: its errors (bad lines, unknown pair) come before any writing.
    datasets = {split: corpus.load_split(corpus_spec, pair, split, data_dir=data_dir,
                                         max_train_examples=max_train_examples, skip_bad_lines=skip_bad_lines,
                                         wheels_dir=wheels_dir) for split in splits}
    asides = {path: f"{path}.incomplete-{uuid.uuid4().hex[:12]}" for path in paths}
    try:
        with _storage_errors(directory):
            tf.io.gfile.makedirs(directory)
        counts = {}
        for split in splits:
            counts.update(_write_split(split, datasets[split], pair, files, asides))
        # Existing files were refused before writing (unless --overwrite); refusing here instead would
        # leave the files renamed before the refusal in place.
        with _storage_errors(directory):
            for path in paths:
                tf.io.gfile.rename(asides[path], path, overwrite=True)
    except BaseException:
        _remove_quietly(asides.values(), missing_directories)
        raise
    return [(path, counts[path]) for path in paths]


def _checked_splits(splits):
    splits = [split.strip() for split in ([splits] if isinstance(splits, str) else splits)]
    unknown = [split for split in splits if split not in corpus.SPLITS]
    if unknown or not splits or len(set(splits)) != len(splits):
        raise UserError(f"--splits={','.join(splits)}: give one or more of {', '.join(corpus.SPLITS)}, "
                        f"each once")
    return splits


def _directions(pair):
    """(source, target) of each file pair: one for a one-to-one pair, one per language of the many side."""
    return [(source, target) for source in pair.source_languages for target in pair.target_languages]


def _file_names(pair, split, direction):
    source, target = direction
    if pair.is_multi_source or pair.is_multi_target:
        return f"{split}.{source}-{target}.{source}", f"{split}.{source}-{target}.{target}"
    return f"{split}.{source}", f"{split}.{target}"


@contextlib.contextmanager
def _storage_errors(path):
    """Storage errors (permission denied, no such bucket, a file in the way) as one line naming ``path``."""
    try:
        yield
    except tf.errors.OpError as error:
        raise UserError(f"cannot write in {path}: {error.message}") from None


def _check_destination(directory, paths, overwrite):
    """UserError unless every file can be written; returns the directories that must be made, deepest
    first (removed again if the run fails)."""
    with _storage_errors(directory):
        missing, existing = [], directory
        while not tf.io.gfile.exists(existing):
            missing.append(existing)
            parent = os.path.dirname(existing.rstrip("/"))
            if parent in ("", existing) or local_files.is_url(parent) != local_files.is_url(existing):
                break  # The root, or above a bucket's name (gs://bucket -> "gs:"): nothing more to check.
            existing = parent
        else:
            if not tf.io.gfile.isdir(existing):
                raise UserError(f"--write_text={directory}: {existing} is a file, not a directory")
        in_the_way = [path for path in paths if tf.io.gfile.exists(path)]
    directories = [path for path in in_the_way if tf.io.gfile.isdir(path)]
    if directories:
        raise UserError(f"{directories[0]} is a directory; choose another --write_text directory")
    if in_the_way and not overwrite:
        which = f"{in_the_way[0]} and {len(in_the_way) - 1} more already exist" if len(in_the_way) > 1 \
            else f"{in_the_way[0]} already exists"
        raise UserError(f"{which}; pass --overwrite to replace them, or choose another --write_text directory")
    return missing


def _write_split(split, dataset, pair, files, asides):
    """Streams one split into the aside files of each direction; {path: lines}."""
    writers = {}
    try:
        for direction, (source_path, target_path) in ((d, p) for (s, d), p in files.items() if s == split):
            writers[direction] = (_LineWriter(source_path, asides[source_path], split),
                                  _LineWriter(target_path, asides[target_path], split))
        default_target = pair.target_languages[0]
        for batch in dataset.batch(_BATCH).as_numpy_iterator():
            targets = batch.get("target_language")
            for index, (source, target) in enumerate(zip(batch["source"], batch["target"])):
                language = default_target if targets is None else targets[index].decode()
                source_writer, target_writer = writers[(batch["source_language"][index].decode(), language)]
                source_writer.add(source)
                target_writer.add(target)
    finally:
        for writer in (writer for pair_writers in writers.values() for writer in pair_writers):
            writer.close()
    return {writer.path: writer.lines for pair_writers in writers.values() for writer in pair_writers}


class _LineWriter:
    """Sentences, one per line, into the file ``aside`` that will become ``path``; a sentence that
    would span two lines is a UserError naming ``path``, the split, the line and the character."""

    def __init__(self, path, aside, split):
        self.path, self.split, self.lines = path, split, 0
        self._buffer, self._size = [], 0
        with _storage_errors(path):
            self._stream = tf.io.gfile.GFile(aside, "wb")

    def add(self, sentence):
        self.lines += 1
        for character, name in _LINE_BREAKS.items():
            if character in sentence:
                text = sentence.decode("utf-8", "replace")
                raise UserError(f"{self.split} split, line {self.lines} of {self.path}: the sentence holds {name}, "
                                f"which would break it over two lines and misalign the files ({text[:80]!r}); "
                                f"nothing was written. Remove it from the corpus")
        self._buffer.append(sentence + b"\n")
        self._size += len(sentence) + 1
        if self._size >= _FLUSH_BYTES:
            self._flush()

    def _flush(self):
        with _storage_errors(self.path):
            self._stream.write(b"".join(self._buffer))
        self._buffer, self._size = [], 0

    def close(self):
        try:
            self._flush()
        finally:
            with _storage_errors(self.path):
                self._stream.close()


def _remove_quietly(asides, directories):
    """Removes what a failed run wrote: the aside files, then the directories it made if left empty."""
    for aside in asides:
        with contextlib.suppress(tf.errors.OpError):
            if tf.io.gfile.exists(aside):
                tf.io.gfile.remove(aside)
    for directory in directories:
        with contextlib.suppress(tf.errors.OpError):
            if tf.io.gfile.isdir(directory) and not tf.io.gfile.listdir(directory):
                tf.io.gfile.rmtree(directory)

