"""The `lm` model end to end: one language read from a pair's corpus, next-token training, validation
perplexity picking the best checkpoint, `evaluate` reporting perplexity, and the mistakes a user
makes with one (a pair without a language, a language on a translator...)."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import make_pairs, run_cli_commands, shrink, write_tsv
from xling_zoo import config as config_lib
from xling_zoo import trainer
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import pipeline
from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from xling_zoo.errors import UserError
from xling_zoo.evaluate import evaluate_run

TINY_LM = ["--set=tokenizer.vocab_size=300", "--set=data.tokens_per_batch=1024", "--set=data.max_length=48",
           "--set=data.bucket_boundaries=(24, 48)", "--set=train.warmup_steps=5",
           "--set=model.transformer.hidden_dim=32", "--set=model.transformer.intermediate_dim=64",
           "--set=model.transformer.num_heads=2", "--set=model.transformer.num_layers=1"]


@pytest.fixture(scope="module")
def lm_run(tiny_tsv, tmp_path_factory):
    """`python -m xling_zoo.train --model=lm --language=de` on the made-up corpus's German side."""
    workdir = tmp_path_factory.mktemp("lm") / "run"
    args = ["--model=lm", "--language=de", f"--corpus={tiny_tsv}", f"--workdir={workdir}", "--steps=90",
            "--set=train.eval_every_steps=30", *TINY_LM]
    done, = run_cli_commands("train", [(args, "")], tmp_path_factory.mktemp("results") / "train.json")
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir, done


def lm_config(corpus, *assignments):
    config = shrink(config_lib.load_config("lm", overrides=["language=de"]), corpus)
    for assignment in TINY_LM + list(assignments):
        config_lib.apply_override(config, assignment.removeprefix("--set="))
    return config


def test_the_command_trains_on_one_side_and_picks_the_checkpoint_of_lowest_validation_perplexity(lm_run):
    workdir, done = lm_run
    config = json.loads((workdir / "config.json").read_text())
    assert (config["language"], config["pair"], config["train"]["selection_metric"]) == ("de", "en-de", "perplexity")
    metrics = json.loads((workdir / "metrics.json").read_text())
    perplexities = [h["validation_perplexity"] for h in metrics["history"]]
    assert len(perplexities) == 3 and perplexities[-1] < perplexities[0] < 300 * 2
    assert metrics["best_step"] == metrics["history"][int(np.argmin(perplexities))]["step"]
    for h in metrics["history"]:
        assert h["validation_perplexity"] == pytest.approx(math.exp(h["validation_loss"]), rel=1e-3)
    assert "by validation perplexity" in done.stdout
    assert "on 1200 sentences" in done.stdout  # The German side of 1,200 pairs, not 2,400 sentences.


def test_its_tokenizer_knows_the_language_only(lm_run):
    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)
    german = " " + " ".join(target for _, target in make_pairs(1400, seed=0)[:1200])
    english = " " + " ".join(source for source, _ in make_pairs(1400, seed=0)[:1200])
    pieces = [piece.replace("\u2581", " ") for piece in run.tokenizers.target.pieces()
              if not (piece.startswith("<") and piece.endswith(">"))]
    # Every piece is German text; a tokenizer trained on both sides would hold English ones.
    assert [piece for piece in pieces if piece not in german] == []
    assert [piece for piece in pieces if piece not in english]  # Not merely letters both share.


def test_evaluate_reports_the_perplexity_validation_measured(lm_run):
    workdir, _ = lm_run
    metrics = evaluate_run(workdir, split="validation")
    best = json.loads((workdir / "metrics.json").read_text())
    best = next(h for h in best["history"] if h["step"] == best["best_step"])
    # The same sentences (none over data.max_length), the same weights: the same figure.
    assert metrics["sentences_cut_to_max_length"] == 0
    assert metrics["perplexity"] == pytest.approx(best["validation_perplexity"], rel=1e-3)
    lines = (workdir / metrics["perplexities"]).read_text().splitlines()
    assert len(lines) == metrics["examples"] == 100
    # Per-sentence perplexities whose token-weighted log-mean is the split's.
    assert min(float(x) for x in lines) < metrics["perplexity"] < max(float(x) for x in lines)
    test = evaluate_run(workdir)
    assert json.loads((workdir / "metrics.json").read_text())["perplexity"] == test["perplexity"]


