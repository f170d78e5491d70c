"""Shared fixtures: a small made-up parallel corpus written by the tests, and real configs shrunk."""

import json
import os
import random
import subprocess
import sys
import textwrap

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory):
    """Tests prepare their corpora in a temporary data dir, never in the user's ~/.cache/xling_zoo
    (set XLING_ZOO_DATA_DIR yourself to reuse a prepared cache)."""
    if "XLING_ZOO_DATA_DIR" not in os.environ:
        os.environ["XLING_ZOO_DATA_DIR"] = str(tmp_path_factory.mktemp("xling_zoo_data"))
    yield

# A tiny learnable "English -> German/Dutch" grammar: enough structure for a model to beat copying.
LEXICON = {
    "the": ("der", "de"), "a": ("ein", "een"), "red": ("rote", "rode"), "big": ("große", "grote"),
    "small": ("kleine", "kleine"), "green": ("grüne", "groene"), "old": ("alte", "oude"),
    "house": ("Haus", "huis"), "file": ("Datei", "bestand"), "window": ("Fenster", "venster"),
    "user": ("Benutzer", "gebruiker"), "folder": ("Ordner", "map"), "picture": ("Bild", "afbeelding"),
    "opens": ("öffnet", "opent"), "saves": ("speichert", "bewaart"), "deletes": ("löscht", "verwijdert"),
    "shows": ("zeigt", "toont"), "closes": ("schließt", "sluit"), "copies": ("kopiert", "kopieert"),
}
SUBJECTS = ["user", "window", "folder"]
OBJECTS = ["file", "picture", "house", "folder", "window"]
ADJECTIVES = ["red", "big", "small", "green", "old"]
VERBS = ["opens", "saves", "deletes", "shows", "closes", "copies"]


def make_pairs(n, seed=0, column=0):
    """n distinct (english, translation) pairs; column 0 = German-like, 1 = Dutch-like."""
    rng = random.Random(seed)
    pairs = {}
    while len(pairs) < n:
        words = ["the", rng.choice(ADJECTIVES), rng.choice(SUBJECTS), rng.choice(VERBS),
                 rng.choice(["the", "a"]), rng.choice(ADJECTIVES), rng.choice(OBJECTS)]
        if rng.random() < 0.5:
            words = words[:1] + words[2:]
        english = " ".join(words)
        target = " ".join(LEXICON[w][column] for w in words)
        pairs[english.capitalize() + "."] = target[0].upper() + target[1:] + "."
    return sorted(pairs.items())


