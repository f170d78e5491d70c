"""Corpus specs and pairs: tsv, aligned text and TFDS sources, the hash split, bad input."""

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from xling_zoo.data import corpus, hash_split
from xling_zoo.errors import UserError

WORDS = ["red", "green", "blue", "old", "new", "small", "big", "open", "closed", "empty"]
GERMAN = ["rot", "grün", "blau", "alt", "neu", "klein", "groß", "offen", "zu", "leer"]
DUTCH = ["rood", "groen", "blauw", "oud", "nieuw", "klein", "groot", "open", "dicht", "leeg"]


def sentences(count):
    """{language: [sentence]}: count aligned made-up sentences in en, de and nl."""
    rows = {"en": [], "de": [], "nl": []}
    for number in range(count):
        a, b = number % 10, number // 10 % 10
        rows["en"].append(f"The {WORDS[a]} box {number} is {WORDS[b]}")
        rows["de"].append(f"Die {GERMAN[a]} Kiste {number} ist {GERMAN[b]}")
        rows["nl"].append(f"De {DUTCH[a]} doos {number} is {DUTCH[b]}")
    return rows


def write_text(prefix, count=300, languages=("en", "de", "nl")):
    rows = sentences(count)
    for language in languages:
        prefix.with_name(f"{prefix.name}.{language}").write_text("\n".join(rows[language]) + "\n", encoding="utf-8")
    return prefix


def write_tsv(path, count=300, target="de", start=0, english_first=True):
    rows = sentences(start + count)
    columns = (rows["en"][start:], rows[target][start:])
    lines = zip(*columns) if english_first else zip(*reversed(columns))
    path.write_text("".join(f"{a}\t{b}\n" for a, b in lines), encoding="utf-8")
    return path


# --- Pairs and specs --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, sources, target", [
    ("en-de", ("en",), "de"), ("nl-en", ("nl",), "en"), ("de,fr,es-en", ("de", "fr", "es"), "en"),
    ("en-pt_br", ("en",), "pt_br"), (" EN-De ", ("en",), "de"),
])
def test_pair_parse_round_trips(text, sources, target):
    pair = corpus.Pair.parse(text)
    assert (pair.source_languages, pair.target_language) == (sources, target)
    assert pair.is_multi_source == (len(sources) > 1)
    assert corpus.Pair.parse(str(pair)) == pair


@pytest.mark.parametrize("text, message", [
    ("ende", "not of the form SRC-TGT"), ("en-de-nl", "not of the form SRC-TGT"), ("en-en", "into itself"),
    ("de,de-en", "repeats"), ("en-", "'' is not a language code"), ("en-d3!", "is not a language code"),
])
def test_bad_pairs_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        corpus.Pair.parse(text)


@pytest.mark.parametrize("spec, message", [
    ("wmt:foo", r"unknown corpus 'wmt:foo' \(scheme 'wmt'\); valid forms: builtin, tfds:NAME/CONFIG"),
    ("bultin", "unknown corpus 'bultin'"),
    ("tsv:", "names no file"),
    ("tsv:a,b", "one location or three"),
])
def test_bad_specs_list_the_valid_forms(spec, message, tmp_path):
    with pytest.raises(UserError, match=message):
        corpus.load_split(spec, "en-de", "train", data_dir=tmp_path)


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(corpus.DATA_DIR_ENV, str(tmp_path))
    assert corpus.default_data_dir() == str(tmp_path)
    monkeypatch.delenv(corpus.DATA_DIR_ENV)
    assert corpus.default_data_dir().endswith("/.cache/xling_zoo")


# --- Local files ----------------------------------------------------------------------------------

