"""The CTranslate2 export: CTranslate2 runs our weights to our greedy translations and our scores.

One tiny Transformer is trained for the module, long enough that its translations are real ones
(test BLEU ~95 on the made-up grammar) rather than a few repeated words.
"""

import json
import os
import re

import ctranslate2
import keras
import numpy as np
import pytest
import sacrebleu
import sentencepiece
import tensorflow as tf

from tests.conftest import make_pairs, run_cli_commands, shrink
from xling_zoo import config as config_lib
from xling_zoo import ctranslate2_export, trainer
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus
from xling_zoo.data.pipeline import encode_source
from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, SubwordTokenizer, Tokenizers
from xling_zoo.decode import _forbid_special, greedy_search, normalize_whitespace
from xling_zoo.errors import UserError

# test_export's Transformer, 64 wide instead of 16: it learns the grammar in a few hundred steps (~30 s).
TRANSFORMER = ["model.num_encoder_layers=1", "model.num_decoder_layers=1", "model.hidden_dim=64",
               "model.num_heads=2", "model.intermediate_dim=128", "model.max_length=64"]


def train(corpus_spec, workdir, model_name, overrides):
    config = shrink(config_lib.load_config(model_name), corpus_spec)
    for assignment in overrides:
        config_lib.apply_override(config, assignment)
    trainer.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def transformer_run(tiny_tsv, tmp_path_factory):
    """400 steps: test BLEU ~95 (300 steps gave ~82, and int8 then changed 7 of the 100 test translations)."""
    return train(tiny_tsv, tmp_path_factory.mktemp("runs") / "transformer", "transformer", TRANSFORMER + [
        "train.steps=400", "train.eval_every_steps=400", "train.warmup_steps=30", "train.learning_rate=0.005"])


@pytest.fixture(scope="module")
def run(transformer_run):
    return workdir_lib.load_run(transformer_run)


@pytest.fixture(scope="module")
def test_sources(run):
    return [e["source"] for e in corpus.read_split(run.config.corpus, run.pair, "test")]


@pytest.fixture(scope="module")
def exports(transformer_run, tmp_path_factory):
    """{quantization: model folder}, written by the library function."""
    directory = tmp_path_factory.mktemp("ctranslate2")
    return {quantization: ctranslate2_export.export_run(transformer_run, directory / quantization, quantization,
                                                        check_sentences=4)
            for quantization in ("float32", "int8")}


def our_greedy_ids(run, sentences):
    """Our greedy search's token ids per sentence, up to its eos."""
    ids = encode_source(normalize_whitespace(tf.constant(sentences)), run.tokenizers, run.config.data,
                        run.pair.target_language).to_tensor(PAD_ID)
    output = tf.function(greedy_search)(run.model, ids, run.config.eval.max_decode_length).numpy()
    return [row[:list(row).index(EOS_ID)].tolist() if EOS_ID in row else row.tolist() for row in output]


def processor(tokenizer):
    return sentencepiece.SentencePieceProcessor(model_proto=tokenizer.model_proto)


def ctranslate2_ids(model_dir, sentences, tokenizers, **options):
    with open(os.path.join(model_dir, ctranslate2_export.METADATA_FILE), encoding="utf-8") as f:
        metadata = json.load(f)
    translator = ctranslate2.Translator(str(model_dir), intra_threads=1)
    results = translator.translate_batch(
        ctranslate2_export.source_tokens(sentences, processor(tokenizers.source), metadata),
        **{**metadata["translate_batch"], **options})
    return [[tokenizers.target.piece_to_id(token) for token in result.hypotheses[0]] for result in results]


def test_the_quantizations_are_ctranslate2s():
    from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES

    assert set(ctranslate2_export.QUANTIZATIONS) == set(ACCEPTED_MODEL_TYPES)