def write_tsv(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_tsv(tmp_path_factory):
    """A tsv:TRAIN,VALIDATION,TEST corpus spec of the made-up grammar (en-de)."""
    directory = tmp_path_factory.mktemp("tiny_corpus")
    pairs = make_pairs(1400, seed=0)
    train = write_tsv(directory / "train.tsv", pairs[:1200])
    validation = write_tsv(directory / "validation.tsv", pairs[1200:1300])
    test = write_tsv(directory / "test.tsv", pairs[1300:])
    return f"tsv:{train},{validation},{test}"


@pytest.fixture(scope="session")
def prepared_tiny_tsv(tiny_tsv):
    """tiny_tsv, its en-de corpus already prepared in the session's data dir, as a run would prepare
    it on first use: for tests that start several training commands on it at once."""
    from xling_zoo.data import corpus

    corpus.load_split(tiny_tsv, "en-de", "train")
    return tiny_tsv


def write_aligned(directory, rows, languages):
    """text:TRAIN,VALIDATION,TEST prefixes of aligned files <split>.<language>, one column per language."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = {"train": rows[:1000], "validation": rows[1000:1100], "test": rows[1100:]}
    for split, part in splits.items():
        for column, language in enumerate(languages):
            (directory / f"{split}.{language}").write_text("".join(row[column] + "\n" for row in part), encoding="utf-8")
    return "text:" + ",".join(str(directory / split) for split in splits)


@pytest.fixture(scope="session")
def multiway(tmp_path_factory):
    """English, a German-like and a Dutch-like language, aligned; "af" is the Dutch-like column again
    under another code: the child language a multi-target parent never saw."""
    german, dutch = make_pairs(1200, seed=5, column=0), make_pairs(1200, seed=5, column=1)
    rows = [(en, de, nl, nl) for (en, de), (_, nl) in zip(german, dutch)]
    return write_aligned(tmp_path_factory.mktemp("multiway"), rows, ("en", "de", "nl", "af"))


def shrink(config, corpus):
    """The real config, made tiny: the smoke tests exercise the same code and fields."""
    from xling_zoo import config as config_lib

    for assignment in [
        f"corpus={corpus}", "tokenizer.vocab_size=330", "data.tokens_per_batch=1024",
        "data.max_length=48", "data.bucket_boundaries=(24, 48)", "train.steps=6", "train.warmup_steps=2",
        "train.eval_every_steps=3", "train.max_minutes=0.0", "eval.validation_bleu_examples=16",
        "eval.max_decode_length=48",
    ]:
        config_lib.apply_override(config, assignment)
    return config


@pytest.fixture
def tiny_config(tiny_tsv):
    """tiny_config("lstm_seq2seq") -> the real configs/lstm_seq2seq.py shrunk to seconds of training."""
    from xling_zoo import config as config_lib

    def make(model_name, **model_overrides):
        config = shrink(config_lib.load_config(model_name), tiny_tsv)
        sizes = {"lstm_seq2seq": ["model.embedding_dim=16", "model.units=16"]}.get(model_name, [])
        for assignment in sizes + [f"model.{k}={v}" for k, v in model_overrides.items()]:
            config_lib.apply_override(config, assignment)
        return config

    return make


def register_ram_with_tfds(monkeypatch):
    """TFDS keeps prepared datasets through etils.epath, which knows gs:// but not TensorFlow's
    in-memory ram://: register ram:// exactly where gs:// is (private tables; test scaffolding), so a
    data_dir on ram:// takes the gs:// route offline."""
    from etils.epath import backend, gpath, register

    monkeypatch.setattr(gpath, "_URI_PREFIXES", gpath._URI_PREFIXES + ("ram://",))
    monkeypatch.setattr(gpath, "_URI_SCHEMES", gpath._URI_SCHEMES | {"ram"})
    monkeypatch.setitem(gpath._URI_MAP_ROOT, "ram://", "/ram/")
    monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "ram", backend.tf_backend)
    monkeypatch.setitem(register._URI_PREFIXES_TO_CLS, "ram://", gpath.PosixGPath)


# Runs several command lines of one entry point in a single Python, each as `python -m` runs it
# (runpy, as __main__) with its own stdin, stdout, stderr (file descriptors: TensorFlow's C++ output
# too) and exit code. TensorFlow is imported once rather than once per command line.
CLI_DRIVER = textwrap.dedent("""
    import json, os, runpy, sys, tempfile, traceback
    from absl import flags
    module, commands, results_path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    saved = {fd: os.dup(fd) for fd in (0, 1, 2)}
    results = []
    for args, stdin in commands:
        sys.stdout.flush()
        sys.stderr.flush()
        flags.FLAGS.unparse_flags()
        sys.argv = [module, *args]
        files = {fd: tempfile.TemporaryFile() for fd in (0, 1, 2)}
        files[0].write(stdin.encode(sys.__stdin__.encoding))
        files[0].seek(0)
        for fd, f in files.items():
            os.dup2(f.fileno(), fd)
        sys.stdin = open(0, encoding=sys.__stdin__.encoding, closefd=False)
        code = 0
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (0, 1, 2):
            os.dup2(saved[fd], fd)
        output = {}
        for fd, name in ((1, "stdout"), (2, "stderr")):
            files[fd].seek(0)
            output[name] = files[fd].read().decode("utf-8", "replace")
        results.append({"returncode": code, **output})
    with open(results_path, "w") as f:
        json.dump(results, f)
""")


def run_cli_commands(module, commands, results_path):
    """[(args, stdin)] -> one CompletedProcess per command line, all run by one Python (CLI_DRIVER)."""
    done = subprocess.run([sys.executable, "-c", CLI_DRIVER, f"xling_zoo.{module}", json.dumps(commands),
                           str(results_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(results_path.read_text())
    return [subprocess.CompletedProcess(args, r["returncode"], r["stdout"], r["stderr"])
            for (args, _), r in zip(commands, results, strict=True)]
