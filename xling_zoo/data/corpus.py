"""Corpus specs, language pairs and splits; every corpus is read through a prepared TFDS builder.

A corpus spec names where sentence pairs come from (the ``--corpus`` flag, ``config.corpus``):

  builtin                      the built-in multiway corpus (builtin.py), fetched and prepared on first use
  tfds:NAME/CONFIG             a TFDS translation dataset in <data_dir>/tfds, e.g. tfds:wmt14_translate/de-en
  tsv:PATH | tsv:TRAIN,VALIDATION,TEST        source<TAB>target lines
  text:PREFIX | text:TRAIN,VALIDATION,TEST    aligned PREFIX.<src> / PREFIX.<tgt> files

Each (source language, target language) part becomes a TFDS builder whose features are keyed by
language code; ``builder.as_dataset(split)`` is then mapped to the common example format
``{"source", "target", "source_language"}`` (tf.string scalars). A multi-source pair (de,fr-en)
interleaves its parts round-robin. Missing validation/test splits of a TFDS dataset are carved out
of train by the hash rule of ``hash_split``, which also splits the built-in and local corpora.

The data dir and the corpus files may be local or in a bucket (gs://...): every access goes through
tf.io.gfile, or TFDS's etils.epath, which reaches gs:// through tf.io.gfile too.
"""

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from xling_zoo.data import builtin, hash_split, local_files
from xling_zoo.errors import UserError

SPLITS = hash_split.SPLITS
DATA_DIR_ENV = "XLING_ZOO_DATA_DIR"
SPEC_FORMS = ("builtin", "tfds:NAME/CONFIG", "tsv:PATH", "tsv:TRAIN,VALIDATION,TEST", "text:PREFIX",
              "text:TRAIN,VALIDATION,TEST")
# Language codes: de, pt_br, zh_hans, de_informal. No "-": it separates the two sides of a pair.
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:_[a-z0-9]+)*")


@dataclasses.dataclass(frozen=True)
class Pair:
    """A translation direction: one or more source languages into one target language, or one source
    language into several targets (a multi-target run, ``en-de,nl,fr``: the target-language tag on
    each source tells the model which language to write)."""

    source_languages: tuple[str, ...]
    target_languages: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "source_languages", tuple(self.source_languages))
        object.__setattr__(self, "target_languages", tuple(self.target_languages))
        for language in self.source_languages + self.target_languages:
            if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
                raise UserError(f"{language!r} is not a language code (lowercase letters, like de, "
                                f"pt_br or zh_hans)")
        if not self.source_languages:
            raise UserError("a pair needs at least one source language")
        if not self.target_languages:
            raise UserError("a pair needs at least one target language")
        for side, languages in (("source", self.source_languages), ("target", self.target_languages)):
            if len(set(languages)) != len(languages):
                raise UserError(f"pair {self} repeats a {side} language")
        if self.is_multi_source and self.is_multi_target:
            raise UserError(f"pair {self} has several sources and several targets; one side must be a single "
                            "language (de,fr,es-en or en-de,nl,fr)")
        into_itself = [lang for lang in self.target_languages if lang in self.source_languages]
        if into_itself:
            raise UserError(f"pair {self} translates {into_itself[0]} into itself")

    @classmethod
    def parse(cls, text):
        """'en-de', 'nl-en', 'de,fr,es-en' (several sources into one target) or 'en-de,nl,fr' (one
        source into several targets)."""
        if not isinstance(text, str) or text.count("-") != 1:
            raise UserError(f"pair {text!r} is not of the form SRC-TGT, e.g. en-de, nl-en, de,fr,es-en or en-de,nl,fr")
        sources, targets = text.strip().lower().split("-")
        return cls(tuple(s.strip() for s in sources.split(",")), tuple(t.strip() for t in targets.split(",")))

    @property
    def target_language(self):
        """The one target language; a multi-target pair has none, and says which to choose."""
        if self.is_multi_target:
            raise UserError(f"pair {self} translates into several languages ({', '.join(self.target_languages)}): "
                            f"name one, e.g. --pair={','.join(self.source_languages)}-{self.target_languages[0]}")
        return self.target_languages[0]

    @property
    def is_multi_source(self):
        return len(self.source_languages) > 1

    @property
    def is_multi_target(self):
        return len(self.target_languages) > 1

    def single_target_pairs(self):
        """One pair per target language."""
        return [Pair(self.source_languages, (target,)) for target in self.target_languages]

    def __str__(self):
        return f"{','.join(self.source_languages)}-{','.join(self.target_languages)}"


