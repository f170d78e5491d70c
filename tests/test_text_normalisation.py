"""One whitespace rule (``pipeline.normalize_whitespace``) for training, decoding and the export:
Python's ``str.split`` set, run in-graph, so that a non-breaking space, a tab or a thin space gives
the token ids a plain space gives, whatever the corpus reader kept.

One tiny run, trained on aligned text files (the reader only strips their ends) holding a sentence
written with odd whitespace next to the same sentence with plain spaces.
"""

import json
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.conftest import make_pairs, shrink
from xling_zoo import config as config_lib
from xling_zoo import export, trainer
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus, hash_split, pipeline
from xling_zoo.decode import Translator

PLAIN = "The small user opens a picture, then closes it."
ODD = "\u00a0 The\tsmall\u2009user \u202fopens\u3000a\u00a0\u00a0picture,\u2028then\u205fcloses it. \t"
PLAIN_TARGET = "Der kleine Benutzer öffnet ein Bild, dann schließt er es."
ODD_TARGET = "  Der\u00a0kleine\t\tBenutzer\u2009öffnet\u202fein\u3000Bild,\u0085dann schließt er\u2000es.\u00a0"
# Tokenised raw, the byte pieces of its spaces take it past data.max_length (48); normalised, it fits.
WIDE = " \u00a0\u3000\u2009\u202f\u205f\u2002 ".join(PLAIN.split())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A few steps of the lstm on text: files whose training split holds ODD and PLAIN."""
    directory = tmp_path_factory.mktemp("odd_whitespace_corpus")
    pairs = make_pairs(1400, seed=3)
    splits = {"train": pairs[:1200] + [(PLAIN, PLAIN_TARGET), (ODD, ODD_TARGET)],
              "validation": pairs[1200:1300], "test": pairs[1300:]}
    for split, rows in splits.items():
        for side, language in enumerate(("en", "de")):
            (directory / f"{split}.{language}").write_text("".join(row[side] + "\n" for row in rows), encoding="utf-8")
    config = shrink(config_lib.load_config("lstm_seq2seq"), "text:" + ",".join(str(directory / s) for s in splits))
    for assignment in ["model.embedding_dim=16", "model.units=16", "train.steps=3", "train.eval_every_steps=3"]:
        config_lib.apply_override(config, assignment)
    workdir = tmp_path_factory.mktemp("runs") / "lstm"
    trainer.train_and_evaluate(config, workdir)
    return workdir_lib.load_run(workdir)


def test_the_in_graph_rule_is_pythons_on_every_code_point():
    characters = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]  # UTF-8 has no surrogates.
    texts = [f" a{c}{c}b{c}" for c in characters]
    normalised = [t.decode("utf-8") for t in pipeline.normalize_whitespace(tf.constant(texts)).numpy()]
    differ = [hex(ord(c)) for c, text, got in zip(characters, texts, normalised)
              if got != hash_split.normalize_whitespace(text)]
    assert differ == []
    # Whitespace is exactly what str.isspace says (the characters str.split splits on).
    collapsed = {c for c, got in zip(characters, normalised) if got == "a b"}
    assert collapsed == {c for c in characters if c.isspace()}
    assert {"\t", "\x1f", "\x85", "\xa0", "\u2009", "\u202f", "\u3000"} <= collapsed
    assert not {"\u200b", "\u180e", "\ufeff"} & collapsed  # Zero-width: not whitespace to Python.


def test_the_training_pipeline_gives_odd_whitespace_the_plain_ids(run):
    stored = {ODD.strip(), PLAIN}
    examples = corpus.load_split(run.config.corpus, "en-de", "train").filter(
        lambda e: tf.reduce_any(tf.equal(e["source"], tf.constant(sorted(stored)))))
    # The reader kept the inner odd whitespace: the pipeline is what normalises it.
    assert {e["source"].decode("utf-8") for e in examples.as_numpy_iterator()} == stored
    batches = list(pipeline.make_dataset(examples, run.tokenizers, run.config.data, target_language="de",
                                         source_languages=("en",), training=False).as_numpy_iterator())
    assert len(batches) == 1 and len(batches[0]["encoder_token_ids"]) == 2
    for key, rows in batches[0].items():
        assert rows[0].tolist() == rows[1].tolist(), key
    # The tokenizer alone does not ignore such whitespace.
    raw = run.tokenizers.source.tokenize(tf.constant([ODD, PLAIN])).to_list()
    assert raw[0] != raw[1]
    # Decoding and the export encode the source as training did.
    encoded = pipeline.encode_source(tf.constant([ODD, PLAIN]), run.tokenizers, run.config.data, "de").to_list()
    trained = [i for i in batches[0]["encoder_token_ids"][0].tolist() if i]
    assert encoded == [trained, trained]


def test_the_export_translates_odd_whitespace_as_plain_spaces(run, tmp_path):
    version_dir = export.export_run(run.workdir, tmp_path / "serving", check_sentences=2)
    translator = Translator(run.model, run.tokenizers, run.config)
    expected = [t.decode("utf-8") for t in translator.translate(tf.constant([ODD, PLAIN, WIDE])).numpy()]
    assert expected[0] == expected[1] == expected[2]
    assert translator.overlength([ODD, PLAIN, WIDE]) == []
    assert max(run.tokenizers.source.tokenize(tf.constant([WIDE])).row_lengths()) > run.config.data.max_length
    # TF Serving's session-based loader, in a process that imports only tensorflow and tensorflow_text.
    client = pathlib.Path(export.__file__).parent / "tools" / "session_client.py"
    sentences = [ODD, PLAIN, WIDE, "\u00a0\u3000\t\u2009"]
    result = subprocess.run([sys.executable, str(client), f"--dir={version_dir}"], input=json.dumps(sentences),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {"translations": expected + [""], "status": ["ok", "ok", "ok", "empty"]}
