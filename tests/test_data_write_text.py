"""python -m xling_zoo.data --write_text=DIR: aligned plain-text splits, and what it refuses."""

import pathlib
import subprocess
import sys
import uuid

import pytest
import tensorflow as tf

from tests.conftest import make_pairs, run_cli_commands, write_tsv
from xling_zoo.data import corpus, text_export
from xling_zoo.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation", "test")


def lines(path):
    with tf.io.gfile.GFile(str(path), "rb") as stream:
        data = stream.read().decode("utf-8")
    assert data == "" or data.endswith("\n")
    return data.split("\n")[:-1]


def files_under(directory):
    return sorted(str(path.relative_to(directory)) for path in pathlib.Path(directory).rglob("*"))


def three_languages(directory, count=300):
    """text:PREFIX files PREFIX.en / .de / .nl, aligned (the same English lines on both sides)."""
    german, dutch = make_pairs(count, seed=3, column=0), make_pairs(count, seed=3, column=1)
    assert [english for english, _ in german] == [english for english, _ in dutch]
    prefix = directory / "corpus"
    for language, texts in (("en", [e for e, _ in german]), ("de", [g for _, g in german]),
                            ("nl", [n for _, n in dutch])):
        pathlib.Path(f"{prefix}.{language}").write_text("".join(f"{text}\n" for text in texts), encoding="utf-8")
    return f"text:{prefix}"