def default_data_dir():
    """$XLING_ZOO_DATA_DIR, or ~/.cache/xling_zoo."""
    return os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "xling_zoo")


def _data_dir(data_dir):
    """An absolute local path, or a URL (gs://bucket/dir) as given."""
    data_dir = local_files.fspath(data_dir or default_data_dir())
    if not local_files.is_url(data_dir):
        return os.path.abspath(os.path.expanduser(data_dir))
    try:
        epath.Path(data_dir)  # TFDS stores the prepared corpora through etils.epath.
    except (KeyError, NotImplementedError):
        raise UserError(f"data_dir {data_dir}: TFDS (etils.epath) cannot store datasets at "
                        f"{data_dir.split('://')[0]}:// paths; use a local directory or a gs:// bucket") from None
    return data_dir.rstrip("/")


def _as_pair(pair):
    return pair if isinstance(pair, Pair) else Pair.parse(pair)


def _check_split(split):
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    scheme: str  # builtin | tfds | tsv | text
    locations: tuple[str, ...] = ()  # the TFDS name, or 1 or 3 file paths / prefixes

    @classmethod
    def parse(cls, text):
        text = (text or "").strip()
        if text == "builtin":
            return cls("builtin")
        scheme, colon, rest = text.partition(":")
        if scheme == "tfds" and rest:
            return cls("tfds", (rest,))
        if scheme in local_files.KINDS and rest:
            locations = tuple(location.strip() for location in rest.split(","))
            if len(locations) not in (1, 3) or not all(locations):
                raise UserError(f"corpus {text!r}: {scheme}: takes one location or three "
                                f"(train,validation,test), comma-separated")
            return cls(scheme, locations)
        if scheme in ("tfds",) + local_files.KINDS:
            raise UserError(f"corpus {text!r} names no {'dataset' if scheme == 'tfds' else 'file'}; "
                            f"valid forms: {', '.join(SPEC_FORMS)}")
        raise UserError(f"unknown corpus {text!r}" + (f" (scheme {scheme!r})" if colon else "")
                        + f"; valid forms: {', '.join(SPEC_FORMS)}")


@dataclasses.dataclass(frozen=True)
class _Part:
    """One source language -> target language dataset inside a prepared TFDS builder."""

    builder: tfds.core.DatasetBuilder
    source_language: str
    target_language: str
    split_names: dict  # our split -> the builder's split (absent: empty, or carved out of train)
    carved_splits: tuple = ()  # splits taken out of the builder's train by the hash rule

    @property
    def dataset_name(self):
        return f"{self.builder.name}/{self.builder.builder_config.name}:{self.builder.version}" \
            if self.builder.builder_config else f"{self.builder.name}:{self.builder.version}"


def _builtin_parts(pair, data_dir, wheels_dir):
    parts = []
    for source in pair.source_languages:
        builder = builtin.prepare(source, pair.target_language, data_dir, wheels_dir)
        parts.append(_Part(builder, source, pair.target_language, _native_split_names(builder)))
    return parts


def _native_split_names(builder):
    return {name: name for name in SPLITS if name in builder.info.splits}


def _local_parts(spec, pair, data_dir, skip_bad_lines):
    if spec.scheme == "tsv" and pair.is_multi_source:
        raise UserError(f"a tsv file holds one language pair, not {pair}; for several source languages "
                        f"use aligned files: text:PREFIX with PREFIX.<lang> for each language")
    parts = []
    for source in pair.source_languages:
        builder = local_files.prepare(spec.scheme, spec.locations, source, pair.target_language,
                                      os.path.join(data_dir, "tfds"), skip_bad_lines)
        parts.append(_Part(builder, source, pair.target_language, _native_split_names(builder)))
    return parts