def test_greedy_translations_equal_ours(run, exports, test_sources):
    ours = our_greedy_ids(run, test_sources)
    theirs = ctranslate2_ids(exports["float32"], test_sources, run.tokenizers)
    # Real translations: none empty, nearly all different (the sources are).
    assert all(ours) and len({tuple(ids) for ids in ours}) > 0.9 * len(ours)
    assert theirs == ours
    # As text, the way the README calls it, too.
    texts = ctranslate2_export.translate(str(exports["float32"]), test_sources)
    assert texts == [processor(run.tokenizers.target).decode(ids) for ids in ours]


def test_int8_scores_within_half_a_bleu_point_of_float32(run, exports, test_sources):
    """BLEU against our float32 translations; measured 100.00 (float32) and 100.00 (int8, all 100 identical)."""
    ours = [processor(run.tokenizers.target).decode(ids) for ids in our_greedy_ids(run, test_sources)]
    bleu = {quantization: sacrebleu.corpus_bleu(ctranslate2_export.translate(str(path), test_sources), [ours]).score
            for quantization, path in exports.items()}
    assert bleu["float32"] - bleu["int8"] <= 0.5, bleu
    sizes = {q: os.path.getsize(os.path.join(path, "model.bin")) for q, path in exports.items()}
    assert sizes["int8"] < 0.5 * sizes["float32"], sizes  # int8 weights: a quarter of the bytes, plus scales.