def test_evaluate_refuses_a_translators_options(lm_run):
    workdir, _ = lm_run
    with pytest.raises(UserError, match="beam_size is a translator's option"):
        evaluate_run(workdir, beam_size=4)
    with pytest.raises(UserError, match="pair is a translator's option"):
        evaluate_run(workdir, pair="en-de")


def test_the_lstm_language_model_learns(tiny_tsv, tmp_path):
    config = lm_config(tiny_tsv, "model.decoder_type=lstm", "model.lstm.embedding_dim=16", "model.lstm.units=16",
                       "train.steps=60", "train.eval_every_steps=20")
    metrics = trainer.train_and_evaluate(config, tmp_path / "lstm")
    perplexities = [h["validation_perplexity"] for h in metrics["history"]]
    assert perplexities[-1] < 0.7 * perplexities[0]
    run = workdir_lib.load_run(tmp_path / "lstm")
    assert type(run.model).__name__ == "LSTMLM"


def test_lm_batches_are_the_sentence_shifted_by_one(tiny_tsv, lm_run):
    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)
    texts = tf.data.Dataset.from_tensor_slices(["Der rote Benutzer öffnet die Datei.", "Ein Haus.", "x " * 60])
    batches = list(pipeline.make_lm_dataset(texts, run.tokenizers.target, run.config.data, training=False))
    rows = [(inputs, labels) for batch in batches
            for inputs, labels in zip(batch["decoder_token_ids"].numpy(), batch["target_token_ids"].numpy())]
    assert len(rows) == 2  # The 60-word line is over data.max_length=48: dropped.
    for inputs, labels in rows:
        real = labels != PAD_ID
        assert inputs[0] == BOS_ID and labels[real][-1] == EOS_ID
        assert list(inputs[1:real.sum()]) == list(labels[:real.sum() - 1])
        assert set(batches[0]) == {"decoder_token_ids", "target_token_ids"}


@pytest.mark.parametrize("model, assignments, message", [
    ("lm", [], "models one language: name it"),
    ("lm", ["language=fr", "pair=en-de"], "'fr' is not a side of pair=en-de"),
    ("lm", ["language=de", "pair=en,fr-de"], "reads one side of a single pair"),
    ("lm", ["language=de", "mix.pair=en-nl", "mix.ratio=0.5"], "a language model takes none"),
    ("lm", ["language=en"], "name the pair whose en side to read"),
    ("lstm_seq2seq", ["language=de"], "lstm_seq2seq translates: give it a pair"),
])
def test_a_language_where_none_fits_and_none_where_one_is_needed(model, assignments, message):
    config = config_lib.load_config(model, overrides=assignments)
    with pytest.raises(UserError, match=message):
        config_lib.validate(config)


def test_an_unknown_network_is_one_clear_error(tiny_tsv, tmp_path):
    config = lm_config(tiny_tsv, "model.decoder_type=gru")
    with pytest.raises(UserError, match="model.decoder_type='gru' must be one of transformer, lstm"):
        trainer.train_and_evaluate(config, tmp_path / "gru")
    assert not os.path.exists(tmp_path / "gru" / "config.json")


def test_a_run_directory_from_before_the_language_key_still_resumes(tiny_config, tmp_path):
    config = tiny_config("lstm_seq2seq")
    old = config.to_dict()
    del old["language"]
    tmp_path.joinpath("config.json").write_text(json.dumps(old, default=list))
    assert workdir_lib.check(config, tmp_path) == "resume"
    # Another language is another run: its checkpoints and tokenizer cannot be reused.
    german, english = lm_config(config.corpus), lm_config(config.corpus)
    english.language = "en"
    assert config_lib.incompatible_keys(german, english) == ["language"]