def _tfds_builder(name, tfds_dir):
    try:
        builder = tfds.builder(name, data_dir=tfds_dir, try_gcs=False)
    except ValueError as error:  # Unknown dataset or config (DatasetNotFoundError is a ValueError).
        raise UserError(f"corpus tfds:{name}: {str(error).splitlines()[0]}") from None
    if not builder.is_prepared():
        try:
            builder = local_files.prepared_builder(
                lambda data_dir: tfds.builder(name, data_dir=data_dir, try_gcs=False), tfds_dir,
                tfds.download.DownloadConfig(try_download_gcs=False))
        except Exception as error:  # Any failure here is the network or the TFDS dataset, not us.
            raise UserError(
                f"TFDS dataset {name} is not prepared in {tfds_dir} and preparing it failed "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). Prepare it "
                f"where there is network access (tfds build {name} --data_dir={tfds_dir}) and copy "
                f"that directory here") from error
    return builder


def _text_features(builder):
    """The text features of a TFDS dataset: for a translation dataset, its language codes."""
    features = builder.info.features
    if not isinstance(features, tfds.features.FeaturesDict):
        return []
    return [key for key, feature in features.items() if isinstance(feature, tfds.features.Text)]


def _tfds_parts(spec, pair, data_dir):
    name = spec.locations[0]
    builder = _tfds_builder(name, os.path.join(data_dir, "tfds"))
    languages = sorted(_text_features(builder))
    for language in pair.source_languages + (pair.target_language,):
        if language not in languages:
            raise UserError(f"tfds:{name} has no language {language!r}; its languages: "
                            f"{', '.join(languages) or 'none (not a translation dataset)'}")
    available = set(builder.info.splits)
    if "train" not in available:
        raise UserError(f"tfds:{name} has no train split; its splits: {', '.join(sorted(available))}")
    split_names = {"train": "train"}
    for name_here, candidates in (("validation", ("validation", "dev")), ("test", ("test",))):
        found = next((candidate for candidate in candidates if candidate in available), None)
        if found:
            split_names[name_here] = found
    carved = tuple(split for split in SPLITS if split not in split_names)
    return [_Part(builder, source, pair.target_language, split_names, carved) for source in pair.source_languages]


def _check_multi_target(corpus, pair):
    if CorpusSpec.parse(corpus).scheme == "tsv":
        raise UserError(f"pair {pair} has several target languages, but a tsv: corpus holds one; use builtin, "
                        "tfds: or text:PREFIX (PREFIX.<lang> files)")


def _parts(corpus, pair, data_dir, skip_bad_lines, wheels_dir):
    if pair.is_multi_target:
        _check_multi_target(corpus, pair)
        return [part for single in pair.single_target_pairs()
                for part in _parts(corpus, single, data_dir, skip_bad_lines, wheels_dir)]
    spec = CorpusSpec.parse(corpus)
    if spec.scheme == "builtin":
        return _builtin_parts(pair, data_dir, wheels_dir)
    if spec.scheme == "tfds":
        return _tfds_parts(spec, pair, data_dir)
    return _local_parts(spec, pair, data_dir, skip_bad_lines)


def empty_examples():
    """A split with no examples, of the keys every corpus gives."""
    empty = tf.constant([], tf.string)
    return tf.data.Dataset.from_tensor_slices({"source": empty, "target": empty, "source_language": empty})


def _in_split(split, key_language):
    """A tf.data predicate: is the example's key text (see hash_split) in ``split``?"""

    def check(text):
        return np.bool_(hash_split.split_of(text.decode("utf-8")) == split)

    def predicate(example):
        result = tf.numpy_function(check, [example[key_language]], tf.bool, stateful=False)
        return tf.ensure_shape(result, [])

    return predicate


def _part_dataset(part, split, autocache=True):
    if split in part.carved_splits or (split == "train" and part.carved_splits):
        source_split, keep = "train", _in_split(split, hash_split.key_language(part.source_language,
                                                                              part.target_language))
    elif split in part.split_names:
        source_split, keep = part.split_names[split], None
    else:
        return empty_examples()
    # One file at a time: the stored order (hash order for train) is kept across shards.
    # autocache=False where only the start of the split is read (max_train_examples): TFDS would cache
    # a small split in memory, discard the half-filled cache at every pass and warn each time.
    dataset = part.builder.as_dataset(split=source_split, shuffle_files=False,
                                      read_config=tfds.ReadConfig(interleave_cycle_length=1, try_autocache=autocache))
    if keep is not None:
        dataset = dataset.filter(keep)
    source, target, language = part.source_language, part.target_language, tf.constant(part.source_language)
    return dataset.map(lambda example: {"source": example[source], "target": example[target],
                                        "source_language": language})