def test_the_export_folder(run, exports):
    model_dir = exports["int8"]
    assert sorted(os.listdir(model_dir)) == ["config.json", "model.bin", "shared_vocabulary.json", "spm.model",
                                             ctranslate2_export.METADATA_FILE]
    with open(os.path.join(model_dir, "spm.model"), "rb") as f:
        assert f.read() == run.tokenizers.source.model_proto
    with open(os.path.join(model_dir, ctranslate2_export.METADATA_FILE), encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["quantization"] == "int8" and metadata["target_language"] == "de"
    assert metadata["source_prefix"] == ["<2de>"]
    assert metadata["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert metadata["checked_sentences"] == 4
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["add_source_eos"] and not config["add_source_bos"] and config["decoder_start_token"] == "<s>"


def random_weights(model, seed):
    """Every weight drawn at random (non-zero biases and norms too), so that each one is checked."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + rng.normal(0.0, 0.3, value.shape).astype(value.dtype))


@pytest.mark.parametrize("normalize_first, tie_embeddings, joint", [
    (False, False, False), (False, True, True), (True, False, True)])
def test_token_scores_equal_ours_in_every_architecture(tiny_config, tmp_path, normalize_first, tie_embeddings,
                                                       joint):
    """Post- and pre-LN, tied and untied, one or two vocabularies: CTranslate2's score of each target token
    is our decoder's log-probability (with <pad> and <s> forbidden, as our beam search scores them)."""
    pairs = make_pairs(300, seed=3)
    english, german = [s for s, _ in pairs], [t for _, t in pairs]
    tags = ["<2en>", "<2de>"]

    def tokenizer(sentences, vocab_size):
        return SubwordTokenizer.train(sentences, vocab_size=vocab_size, language_tags=tags, hard_vocab_limit=False)

    if joint:
        tokenizers = Tokenizers(tokenizer(english + german, 330))
    else:
        tokenizers = Tokenizers(tokenizer(english, 300), tokenizer(german, 320))
    config = tiny_config("transformer", num_encoder_layers=2, num_decoder_layers=2, hidden_dim=16, num_heads=2,
                         intermediate_dim=24, max_length=64, normalize_first=normalize_first,
                         tie_embeddings=tie_embeddings)
    config_lib.apply_override(config, f"tokenizer.joint={joint}")
    model = workdir_lib.build_model(config, tokenizers)
    random_weights(model, seed=0)
    spec = ctranslate2_export.transformer_spec(model, tokenizers)
    spec.optimize("float32")
    spec.save(str(tmp_path))

    sources, targets = english[:8], german[:8]
    encoder_ids = encode_source(tf.constant(sources), tokenizers, config.data, "de").to_tensor(PAD_ID)
    target_ids = tokenizers.target.tokenize(tf.constant(targets))
    decoder_ids = tf.concat([tf.fill([len(targets), 1], BOS_ID), target_ids], 1).to_tensor(PAD_ID)
    labels = tf.concat([target_ids, tf.fill([len(targets), 1], EOS_ID)], 1).to_tensor(PAD_ID).numpy()
    logits = model({"encoder_token_ids": encoder_ids, "decoder_token_ids": decoder_ids}, training=False)
    log_probs = tf.nn.log_softmax(_forbid_special(tf.cast(logits, tf.float32))).numpy()

    translator = ctranslate2.Translator(str(tmp_path), intra_threads=1)
    results = translator.score_batch(
        ctranslate2_export.source_tokens(sources, processor(tokenizers.source), {"source_prefix": ["<2de>"]}),
        [processor(tokenizers.target).encode(t, out_type=str) for t in targets])
    for row, result in enumerate(results):
        length = int((labels[row] != PAD_ID).sum())
        ours = log_probs[row, np.arange(length), labels[row, :length]]
        assert [tokenizers.target.piece_to_id(p) for p in result.tokens] == labels[row, :length].tolist()
        np.testing.assert_allclose(result.log_probs, ours, rtol=1e-4, atol=1e-4)


@pytest.fixture
def lstm_run(tiny_tsv, run, tmp_path_factory):
    """An lstm_seq2seq run directory as training makes it before its first step (config and tokenizer):
    the export refuses it from its config, before reading any weights."""
    workdir = tmp_path_factory.mktemp("runs") / "lstm"
    config = shrink(config_lib.load_config("lstm_seq2seq"), tiny_tsv)
    workdir_lib.commit(config, workdir, "new", run.tokenizers)
    return workdir


def test_export_cli_and_its_refusals(transformer_run, lstm_run, tmp_path):
    """One export through the command line, then the refused ones: each one line, nothing written."""
    model_dir = tmp_path / "model"
    base = ["--format=ctranslate2", "--check_sentences=2"]
    results = run_cli_commands("export", [
        (base + [f"--workdir={transformer_run}", f"--export_dir={model_dir}", "--quantization=int8"], ""),
        (base + [f"--workdir={lstm_run}", f"--export_dir={tmp_path / 'lstm'}"], ""),
        (base + [f"--workdir={transformer_run}", f"--export_dir={model_dir}"], ""),
        (base + [f"--workdir={transformer_run}", f"--export_dir={tmp_path / 'beam'}", "--beam_size=4"], ""),
        ([f"--workdir={transformer_run}", f"--export_dir={tmp_path / 'savedmodel'}", "--quantization=int8"], ""),
    ], tmp_path.parent / f"{tmp_path.name}-results.json")
    exported, lstm, exists, beam, savedmodel = results
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"to {model_dir}" in exported.stdout and "int8 weights" in exported.stdout
    assert "checked: 2 of 2 validation sentences get our greedy translation" in exported.stdout
    assert ctranslate2_export.translate(str(model_dir), ["The red user opens the file."])[0]
    before = sorted(os.listdir(model_dir))
    for result, message in [
            (lstm, "error: --format=ctranslate2 exports transformer runs; this run is lstm_seq2seq"),
            (exists, f"error: {model_dir} already exists: an export is never overwritten"),
            (beam, "error: --beam_size: for --format=savedmodel only"),
            (savedmodel, "error: --quantization is for --format=ctranslate2 only")]:
        assert result.returncode == 2, result.stderr[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(message), result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["model"]  # No other folder, no staging left behind.
    assert sorted(os.listdir(model_dir)) == before


def test_refusals_come_before_any_writing(transformer_run, tmp_path):
    for kwargs, message in [
            ({"quantization": "int4"}, "--quantization=int4 is not a CTranslate2 weight type"),
            ({"export_dir": "gs://bucket/model"}, "CTranslate2 loads models from local folders only"),
            ({"target_language": "fr"}, "--target_language=fr: the run (--pair=en-de) writes de")]:
        kwargs = {"export_dir": tmp_path / "model", **kwargs}
        with pytest.raises(UserError, match=re.escape(message)):
            ctranslate2_export.export_run(transformer_run, **kwargs)
    assert os.listdir(tmp_path) == []