# --- A language model's weights into a translator (transfer across task types, by name) -------------

def lm_child(lm_workdir, tiny_tsv, tmp_path, model_name="transformer", **options):
    from xling_zoo import transfer as transfer_lib

    overrides = ["train.steps=4", "train.eval_every_steps=4", "eval.validation_bleu_examples=8",
                 "model.num_encoder_layers=1"] if model_name == "transformer" else ["train.steps=4",
                                                                                     "train.eval_every_steps=4"]
    return transfer_lib.transfer(lm_workdir, tmp_path / "child", "en-de", corpus_spec=tiny_tsv, model_name=model_name,
                                 overrides=options.pop("overrides", overrides), **options)


def test_an_lm_parent_gives_a_transformer_child_its_decoder(lm_run, tiny_tsv, tmp_path):
    from xling_zoo import transfer as transfer_lib

    workdir, _ = lm_run
    lm_child(workdir, tiny_tsv, tmp_path)
    report = json.loads((tmp_path / "child" / "transfer.json").read_text())
    child = json.loads((tmp_path / "child" / "config.json").read_text())
    # The decoder sized as the lm; the child's own training settings, not the lm's.
    assert (child["model"]["num_decoder_layers"], child["model"]["hidden_dim"], child["model"]["intermediate_dim"]) == (1, 32, 64)
    assert (child["language"], child["train"]["selection_metric"], child["model_name"]) == ("", "bleu", "transformer")
    assert report["parent_not_used"] == []  # Every weight of the lm has its place.
    taken = report["copied"] + list(report["remapped"])
    assert "transformer/shared_embedding/embeddings" in taken and "transformer/logits/bias" in taken
    assert any("decoder_layer_0/self_attention/query/kernel" in path for path in taken)
    assert any("decoder_layer_0/feedforward_output_dense" in path for path in taken)
    assert all("cross_attention" not in path and "encoder_layer" not in path for path in taken)
    assert any("decoder_layer_0/cross_attention" in path for path in report["new"])
    assert any("encoder_layer_0" in path for path in report["new"])
    assert report["child"]["mix"]["ratio"] == 0.0  # An lm has no pairs to mix in.

    # The values: a freshly built child, initialised by the hook, holds the lm's weights.
    parent = workdir_lib.load_run(workdir)
    config = transfer_lib.make_child_config(parent.config, "en-de", tiny_tsv, model_name="transformer",
                                            overrides=["model.num_encoder_layers=1"])
    tokenizers = transfer_lib.child_tokenizers(parent.tokenizers, transfer_lib.mixing.languages(config), "parent",
                                               config.tokenizer)
    model = workdir_lib.build_model(config, tokenizers)
    transfer_lib.Transfer(parent, tokenizers).initialize(model)
    ours = {v.path.split("/", 1)[1]: v.numpy() for v in model.weights}
    theirs = {v.path.split("/", 1)[1]: v.numpy() for v in parent.model.weights}
    np.testing.assert_array_equal(ours["decoder_layer_0/self_attention/query/kernel"],
                                  theirs["decoder_layer_0/self_attention/query/kernel"])
    rows = theirs["target_embedding/embeddings"].shape[0]
    np.testing.assert_array_equal(ours["shared_embedding/embeddings"][:rows], theirs["target_embedding/embeddings"])


def test_the_child_of_another_type_takes_its_defaults_from_config(lm_run, tiny_tsv):
    from xling_zoo import config as config_module
    from xling_zoo import transfer as transfer_lib

    parent = workdir_lib.load_run(lm_run[0])
    tiny = config_module.CONFIG_DIR / "transformer_tiny.py"
    config = transfer_lib.make_child_config(parent.config, "en-de", tiny_tsv, model_name="transformer",
                                            config_file=tiny)
    assert (config.model.num_encoder_layers, config.train.learning_rate) == (2, 2e-3)  # transformer_tiny's
    assert config.model.hidden_dim == 32  # The lm's decoder width.
    with pytest.raises(UserError, match="--config=.* is for a child of another model type"):
        transfer_lib.make_child_config(parent.config, "en-de", tiny_tsv, config_file=tiny)