def test_tsv_is_split_by_the_hash_of_the_english_side(tmp_path):
    german = write_tsv(tmp_path / "en-de.tsv", target="de")
    dutch = write_tsv(tmp_path / "nl-en.tsv", target="nl", english_first=False)
    splits = {split: corpus.read_split(f"tsv:{german}", "en-de", split, data_dir=tmp_path) for split in corpus.SPLITS}
    assert sum(len(rows) for rows in splits.values()) == 300
    assert splits["validation"] and splits["test"]
    for split, rows in splits.items():
        assert all(hash_split.split_of(row["source"]) == split for row in rows)
        assert {row["source_language"] for row in rows} == {"en"}
    # Reversed direction (nl-en): still hashed on the English side, so the same sentences are held out.
    dutch_test = corpus.read_split(f"tsv:{dutch}", "nl-en", "test", data_dir=tmp_path)
    assert [row["target"] for row in dutch_test] == [row["source"] for row in splits["test"]]
    # Validation and test keep the file's order; train is in hash order.
    lines = german.read_text().splitlines()
    assert [lines.index(f"{r['source']}\t{r['target']}") for r in splits["test"]] == sorted(
        lines.index(f"{r['source']}\t{r['target']}") for r in splits["test"])
    digests = [hash_split.key_digest(row["source"]) for row in splits["train"]]
    assert digests == sorted(digests)


def test_tsv_with_one_file_per_split(tmp_path):
    files = [write_tsv(tmp_path / f"{name}.tsv", count=count, start=start)
             for name, count, start in (("train", 50, 0), ("valid", 7, 50), ("test", 5, 57))]
    spec = "tsv:" + ",".join(str(path) for path in files)
    summary = corpus.summarize(spec, "en-de", data_dir=tmp_path)
    assert summary["splits"] == {"train": 50, "validation": 7, "test": 5}
    assert summary["sources"]["files"] == sorted(str(path) for path in files)
    assert summary["skipped_lines"] == 0 and set(summary["checksums"]) == set(corpus.SPLITS)
    test = corpus.read_split(spec, "en-de", "test", data_dir=tmp_path)
    assert [row["source"] for row in test] == sentences(62)["en"][57:]  # File order.


def test_load_split_gives_string_scalars(tmp_path):
    dataset = corpus.load_split(f"tsv:{write_tsv(tmp_path / 'a.tsv')}", "en-de", "train", data_dir=tmp_path)
    assert dataset.element_spec == {key: tf.TensorSpec([], tf.string)
                                    for key in ("source", "target", "source_language")}


def test_max_train_examples_nests(tmp_path):
    spec = f"tsv:{write_tsv(tmp_path / 'a.tsv')}"
    subsets = [corpus.read_split(spec, "en-de", "train", data_dir=tmp_path, max_train_examples=n)
               for n in (10, 20, 0)]
    assert len(subsets[0]) == 10 and subsets[1][:10] == subsets[0] and subsets[2][:20] == subsets[1]


def test_edited_file_is_prepared_again(tmp_path):
    path = write_tsv(tmp_path / "a.tsv", count=100)
    assert corpus.summarize(f"tsv:{path}", "en-de", data_dir=tmp_path)["splits"]["train"] < 100
    write_tsv(path, count=200)
    assert sum(corpus.summarize(f"tsv:{path}", "en-de", data_dir=tmp_path)["splits"].values()) == 200


def test_aligned_text_both_directions_and_multi_source(tmp_path):
    prefix = write_text(tmp_path / "corpus")
    spec = f"text:{prefix}"
    forward = corpus.read_split(spec, "en-de", "train", data_dir=tmp_path)
    backward = corpus.read_split(spec, "de-en", "train", data_dir=tmp_path)
    assert [(r["target"], r["source"]) for r in backward] == [(r["source"], r["target"]) for r in forward]
    multi = corpus.read_split(spec, "de,nl-en", "test", data_dir=tmp_path)
    german = corpus.read_split(spec, "de-en", "test", data_dir=tmp_path)
    assert [r["source_language"] for r in multi] == ["de", "nl"] * len(german)
    assert [r["target"] for r in multi[::2]] == [r["target"] for r in multi[1::2]]  # Same English, aligned.
    assert {row["pair"] for row in corpus.list_pairs(spec, data_dir=tmp_path)} == {"de-en", "de-nl", "en-nl"}


def test_aligned_text_with_one_prefix_per_split(tmp_path):
    prefixes = [write_text(tmp_path / name, count=count, languages=("en", "nl")) for name, count in
                (("train", 40), ("dev", 6), ("test", 4))]
    summary = corpus.summarize("text:" + ",".join(map(str, prefixes)), "en-nl", data_dir=tmp_path)
    assert summary["splits"] == {"train": 40, "validation": 6, "test": 4}


# --- TFDS -----------------------------------------------------------------------------------------