def _interleave(datasets):
    """Round-robin over the datasets, skipping those that ran out: deterministic."""
    if len(datasets) == 1:
        return datasets[0]
    order = tf.data.Dataset.range(len(datasets)).repeat()
    return tf.data.Dataset.choose_from_datasets(datasets, order, stop_on_empty_dataset=False)


def _check_max_train_examples(max_train_examples):
    if not isinstance(max_train_examples, int) or max_train_examples < 0:
        raise UserError(f"max_train_examples must be a whole number >= 0 (0 = all), got {max_train_examples!r}")


def load_split(corpus, pair, split, *, data_dir=None, max_train_examples=0, skip_bad_lines=False,
               wheels_dir=None, read_whole=True):
    """A split as a tf.data.Dataset of {"source", "target", "source_language"} tf.string scalars, and
    "target_language" for a multi-target pair (its targets' splits interleaved round-robin).

    The order is deterministic; for train it is the hash order, so ``max_train_examples=N`` keeps a
    fixed subsample and the first 1k are inside the first 2k. Prepares the corpus on first use.
    ``skip_bad_lines`` skips (and counts) malformed lines of tsv: and text: files instead of failing
    on the first; the other corpora have no lines to skip and ignore it. ``read_whole=False`` says
    each pass reads only part of the split (a mixed-in pair): TFDS then does not cache it in memory,
    a cache it would drop, with a warning, at every pass.
    """
    pair = _as_pair(pair)
    _check_split(split)
    _check_max_train_examples(max_train_examples)
    whole = read_whole and not (split == "train" and max_train_examples)
    dataset = _pair_dataset(corpus, pair, split, data_dir, skip_bad_lines, wheels_dir, autocache=whole)
    if split == "train" and max_train_examples:
        dataset = dataset.take(max_train_examples)
    return dataset


def _pair_dataset(corpus, pair, split, data_dir, skip_bad_lines, wheels_dir, autocache):
    if pair.is_multi_target:
        _check_multi_target(corpus, pair)
        # Round-robin over the targets, each example carrying its target language (for its tag).
        return _interleave([
            _pair_dataset(corpus, single, split, data_dir, skip_bad_lines, wheels_dir, autocache)
            .map(lambda example, language=single.target_language: {**example, "target_language": tf.constant(language)})
            for single in pair.single_target_pairs()])
    parts = _parts(corpus, pair, _data_dir(data_dir), skip_bad_lines, wheels_dir)
    return _interleave([_part_dataset(part, split, autocache=autocache) for part in parts])


def read_split(corpus, pair, split, *, data_dir=None, max_train_examples=0, skip_bad_lines=False,
               wheels_dir=None):
    """The same examples as ``load_split``, as a list of dicts of Python strings."""
    dataset = load_split(corpus, pair, split, data_dir=data_dir, max_train_examples=max_train_examples,
                         skip_bad_lines=skip_bad_lines, wheels_dir=wheels_dir)
    return [{key: value.decode("utf-8") for key, value in example.items()} for example in dataset.as_numpy_iterator()]


def _split_size(part, split):
    if split in part.carved_splits or (split == "train" and part.carved_splits):
        return int(_part_dataset(part, split).reduce(np.int64(0), lambda count, _: count + 1))
    if split not in part.split_names:
        return 0
    return part.builder.info.splits[part.split_names[split]].num_examples


def _checksums(parts):
    sums = [part.builder.info.metadata.get("checksums") if part.builder.info.metadata else None
            for part in parts]
    if not all(sums):
        return None
    if len(sums) == 1:
        return dict(sums[0])
    # Several parts (multi-source): one checksum over the parts' checksums, in order.
    return {split: hashlib.sha256("\n".join(s[split] for s in sums).encode()).hexdigest() for split in SPLITS}