def test_an_lstm_lm_gives_an_lstm_seq2seq_child_its_decoder(tiny_tsv, tmp_path):
    config = lm_config(tiny_tsv, "model.decoder_type=lstm", "model.lstm.embedding_dim=16", "model.lstm.units=16",
                       "train.steps=3", "train.eval_every_steps=3")
    trainer.train_and_evaluate(config, tmp_path / "lstm_lm")
    lm_child(tmp_path / "lstm_lm", tiny_tsv, tmp_path, model_name="lstm_seq2seq")
    report = json.loads((tmp_path / "child" / "transfer.json").read_text())
    taken = report["copied"] + list(report["remapped"])
    assert {"lstm_seq2seq/target_embedding/embeddings", "lstm_seq2seq/logits/kernel", "lstm_seq2seq/logits/bias"} <= set(taken)
    assert any("decoder_lstm_0" in path for path in taken)
    assert report["parent_not_used"] == []


@pytest.mark.parametrize("model_name, options, message", [
    (None, {}, "is a language model: name the translator that takes its decoder"),
    ("lm", {}, "is a language model: name the translator that takes its decoder"),
    ("lstm_seq2seq", {}, "the lm parent is a transformer .* transfer it into --model=transformer"),
    ("adversarial", {}, "an adversarial child takes a translator parent"),
    ("transformer", {"mix_parent_data": 0.5}, "has no translation pairs to mix in"),
    ("transformer", {"overrides": ["model.hidden_dim=64", "model.num_heads=2"]},
     "do not fit the parent's of the same name"),
])
def test_an_lm_parent_that_cannot_give_its_decoder_is_one_clear_error(lm_run, tiny_tsv, tmp_path, model_name,
                                                                      options, message):
    workdir, _ = lm_run
    with pytest.raises(UserError, match=message):
        lm_child(workdir, tiny_tsv, tmp_path, model_name=model_name, **options)
    assert not (tmp_path / "child" / "config.json").exists()


# --- What review found: cut sentences, held-out text, the other commands given an lm run -------------

def test_a_cut_sentence_is_scored_on_its_first_pieces_without_an_eos_it_never_had(lm_run):
    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)
    sentence = "Der rote Benutzer öffnet die Datei. " * 8
    pieces = run.tokenizers.target.tokenize(tf.constant([sentence])).to_list()[0]
    length = 20
    assert len(pieces) + 1 > length
    inputs, labels, overlength = pipeline.lm_ids(run.tokenizers.target, tf.constant([sentence, "Ein Haus."]), length,
                                                 truncate=True)
    assert overlength.numpy().tolist() == [True, False]
    assert labels.to_list()[0] == pieces[:length]  # No eos: the sentence goes on.
    assert inputs.to_list()[0] == [BOS_ID] + pieces[:length - 1]
    assert labels.to_list()[1][-1] == EOS_ID


def test_pretraining_text_never_holds_a_validation_or_test_sentence(tmp_path):
    pairs = make_pairs(400, seed=3)
    train, validation, test = pairs[:300], pairs[300:350], pairs[350:]
    # Another English string with the same German: the multiway corpus has such sentences.
    train += [("A different source " + str(i) + ".", german) for i, (_, german) in enumerate(test[:7] + validation[:2])]
    # An English test sentence, left untranslated in a German string.
    train += [("Yet another source.", test[9][0])]
    spec = "tsv:" + ",".join(str(write_tsv(tmp_path / f"{name}.tsv", rows))
                             for name, rows in (("train", train), ("validation", validation), ("test", test)))
    splits = trainer.read_splits(lm_config(spec))
    held_out = {sentence for pair in validation + test for sentence in pair}
    assert len(splits.train) == 300 and not any(example["target"] in held_out for example in splits.train)