class XlingZooTestTranslate(tfds.core.GeneratorBasedBuilder):
    """A tiny TFDS translation dataset: "full" has all splits, "train_only" just train."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="full"), tfds.core.BuilderConfig(name="train_only")]

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.Translation(languages=("de", "en")))

    def _split_generators(self, dl_manager):
        rows = sentences(200)
        pairs = list(zip(rows["de"], rows["en"]))
        if self.builder_config.name == "train_only":
            return {"train": self._generate_examples(pairs)}
        return {"train": self._generate_examples(pairs[:150]), "validation": self._generate_examples(pairs[150:180]),
                "test": self._generate_examples(pairs[180:])}

    def _generate_examples(self, pairs):
        for index, (de, en) in enumerate(pairs):
            yield index, {"de": de, "en": en}


@pytest.fixture(scope="module")
def tfds_data_dir(tmp_path_factory):
    """A data dir whose tfds/ holds the tiny dataset, prepared as `tfds build` would."""
    data_dir = tmp_path_factory.mktemp("tfds_data")
    for config in ("full", "train_only"):
        tfds.builder(f"xling_zoo_test_translate/{config}", data_dir=data_dir / "tfds").download_and_prepare()
    return data_dir


def test_tfds_dataset_with_its_own_splits(tfds_data_dir):
    spec = "tfds:xling_zoo_test_translate/full"
    summary = corpus.summarize(spec, "en-de", data_dir=tfds_data_dir)
    assert summary["splits"] == {"train": 150, "validation": 30, "test": 20}
    assert summary["sources"]["tfds"] == "xling_zoo_test_translate/full"
    test = corpus.read_split(spec, "de-en", "test", data_dir=tfds_data_dir)
    assert {r["source_language"] for r in test} == {"de"} and all(" Kiste " in r["source"] for r in test)
    assert corpus.list_pairs(spec, data_dir=tfds_data_dir) == [
        {"pair": "de-en", "train": 150, "validation": 30, "test": 20}]


def test_tfds_dataset_without_held_out_splits_is_split_by_hash(tfds_data_dir):
    spec = "tfds:xling_zoo_test_translate/train_only"
    splits = {s: corpus.read_split(spec, "de-en", s, data_dir=tfds_data_dir) for s in corpus.SPLITS}
    assert sum(map(len, splits.values())) == 200 and splits["test"]
    for split, rows in splits.items():
        assert all(hash_split.split_of(row["target"]) == split for row in rows)  # Keyed on English.
    summary = corpus.summarize(spec, "de-en", data_dir=tfds_data_dir)
    assert summary["splits"] == {s: len(rows) for s, rows in splits.items()}
    assert summary["sources"]["splits_carved_from_train"] == ["validation", "test"]


def test_skip_bad_lines_is_accepted_by_every_corpus_kind(tfds_data_dir, tmp_path):
    """train/transfer pass config.skip_bad_lines whatever the corpus; only files have lines to skip."""
    spec = "tfds:xling_zoo_test_translate/full"
    assert corpus.read_split(spec, "de-en", "test", data_dir=tfds_data_dir, skip_bad_lines=True) == \
        corpus.read_split(spec, "de-en", "test", data_dir=tfds_data_dir)
    dataset = corpus.load_split(spec, "de-en", "test", data_dir=tfds_data_dir, skip_bad_lines=True)
    assert len(list(dataset)) == 20
    path = write_tsv(tmp_path / "a.tsv", count=50)
    assert len(corpus.read_split(f"tsv:{path}", "en-de", "train", data_dir=tmp_path, skip_bad_lines=True)) == \
        len(corpus.read_split(f"tsv:{path}", "en-de", "train", data_dir=tmp_path))


@pytest.mark.parametrize("spec, pair, message", [
    ("tfds:xling_zoo_test_translate/full", "en-fr", "has no language 'fr'; its languages: de, en"),
    ("tfds:xling_zoo_test_translate/nope", "en-de", "tfds:xling_zoo_test_translate/nope"),
    ("tfds:no_such_dataset_xyz", "en-de", "tfds:no_such_dataset_xyz"),
])
def test_tfds_mistakes(tfds_data_dir, spec, pair, message):
    with pytest.raises(UserError, match=message):
        corpus.load_split(spec, pair, "train", data_dir=tfds_data_dir)


# --- Bad input ------------------------------------------------------------------------------------

GOOD = b"Hello\tHallo\n"


@pytest.mark.parametrize("content, message", [  # Each after 40 good lines.
    (GOOD + b"only one column\n" + GOOD, r"bad\.tsv:42: has 1 tab-separated columns, expected 2"),
    (GOOD + GOOD + b"a\tb\tc\n", r"bad\.tsv:43: has 3 tab-separated columns"),
    (GOOD + b"Gr\xfc\xdfe\tGr\xc3\xbc\xc3\x9fe\n", r"bad\.tsv:42: not valid UTF-8"),
    (b"\tHallo\n" + GOOD, r"bad\.tsv:41: the source side is empty"),
    (GOOD + b"Hello\t  \n", r"bad\.tsv:42: the target side is empty"),
])
def test_bad_tsv_lines_name_file_and_line_or_are_skipped(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(GOOD * 40 + content)
    with pytest.raises(UserError, match=message) as error:
        corpus.load_split(f"tsv:{path}", "en-de", "train", data_dir=tmp_path)
    assert "--skip_bad_lines" in str(error.value)
    summary = corpus.summarize(f"tsv:{path}", "en-de", data_dir=tmp_path, skip_bad_lines=True)
    assert summary["skipped_lines"] == 1
    assert sum(summary["splits"].values()) == 40 + content.count(b"\n") - 1


def test_aligned_files_of_different_lengths(tmp_path):
    prefix = write_text(tmp_path / "corpus", count=20, languages=("en", "de"))
    (tmp_path / "corpus.de").write_text("\n".join(sentences(19)["de"]) + "\n")
    with pytest.raises(UserError, match=r"corpus\.en has 20 lines, .*corpus\.de has 19"):
        corpus.load_split(f"text:{prefix}", "en-de", "train", data_dir=tmp_path, skip_bad_lines=True)


def test_aligned_files_with_an_empty_line(tmp_path):
    prefix = write_text(tmp_path / "corpus", count=20, languages=("en", "de"))
    lines = (tmp_path / "corpus.de").read_text().splitlines()
    lines[4] = ""
    (tmp_path / "corpus.de").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"corpus\.en:5 / .*corpus\.de:5: the target side is empty"):
        corpus.load_split(f"text:{prefix}", "en-de", "train", data_dir=tmp_path)
    assert corpus.summarize(f"text:{prefix}", "en-de", data_dir=tmp_path, skip_bad_lines=True)["skipped_lines"] == 1


def test_missing_files(tmp_path):
    with pytest.raises(UserError, match=r"file .*nowhere\.tsv does not exist"):
        corpus.load_split(f"tsv:{tmp_path / 'nowhere.tsv'}", "en-de", "train", data_dir=tmp_path)
    write_text(tmp_path / "corpus", count=20, languages=("en", "de"))
    with pytest.raises(UserError, match=r"file .*corpus\.fr does not exist"):
        corpus.load_split(f"text:{tmp_path / 'corpus'}", "en-fr", "train", data_dir=tmp_path)


def test_a_directory_given_as_a_file(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match=r"folder is a directory, expected a file"):
        corpus.load_split(f"tsv:{tmp_path / 'folder'}", "en-de", "train", data_dir=tmp_path)
    (tmp_path / "corpus.en").write_text("Hello\n")
    (tmp_path / "corpus.de").mkdir()
    with pytest.raises(UserError, match=r"corpus\.de is a directory, expected a file"):
        corpus.load_split(f"text:{tmp_path / 'corpus'}", "en-de", "train", data_dir=tmp_path)


def test_tsv_multi_source_and_list_are_explained(tmp_path):
    spec = f"tsv:{write_tsv(tmp_path / 'a.tsv', count=20)}"
    with pytest.raises(UserError, match="one language pair.*text:PREFIX"):
        corpus.load_split(spec, "de,nl-en", "train", data_dir=tmp_path)
    with pytest.raises(UserError, match="does not name its languages"):
        corpus.list_pairs(spec, data_dir=tmp_path)
    with pytest.raises(UserError, match="unknown split 'dev'; splits: train, validation, test"):
        corpus.load_split(spec, "en-de", "dev", data_dir=tmp_path)