def _sources(spec, parts):
    sources = {"datasets": [part.dataset_name for part in parts]}
    if spec.scheme == "builtin":
        sources["corpus_version"] = builtin.CORPUS_VERSION
        sources["packages"] = {wheel.name: wheel.version for wheel in builtin.PACKAGES}
    elif spec.scheme == "tfds":
        sources["tfds"] = spec.locations[0]
        if parts[0].carved_splits:
            sources["splits_carved_from_train"] = list(parts[0].carved_splits)
    else:
        sources["files"] = sorted({path for part in parts
                                   for paths in part.builder.info.metadata["files"].values() for path in paths})
    return sources


def summarize(corpus, pair, *, data_dir=None, max_train_examples=0, skip_bad_lines=False, wheels_dir=None):
    """What a corpus and pair hold: split sizes, sources (package versions, files, TFDS name), checksums."""
    pair = _as_pair(pair)
    _check_max_train_examples(max_train_examples)
    data_dir = _data_dir(data_dir)
    spec = CorpusSpec.parse(corpus)
    parts = _parts(corpus, pair, data_dir, skip_bad_lines, wheels_dir)
    sizes = {split: sum(_split_size(part, split) for part in parts) for split in SPLITS}
    if max_train_examples:
        sizes["train"] = min(sizes["train"], max_train_examples)
    summary = {
        "corpus": corpus,
        "pair": str(pair),
        "source_languages": list(pair.source_languages),
        "target_language": None if pair.is_multi_target else pair.target_language,
        "target_languages": list(pair.target_languages),
        "splits": sizes,
        "max_train_examples": max_train_examples,
        "data_dir": data_dir,
        "sources": _sources(spec, parts),
    }
    checksums = _checksums(parts)
    if checksums:
        summary["checksums"] = checksums
    if spec.scheme in local_files.KINDS:
        summary["skipped_lines"] = sum(part.builder.info.metadata.get("skipped_lines", 0) for part in parts)
    return summary


def _count_lines(path):
    data = local_files.read_bytes(path)
    return data.count(b"\n") + (not data.endswith(b"\n") and bool(data))


def _text_languages(prefix):
    """The languages of the aligned files PREFIX.<lang> (local or in a bucket)."""
    directory, stem = os.path.split(prefix)
    try:
        names = tf.io.gfile.listdir(directory or ".")
    except tf.errors.NotFoundError:
        return set()
    return {name[len(stem) + 1:] for name in names
            if name.startswith(stem + ".") and _LANGUAGE.fullmatch(name[len(stem) + 1:])}


def list_pairs(corpus, *, data_dir=None, wheels_dir=None):
    """The pairs a corpus offers, with sizes. Either direction of a listed pair works too."""
    data_dir = _data_dir(data_dir)
    spec = CorpusSpec.parse(corpus)
    if spec.scheme == "builtin":
        languages = builtin.read_catalog_summary(data_dir, wheels_dir)["languages"]
        return [{"pair": f"en-{language}", **{split: sizes[split] for split in SPLITS}}
                for language, sizes in sorted(languages.items())]
    if spec.scheme == "tfds":
        builder = _tfds_builder(spec.locations[0], os.path.join(data_dir, "tfds"))
        languages = _text_features(builder)
        sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
        return [{"pair": f"{a}-{b}", **sizes} for i, a in enumerate(languages) for b in languages[i + 1:]]
    if spec.scheme == "tsv":
        raise UserError("a tsv file does not name its languages, so there is nothing to list; "
                        "pass --pair=SRC-TGT (without --list) to see its splits")
    prefixes = spec.locations
    languages = sorted(set.intersection(*(_text_languages(prefix) for prefix in prefixes)))
    if len(languages) < 2:
        raise UserError(f"found no aligned files {prefixes[0]}.<lang> for two or more languages")
    lines = {language: sum(_count_lines(f"{prefix}.{language}") for prefix in prefixes) for language in languages}
    return [{"pair": f"{a}-{b}", "lines": lines[a]} for i, a in enumerate(languages) for b in languages[i + 1:]
            if lines[a] == lines[b]]