def test_the_other_commands_given_an_lm_run_say_what_it_is(lm_run, tmp_path):
    from xling_zoo import ctranslate2_export
    from xling_zoo.decode import Translator

    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)
    with pytest.raises(UserError, match="this lm run does not translate"):
        Translator(run.model, run.tokenizers, run.config)
    with pytest.raises(UserError, match=r"this run is lm \(export it as a SavedModel: --format=savedmodel\)"):
        ctranslate2_export.check_model_name("lm")
    assert "best_validation_bleu" not in json.loads((workdir / "metrics.json").read_text())


def test_language_flags_are_case_blind_and_nested_dropouts_are_checked():
    config = config_lib.load_config("lm", overrides=["language=NL"])
    assert (config.language, config.pair) == ("nl", "en-nl")
    config_lib.validate(config)
    config = config_lib.load_config("lm", overrides=["language=nl", "model.transformer.dropout=1.5"])
    with pytest.raises(UserError, match=r"model.transformer.dropout=1.5 must be in \[0, 1\)"):
        config_lib.validate(config)


def test_default_run_directories_tell_languages_and_pairs_apart():
    from xling_zoo.train import default_workdir

    assert default_workdir(config_lib.load_config("lm", overrides=["language=nl"])) == "runs/lm-nl"
    assert default_workdir(config_lib.load_config("lm", overrides=["language=nl", "pair=de-nl"])) == "runs/lm-nl-de-nl"
    assert default_workdir(config_lib.load_config("lstm_seq2seq", overrides=["pair=de,fr-en"])) == \
        "runs/lstm_seq2seq-de+fr-en"


def test_a_validation_split_with_nothing_to_score_is_an_error_not_a_perfect_perplexity(lm_run):
    from xling_zoo.validation import PerplexityValidator

    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)

    def nothing(input_context=None):
        texts = tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
        return pipeline.make_lm_dataset(texts, run.tokenizers.target, run.config.data, training=False)

    with pytest.raises(UserError, match="no sentence within data.max_length"):
        PerplexityValidator(tf.distribute.get_strategy(), run.model, nothing)()


def test_generate_continues_each_line_and_refuses_what_it_cannot_do(lm_run, tmp_path):
    workdir, _ = lm_run
    prompts = ["Der rote Benutzer", "", "Ein  Haus\u00a0öffnet", "Die Datei " * 40]
    stdin = "".join(p + "\n" for p in prompts)
    base = [f"--workdir={workdir}", "--max_new_tokens=6"]
    greedy, sampled, again, both, empty = run_cli_commands("generate", [
        (base, stdin), (base + ["--temperature=1.0", "--seed=3"], stdin), (base + ["--temperature=1.0", "--seed=3"], stdin),
        (base + ["--temperature=1.0", "--beam_size=2"], stdin), (base, "")], tmp_path / "generate.json")
    for done in (greedy, sampled, again):
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()[-len(prompts):]
        assert len(lines) == len(prompts)
        # Each prompt, whitespace normalised, then its continuation; the long one keeps its end.
        assert lines[0].startswith("Der rote Benutzer") and lines[2].startswith("Ein Haus öffnet")
        assert "Die Datei Die Datei" in lines[3] and lines[3].count("Datei") < 40
    assert "warning: line 4 has" in greedy.stderr
    assert sampled.stdout == again.stdout
    assert both.returncode != 0 and "--temperature=1.0 must be 0 with --beam_size above 1" in both.stderr
    assert empty.returncode != 0 and "stdin is empty" in empty.stderr