def test_cli_writes_the_splits_a_run_reads_and_they_read_back(tiny_tsv, tmp_path):
    out = tmp_path / "new" / "en-de"  # Two missing levels: made.
    result = subprocess.run([sys.executable, "-m", "xling_zoo.data", f"--corpus={tiny_tsv}", "--pair=en-de",
                             f"--write_text={out}", "--max_train_examples=300"], cwd=REPO, capture_output=True,
                            text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {split: corpus.read_split(tiny_tsv, "en-de", split, max_train_examples=300) for split in SPLITS}
    assert [len(expected[split]) for split in SPLITS] == [300, 100, 100]
    assert result.stdout.splitlines() == [f"wrote {out}/{split}.{language} ({len(expected[split])} lines)"
                                          for split in SPLITS for language in ("en", "de")]
    assert files_under(out) == sorted(f"{split}.{language}" for split in SPLITS for language in ("en", "de"))
    for split in SPLITS:
        assert lines(out / f"{split}.en") == [example["source"] for example in expected[split]]
        assert lines(out / f"{split}.de") == [example["target"] for example in expected[split]]
    # The files are a text: corpus giving back the same examples, in the same order.
    written = f"text:{out}/train,{out}/validation,{out}/test"
    for split in SPLITS:
        assert corpus.read_split(written, "en-de", split) == expected[split]


def test_cli_refusals_write_nothing(tiny_tsv, tmp_path):
    existing, replaced = tmp_path / "existing", tmp_path / "replaced"
    for directory in (existing, replaced):
        directory.mkdir()
        (directory / "test.de").write_text("kept\n", encoding="utf-8")
    a_file = tmp_path / "a_file"
    a_file.write_text("kept\n", encoding="utf-8")
    pairs = make_pairs(60, seed=1)
    carriage_return = write_tsv(tmp_path / "test_cr.tsv", pairs[:7] + [("A red\rwindow.", "Ein rotes Fenster.")]
                                + pairs[7:10])
    train, validation = write_tsv(tmp_path / "train.tsv", pairs[10:50]), write_tsv(tmp_path / "v.tsv", pairs[50:])
    fresh = tmp_path / "fresh" / "out"
    corpus_flag = f"--corpus={tiny_tsv}"
    commands = [
        ([corpus_flag, f"--write_text={existing}", "--splits=test"], ""),
        ([corpus_flag, f"--write_text={a_file}"], ""),
        ([corpus_flag, f"--write_text={a_file}/below"], ""),
        ([f"--corpus=tsv:{train},{validation},{carriage_return}", f"--write_text={fresh}"], ""),
        ([corpus_flag, "--pair=en-de,nl", f"--write_text={fresh}"], ""),
        ([corpus_flag, f"--write_text={fresh}", "--splits=test,tests"], ""),
        ([corpus_flag, "--splits=test"], ""),
        ([corpus_flag, "--list", f"--write_text={fresh}"], ""),
        ([corpus_flag, f"--write_text={replaced}", "--splits=test", "--overwrite"], ""),
    ]
    results = run_cli_commands("data", commands, tmp_path / "results.json")
    *refused, overwritten = results
    assert [result.returncode for result in refused] == [2] * len(refused), [r.stderr[-500:] for r in refused]
    errors = [result.stderr.strip().splitlines()[-1] for result in refused]
    assert errors[0] == (f"error: {existing}/test.de already exists; pass --overwrite to replace them, or choose "
                         f"another --write_text directory")
    assert errors[1] == f"error: --write_text={a_file}: {a_file} is a file, not a directory"
    assert errors[2] == f"error: --write_text={a_file}/below: {a_file} is a file, not a directory"
    assert errors[3].startswith(f"error: test split, line 8 of {fresh}/test.en: the sentence holds a carriage "
                                f"return (\\r, U+000D), which would break it over two lines")
    assert "'A red\\rwindow.'" in errors[3] and "nothing was written" in errors[3]
    assert "has several target languages, but a tsv: corpus holds one" in errors[4]
    assert errors[5] == "error: --splits=test,tests: give one or more of train, validation, test, each once"
    assert errors[6] == "error: --splits only apply with --write_text=DIR"
    assert errors[7] == "error: --list and --write_text do different things; pass one of them"
    assert all(result.stdout == "" for result in refused)
    assert files_under(tmp_path) == sorted(["a_file", "existing", "existing/test.de", "replaced", "replaced/test.de",
                                            "replaced/test.en", "results.json", "test_cr.tsv", "train.tsv", "v.tsv"])
    assert lines(existing / "test.de") == lines(a_file) == ["kept"]
    # --overwrite replaced test.de, and wrote test.en.
    assert overwritten.returncode == 0, overwritten.stderr[-2000:]
    expected = corpus.read_split(tiny_tsv, "en-de", "test")
    assert lines(replaced / "test.de") == [example["target"] for example in expected]
    assert lines(replaced / "test.en") == [example["source"] for example in expected]


@pytest.mark.parametrize("pair, directions", [("en-de,nl", [("en", "de"), ("en", "nl")]),
                                              ("de,nl-en", [("de", "en"), ("nl", "en")])])
def test_several_directions_one_file_pair_each_on_a_gfile_filesystem(tmp_path, pair, directions):
    text_corpus = three_languages(tmp_path)
    out = f"ram://write_text/{uuid.uuid4().hex[:8]}"  # TensorFlow's in-memory filesystem: tf.io.gfile only.
    written = text_export.write_text(text_corpus, pair, out, max_train_examples=101)
    names = [f"{split}.{source}-{target}.{language}" for split in SPLITS for source, target in directions
             for language in (source, target)]
    assert [path for path, _ in written] == [f"{out}/{name}" for name in names]
    assert sorted(tf.io.gfile.listdir(out)) == sorted(names)
    for split in SPLITS:
        examples = corpus.read_split(text_corpus, pair, split, max_train_examples=101)
        if split == "train":
            assert len(examples) == 101
        for source, target in directions:
            direction = [example for example in examples if example["source_language"] == source
                         and example.get("target_language", target) == target]
            assert direction, (split, source, target)
            prefix = f"{out}/{split}.{source}-{target}"
            assert lines(f"{prefix}.{source}") == [example["source"] for example in direction]
            assert lines(f"{prefix}.{target}") == [example["target"] for example in direction]
            assert dict(written)[f"{prefix}.{source}"] == len(direction)


def fake_split(rows):
    return tf.data.Dataset.from_tensor_slices({"source": [s for s, _ in rows], "target": [t for _, t in rows],
                                               "source_language": ["en"] * len(rows)})


def test_a_line_feed_in_a_later_split_leaves_nothing(monkeypatch, tmp_path):
    """tsv: and text: files cannot hold a line feed inside a sentence, a TFDS dataset can."""
    good = [("One.", "Eins."), ("Two.", "Zwei.")]
    splits = {"train": good * 3, "validation": good, "test": good + [("Three.", "Drei\nund vier.")]}
    monkeypatch.setattr(corpus, "load_split", lambda spec, pair, split, **kwargs: fake_split(splits[split]))
    with pytest.raises(UserError, match=r"^test split, line 3 of .*/out/test.de: the sentence holds a line feed "
                                        r"\(\\n, U\+000A\), which would break it .*'Drei\\nund vier.'"):
        text_export.write_text("tfds:made/up", "en-de", tmp_path / "out")
    assert files_under(tmp_path) == []


def test_an_interrupted_run_leaves_no_file(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus, "load_split", lambda spec, pair, split, **kwargs: fake_split([("A.", "B.")] * 50))
    original_add, calls = text_export._LineWriter.add, []

    def add_then_interrupt(writer, sentence):
        calls.append(sentence)
        if len(calls) == 150:  # Inside the validation split: train's files are complete.
            raise KeyboardInterrupt
        original_add(writer, sentence)

    monkeypatch.setattr(text_export._LineWriter, "add", add_then_interrupt)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "other").write_text("kept\n", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        text_export.write_text("tfds:made/up", "en-de", tmp_path / "out")
    assert files_under(tmp_path) == ["out", "out/other"]