def test_translate_given_an_lm_run_says_so(lm_run, tmp_path):
    workdir, _ = lm_run
    done, = run_cli_commands("translate", [([f"--workdir={workdir}"], "Ein Haus.\n")], tmp_path / "translate.json")
    assert done.returncode != 0 and "this lm run does not translate" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_export_continues_prompts_in_tf_servings_loader_and_survives_garbage(lm_run, tmp_path):
    from xling_zoo import serving
    from xling_zoo.decode import Continuer
    from xling_zoo.export import METADATA_FILE, export_run

    workdir, _ = lm_run
    destination = export_run(workdir, tmp_path / "export", check_sentences=4)
    metadata = json.loads((destination / METADATA_FILE).read_text())
    assert metadata["checked_sentences"] == 4 and metadata["signature"]["outputs"].keys() == {"texts", "status"}
    run = workdir_lib.load_run(workdir)
    prompts = ["Der rote Benutzer", "", "x" * 5000, "Die Datei " * 40, b"\xff\xfe kaputt", "Ein\u00a0Haus"]
    outputs = serving.session_outputs(str(destination), [p if isinstance(p, bytes) else p.encode() for p in prompts])
    statuses = [s.decode() for s in outputs["status"]]
    assert statuses == ["ok", "ok", "too_long", "cut", "ok", "ok"]
    texts = [t.decode("utf-8", "replace") for t in outputs["texts"]]
    continuer = Continuer(run.model, run.tokenizers, run.config)
    expected = continuer.continue_all(["Der rote Benutzer", "", "Ein Haus"])
    assert [texts[0], texts[1], texts[5]] == expected and texts[2] == ""
    assert serving.session_outputs(str(destination), [])["texts"].shape == (0,)
    with pytest.raises(UserError, match="split_long_sentences is a translator's option"):
        export_run(workdir, tmp_path / "export", split_long_sentences=True)


def test_an_english_lm_gives_the_childs_encoder_and_a_german_one_its_decoder(lm_run, tiny_tsv, tmp_path):
    workdir, _ = lm_run
    english = lm_config(tiny_tsv, "language=en", "tokenizer.vocab_size=290", "train.steps=3", "train.eval_every_steps=3")
    trainer.train_and_evaluate(english, tmp_path / "lm-en")
    lm_child(workdir, tiny_tsv, tmp_path, encoder_from=tmp_path / "lm-en",
             overrides=["train.steps=2", "train.eval_every_steps=2", "eval.validation_bleu_examples=4",
                        "model.num_encoder_layers=1", "model.tie_embeddings=false"])
    report = json.loads((tmp_path / "child" / "transfer.json").read_text())
    assert report["encoder_lm"] == str(tmp_path / "lm-en")
    remapped = report["remapped"]
    assert remapped["transformer/source_embedding/embeddings"]["vocabulary"] == "encoder_lm"
    assert remapped["transformer/target_embedding/embeddings"]["vocabulary"] == "target"
    # The encoder's layers are the English lm's: nothing of it is new but what it lacks.
    new = report["new"]
    assert not [path for path in new if "encoder_layer" in path or "source_" in path]
    assert [path for path in new if "cross_attention" in path] and "transformer/logits/kernel" in new
    assert report["encoder_from"]["language"] == "en" and report["parent_not_used"] == []
    assert report["encoder_from"]["not_used"] == [str(tmp_path / "lm-en") + ":lm/logits/bias"]

    from xling_zoo import transfer as transfer_lib
    parent, encoder = workdir_lib.load_run(workdir), workdir_lib.load_run(tmp_path / "lm-en")
    config = json.loads((tmp_path / "child" / "config.json").read_text())
    child = workdir_lib.build_model(config_lib.from_json(json.dumps(config)), workdir_lib.load_run(tmp_path / "child").tokenizers)
    transfer_lib.Transfer(parent, workdir_lib.load_run(tmp_path / "child").tokenizers, encoder_source=encoder).initialize(child)
    ours = {v.path.split("/", 1)[1]: v.numpy() for v in child.weights}
    theirs = {v.path.split("/", 1)[1]: v.numpy() for v in encoder.model.weights}
    np.testing.assert_array_equal(ours["encoder_layer_0/self_attention_layer/query/kernel"],
                                  theirs["decoder_layer_0/self_attention/query/kernel"])
    np.testing.assert_array_equal(ours["encoder_layer_0/feedforward_output_dense/kernel"],
                                  theirs["decoder_layer_0/feedforward_output_dense/kernel"])


@pytest.mark.parametrize("encoder, overrides, message", [
    ("lm-de", ["model.tie_embeddings=false"], "is a language model of de; the child --pair=en-de reads en"),
    ("lm-en", [], "cannot hold two language models' embeddings: --set=model.tie_embeddings=false"),
    ("missing", [], "--encoder_from=.*missing"),
])
def test_an_encoder_lm_that_cannot_give_its_layers_is_one_clear_error(lm_run, tiny_tsv, tmp_path, encoder, overrides,
                                                                      message):
    workdir, _ = lm_run
    if encoder == "lm-en":
        trainer.train_and_evaluate(lm_config(tiny_tsv, "language=en", "tokenizer.vocab_size=290", "train.steps=1",
                                             "train.eval_every_steps=1"),
                                   tmp_path / "lm-en")
    source = {"lm-de": workdir, "lm-en": tmp_path / "lm-en", "missing": tmp_path / "missing"}[encoder]
    with pytest.raises(UserError, match=message):
        lm_child(workdir, tiny_tsv, tmp_path, encoder_from=source,
                 overrides=["train.steps=2", "model.num_encoder_layers=1", *overrides])
    assert not (tmp_path / "child" / "config.json").exists()


# --- What the second review found: positions, sampling seeds, flags, freezing fresh weights ---------

def test_continuations_stay_within_the_trained_positions_and_sample_alike_in_any_batch(lm_run):
    from xling_zoo.decode import Continuer

    workdir, _ = lm_run
    run = workdir_lib.load_run(workdir)
    longest = run.config.data.max_length - 1
    continuer = Continuer(run.model, run.tokenizers, run.config, max_new_tokens=200)
    prompts = ["Der rote Benutzer", "Die Datei " * 40, ""]
    for text in continuer.continue_all(prompts):
        assert len(run.tokenizers.target.tokenize(tf.constant([text])).to_list()[0]) <= longest
    sampler = Continuer(run.model, run.tokenizers, run.config, max_new_tokens=8, temperature=1.0, top_k=10 ** 6, seed=2 ** 32)
    same = ["Ein Haus"] * 6
    by_one, by_four = sampler.continue_all(same, batch_size=1), sampler.continue_all(same, batch_size=4)
    assert by_one == by_four and len(set(by_one)) > 1  # Each row its own draw, whatever the batch.
    assert all(text.startswith("Ein Haus") for text in by_one)


@pytest.mark.parametrize("options, message", [
    ({"max_new_tokens": 0}, "--max_new_tokens=0 must be >= 1"),
    ({"temperature": 1e-9}, "--temperature=1e-09 must be 0 .* or in"),
    ({"top_k": 5}, "--top_k=5 must be 0 without --temperature"),
])
def test_continuation_flags_out_of_range_are_one_clear_error(lm_run, options, message):
    from xling_zoo.decode import Continuer

    run = workdir_lib.load_run(lm_run[0])
    with pytest.raises(UserError, match=message):
        Continuer(run.model, run.tokenizers, run.config, **options)


def test_stdin_with_a_stray_byte_is_read_line_by_line(monkeypatch):
    import io
    import sys

    from xling_zoo import cli

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Ein Haus\n\xff kaputt\n\nletzte")))
    assert cli.read_stdin_lines() == ["Ein Haus", "\ufffd kaputt", "", "letzte"]
    assert cli.one_line("zwei\nZeilen\u2028drei") == "zwei Zeilen drei"


def test_freezing_a_group_the_parent_did_not_give_is_refused(lm_run, tiny_tsv, tmp_path):
    workdir, _ = lm_run
    with pytest.raises(UserError, match="--freeze=decoder would keep .* weights that the parent does not give"):
        lm_child(workdir, tiny_tsv, tmp_path, freeze=["decoder"])
    assert not (tmp_path / "child" / "config.json").exists()


def test_a_config_file_of_another_model_is_refused():
    with pytest.raises(UserError, match="is a lstm_seq2seq config, not a transformer one"):
        config_lib.load_config("transformer", config_lib.CONFIG_DIR / "lstm_seq2seq.py")
