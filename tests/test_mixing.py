"""Mixed fine-tuning (data/mixing.py), the parent-vocabulary check and the small-corpus defaults."""

import collections
import json
import pathlib
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from tests.conftest import make_pairs, shrink, write_tsv
from xling_zoo import config as config_lib
from xling_zoo import trainer
from xling_zoo import transfer as transfer_lib
from xling_zoo.data import corpus, mixing, pipeline, related_languages
from xling_zoo.data.corpus import Pair
from xling_zoo.data.tokenizer import Tokenizers, small_corpus_vocab_size
from xling_zoo.errors import UserError
from xling_zoo.registry import get_model


def tsv_corpus(directory, pairs, train=600, validation=100):
    directory.mkdir(parents=True, exist_ok=True)
    files = [write_tsv(directory / f"{split}.tsv", rows) for split, rows in
             (("train", pairs[:train]), ("validation", pairs[train:train + validation]),
              ("test", pairs[train + validation:]))]
    return "tsv:" + ",".join(str(f) for f in files)


@pytest.fixture(scope="module")
def nl_tsv(tmp_path_factory):
    return tsv_corpus(tmp_path_factory.mktemp("nl"), make_pairs(800, seed=7, column=1))


def small_config(parent_corpus, **overrides):
    config = shrink(config_lib.load_config("lstm_seq2seq"), parent_corpus)
    for assignment in ["model.embedding_dim=16", "model.units=16", "tokenizer.vocab_size=300",
                       *(f"{k}={v}" for k, v in overrides.items())]:
        config_lib.apply_override(config, assignment)
    return config


@pytest.fixture(scope="module")
def parent_dir(tiny_tsv, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("parent") / "run")
    trainer.train_and_evaluate(small_config(tiny_tsv), workdir)
    return workdir


def mixed_config(tiny_tsv, nl_tsv, ratio):
    return small_config(nl_tsv, pair="en-nl", **{"mix.pair": "en-de", "mix.corpus": tiny_tsv, "mix.ratio": ratio})


def as_strings(dataset):
    return [{k: v.decode() for k, v in example.items()} for example in dataset.as_numpy_iterator()]


# === One pass of mixed examples ===

def test_a_pass_holds_every_own_example_once_and_ratio_of_the_other_pair(tiny_tsv, nl_tsv):
    config = mixed_config(tiny_tsv, nl_tsv, 0.25)
    first = as_strings(mixing.training_examples(config, own_count=600, seed=1).repeat(2))
    passes = [first[:len(first) // 2], first[len(first) // 2:]]
    for examples in passes:
        by_language = collections.Counter(example["target_language"] for example in examples)
        # 600 own pairs are 75% of the pass: 200 of the other pair join them.
        assert by_language == {"nl": 600, "de": mixing.mixed_count(600, 0.25)} == {"nl": 600, "de": 200}
        own = sorted(example["source"] for example in examples if example["target_language"] == "nl")
        assert len(set(own)) == 600
        # Interleaved, not appended: the other pair's examples are spread over the pass.
        positions = [i for i, example in enumerate(examples) if example["target_language"] == "de"]
        assert positions[0] < 100 and positions[-1] > len(examples) - 100
    other = [{e["source"] for e in examples if e["target_language"] == "de"} for examples in passes]
    assert other[0] != other[1], "each pass draws a new sample of the other pair"
    # Deterministic given the seed: a resumed run skips to exactly the examples it would have seen.
    assert as_strings(mixing.training_examples(config, own_count=600, seed=1).repeat(2)) == first


def test_without_mixing_the_pass_is_the_own_split_unchanged(tiny_tsv, nl_tsv):
    config = small_config(nl_tsv, pair="en-nl")
    examples = as_strings(mixing.training_examples(config, own_count=600, seed=1))
    assert len(examples) == 600 and "target_language" not in examples[0]
    assert mixing.languages(config) == mixing.Languages(("en",), ("nl",))
    assert mixing.languages(mixed_config(tiny_tsv, nl_tsv, 0.5)) == mixing.Languages(("en",), ("nl", "de"))


def test_each_mixed_example_gets_its_own_target_language_tag(tiny_tsv, nl_tsv, parent_dir):
    config = mixed_config(tiny_tsv, nl_tsv, 0.5)
    config.data.max_length = 128  # Room for every pair: none is dropped as too long.
    parent = Tokenizers.load(f"{parent_dir}/tokenizer")
    tokenizers = transfer_lib.child_tokenizers(parent, mixing.languages(config), "parent", config.tokenizer)
    examples = mixing.training_examples(config, own_count=600, seed=1)
    dataset = pipeline.make_dataset(examples, tokenizers, config.data, target_language="nl",
                                    source_languages=("en",), target_languages=("nl", "de"), training=True)
    tags = collections.Counter()
    for batch in dataset:
        tags.update(batch["encoder_token_ids"][:, 0].numpy().tolist())
    tag_ids = {lang: tokenizers.source.language_tag_id(lang) for lang in ("nl", "de")}
    # Each tag is on exactly its language's examples.
    assert tags == {tag_ids["nl"]: 600, tag_ids["de"]: 600}


# === Bad input ===

@pytest.mark.parametrize("assignments, message", [
    (["mix.pair=en-de", "mix.ratio=1.0"], r"mix.ratio=1.0 must be in \[0, 1\)"),
    (["mix.pair=en-de", "mix.ratio=-0.1"], r"mix.ratio=-0.1 must be in \[0, 1\)"),
    (["mix.ratio=0.5"], "needs mix.pair"),
    (["mix.pair=english-german", "mix.ratio=0.5"], "mix.pair='english-german'"),
    (["mix.pair=en-nl", "mix.ratio=0.5"], "the run's own pair and corpus"),
    (["mix.pair=en-de", "mix.ratio=0.5", "data.target_language_tag=False"], "needs data.target_language_tag=True"),
])
def test_a_bad_mix_is_one_clear_error(nl_tsv, assignments, message):
    config = small_config(nl_tsv, pair="en-nl")
    for assignment in assignments:
        config_lib.apply_override(config, assignment)
    with pytest.raises(UserError, match=message):
        config_lib.validate(config)


def test_a_discriminator_refuses_source_languages_it_cannot_classify(nl_tsv, tmp_path):
    config = small_config(nl_tsv, pair="en,fr-nl", **{"mix.pair": "de-nl", "mix.ratio": 0.5})
    config.model_name = "adversarial"
    with pytest.raises(UserError, match="brings source language.* de .*adversarial cannot classify"):
        mixing.check_mix(config, get_model("adversarial"))
    # A translator ignores the source-language ids; an empty mixed-in split is still refused.
    config.model_name = "lstm_seq2seq"
    config.mix.corpus = tsv_corpus(tmp_path / "empty", [], 0, 0)
    with pytest.raises(UserError, match="mix.pair=de-nl: the train split of .* is empty"):
        mixing.check_mix(config, get_model("lstm_seq2seq"))


def run_transfer_cli(*flags):
    return subprocess.run([sys.executable, "-m", "xling_zoo.transfer", *flags], capture_output=True, text=True,
                          timeout=600)


def test_the_transfer_command_refuses_a_bad_mix_before_writing(parent_dir, nl_tsv, tmp_path):
    child = tmp_path / "child"
    result = run_transfer_cli(f"--parent={parent_dir}", "--pair=en-nl", f"--corpus={nl_tsv}", f"--workdir={child}",
                              "--mix_parent_data=1.5")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "mix.ratio=1.5 must be in [0, 1)" in result.stderr.splitlines()[-1]
    assert not child.exists()
    result = run_transfer_cli(f"--parent={parent_dir}", "--pair=en-nl", f"--corpus={nl_tsv}", f"--workdir={child}",
                              "--mix_related=fr,nl")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--mix_related=nl is the child's own target language" in result.stderr.splitlines()[-1]
    assert not child.exists()


# === The parent's vocabulary must carry the child's text ===

GREEK = {"the": "ο", "red": "κόκκινος", "user": "χρήστης", "opens": "ανοίγει", "a": "ένα", "big": "μεγάλο",
         "file": "αρχείο", "window": "παράθυρο", "saves": "αποθηκεύει", "old": "παλιά", "picture": "εικόνα"}


def test_a_child_the_parent_vocabulary_spells_as_bytes_is_refused_with_what_to_do(parent_dir, tmp_path):
    rows = [(e, " ".join(GREEK.get(w.strip(".").lower(), "λέξη") for w in e.split()) + ".")
            for e, _ in make_pairs(300, seed=3)]
    greek = tsv_corpus(tmp_path / "el", rows, train=200, validation=50)
    child = tmp_path / "child"
    with pytest.raises(UserError, match=r"spells \d+% of the child's target text \(el.*--vocab=child"):
        transfer_lib.transfer(parent_dir, child, "en-el", corpus_spec=greek, vocab="parent",
                              overrides=["train.steps=1"])
    assert not child.exists()
    parent = Tokenizers.load(f"{parent_dir}/tokenizer")
    assert transfer_lib.byte_piece_share(parent.target, [r[1] for r in rows]) > 0.5
    assert transfer_lib.byte_piece_share(parent.target, [r[0] for r in rows]) == 0
    # The default, --vocab=auto, trains the child's own vocabulary instead.
    examples = corpus.read_split(greek, "en-el", "train")
    shares = transfer_lib.parent_vocabulary_shares(parent, Pair.parse("en-el"), examples)
    assert shares["source"][1] == 0 and shares["target"][1] > 0.5
    assert transfer_lib.choose_vocab("auto", shares, 200) == "child"
    assert transfer_lib.choose_vocab("child", shares, 200) == "child"


def test_extend_adds_pieces_for_the_letters_the_parent_lacks_and_keeps_every_parent_piece(parent_dir, tmp_path):
    rows = [(e, " ".join(GREEK.get(w.strip(".").lower(), "λέξη") for w in e.split()) + ".")
            for e, _ in make_pairs(300, seed=3)]
    greek = tsv_corpus(tmp_path / "el", rows, train=200, validation=50)
    child = tmp_path / "child"
    # tokenizer.vocab_size: the vocabulary trained on the child's data that the new pieces come from
    # (the parent's 300 cannot hold the 256 byte pieces and every Greek and Latin character).
    transfer_lib.transfer(parent_dir, child, "en-el", corpus_spec=greek, vocab="extend", mix_parent_data=0,
                          overrides=["train.steps=1", "train.eval_every_steps=1", "train.warmup_steps=1",
                                     "tokenizer.vocab_size=600"])
    report = json.loads((child / "transfer.json").read_text())
    assert report["vocab"] == "extend"
    parent, extended = Tokenizers.load(f"{parent_dir}/tokenizer"), Tokenizers.load(child / "tokenizer")
    parent_pieces, pieces = parent.target.pieces(), extended.target.pieces()
    assert pieces[:len(parent_pieces)] == parent_pieces  # Every parent id keeps its piece (and its row).
    added = [p for p in pieces[len(parent_pieces):] if p != "<2el>"]
    assert added and all(any("\u0370" <= c <= "\u03ff" for c in p) for p in added)  # Greek pieces only.
    # The parent spelled the Greek side with byte pieces; the extended vocabulary does not, and the
    # English side is tokenized exactly as by the parent.
    assert transfer_lib.byte_piece_share(parent.target, [r[1] for r in rows]) > 0.5
    assert transfer_lib.byte_piece_share(extended.target, [r[1] for r in rows]) < 0.05
    english = [r[0] for r in rows]
    assert extended.source.tokenize(english).to_list() == parent.source.tokenize(english).to_list()
    remapped = report["vocabularies"]["joint"]
    assert remapped["kept"] == len(parent_pieces) and remapped["new"] == len(added) + 1
    assert remapped["new_initialised_from"]["pieces"] == len(added)  # Each from the bytes the parent spelled it with.


def test_auto_keeps_the_parent_vocabulary_for_a_small_child_it_can_carry():
    clean = {"source": ("en", 0.0, 1000), "target": ("sv", 0.001, 1000)}
    czech = {"source": ("en", 0.0, 1000), "target": ("cs", 0.22, 1000)}
    greek = {"source": ("en", 0.0, 1000), "target": ("el", 0.89, 1000)}
    for pairs in (1000, transfer_lib.CHILD_VOCAB_MIN_PAIRS - 1):
        assert transfer_lib.choose_vocab("auto", clean, pairs) == "parent" == transfer_lib.choose_vocab("parent", clean, pairs)
        assert transfer_lib.choose_vocab("auto", czech, pairs) == "parent" == transfer_lib.choose_vocab("parent", czech, pairs)
        assert transfer_lib.choose_vocab("auto", greek, pairs) == "child" == transfer_lib.choose_vocab("child", greek, pairs)
    # From 2,000 pairs on the child has the data for its own vocabulary; asked for, the parent's stays.
    for shares in (clean, czech, greek):
        assert transfer_lib.choose_vocab("auto", shares, transfer_lib.CHILD_VOCAB_MIN_PAIRS) == "child"
    assert transfer_lib.choose_vocab("parent", czech, 5000) == "parent"
    with pytest.raises(UserError, match="cannot carry el"):
        transfer_lib.choose_vocab("parent", greek, 5000)


def test_the_plain_command_trains_the_childs_vocabulary_once_it_has_the_pairs_for_one(parent_dir, nl_tsv, tmp_path,
                                                                                      monkeypatch, capsys):
    steps = ["train.steps=1", "train.eval_every_steps=1"]
    transfer_lib.transfer(parent_dir, tmp_path / "small", "en-nl", corpus_spec=nl_tsv, max_train_examples=400,
                          mix_parent_data=0, overrides=steps)
    small = json.loads((tmp_path / "small" / "transfer.json").read_text())
    assert small["vocab"] == "parent" and small["child"]["train_pairs"] == 400
    monkeypatch.setattr(transfer_lib, "CHILD_VOCAB_MIN_PAIRS", 500)  # nl_tsv holds 600 training pairs.
    transfer_lib.transfer(parent_dir, tmp_path / "large", "en-nl", corpus_spec=nl_tsv, mix_parent_data=0,
                          overrides=steps)
    large = json.loads((tmp_path / "large" / "transfer.json").read_text())
    assert large["vocab"] == "child" and large["child"]["vocab_requested"] == "auto"
    assert large["child"]["train_pairs"] == 600
    assert "with --vocab=child (auto: 600 training pairs, from 500 on the child's own vocabulary" in capsys.readouterr().out
    # A vocabulary of its own: trained on the child's pairs, not the parent's pieces.
    assert Tokenizers.load(str(tmp_path / "large" / "tokenizer")).source.pieces() != \
        Tokenizers.load(str(tmp_path / "small" / "tokenizer")).source.pieces()


# === Mixed fine-tuning end to end ===

def test_transfer_with_mixed_parent_data_trains_on_both_pairs_with_their_tags(parent_dir, nl_tsv, tmp_path):
    child = tmp_path / "child"
    plain = transfer_lib.transfer(parent_dir, tmp_path / "plain", "en-nl", corpus_spec=nl_tsv, mix_parent_data=0,
                                  overrides=["train.steps=2", "train.eval_every_steps=2"])
    mixed = transfer_lib.transfer(parent_dir, child, "en-nl", corpus_spec=nl_tsv, mix_parent_data=0.5,
                                  overrides=["train.steps=2", "train.eval_every_steps=2"])
    report = json.loads((child / "transfer.json").read_text())
    assert report["child"]["mix"]["pair"] == "en-de" and report["child"]["mix"]["ratio"] == 0.5
    assert report["child"]["mix"]["corpus"] == json.loads(open(f"{parent_dir}/config.json").read())["corpus"]
    # Half of each pass is the parent's: the epoch doubles (within a batch of bucketing slack).
    plain_epoch = json.loads((tmp_path / "plain" / "transfer.json").read_text())["child"]["steps_per_epoch"]
    assert 1.6 * plain_epoch <= report["child"]["steps_per_epoch"] <= 2.4 * plain_epoch
    tokenizers = Tokenizers.load(str(child / "tokenizer"))
    assert {"<2nl>", "<2de>"} <= set(tokenizers.source.pieces())
    assert np.isfinite(mixed["history"][-1]["validation_loss"]) and mixed["step"] == plain["step"] == 2
    config = json.loads((child / "config.json").read_text())
    assert config["mix"] == {"pair": "en-de", "corpus": report["child"]["mix"]["corpus"], "ratio": 0.5}


# === A small corpus gets a schedule and a vocabulary it can use ===

def test_a_small_corpus_validates_every_100_updates_with_the_childs_early_stopping():
    train = config_lib.load_config("lstm_seq2seq").train
    assert train.eval_every_steps == 0
    assert trainer.small_corpus_schedule(train, 13) == {
        "eval_every_steps": 100, "min_steps_before_early_stopping": 500, "early_stopping_patience_steps": 300}
    assert trainer.small_corpus_schedule(train, 138) == {}  # A full corpus keeps validation per epoch.
    train.min_steps_before_early_stopping = 50
    assert "min_steps_before_early_stopping" not in trainer.small_corpus_schedule(train, 13)
    train.eval_every_steps = 20
    assert trainer.small_corpus_schedule(train, 13) == {}  # The user's own interval wins.


def test_the_plain_train_command_on_a_small_corpus_records_the_schedule_it_used(tmp_path):
    corpus = tsv_corpus(tmp_path / "small", make_pairs(360, seed=11), train=300, validation=30)
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "xling_zoo.train", "--model=lstm_seq2seq", f"--corpus={corpus}", "--pair=en-de",
         f"--workdir={workdir}", "--steps=3", "--set=model.units=16", "--set=model.embedding_dim=16",
         "--set=eval.validation_bleu_examples=8"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # 300 pairs: the config's 4,000 pieces are capped to 512 (an upper bound: the made-up grammar
    # fills fewer), and validation moves to every 100 updates.
    assert "512 pieces" in result.stdout and "capped for a small corpus" in result.stdout
    assert "A small corpus (" in result.stdout
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["eval_every_steps"] == 100
    assert config["train"]["min_steps_before_early_stopping"] == 500
    assert config["train"]["early_stopping_patience_steps"] == 300
    assert 300 < Tokenizers.load(str(workdir / "tokenizer")).source.vocab_size <= 512
    assert small_corpus_vocab_size(4000, 1000) == 1000 and small_corpus_vocab_size(4000, 20000) == 4000


def test_the_default_mixes_in_the_parents_data_where_it_can_be_read(parent_dir, nl_tsv, tmp_path, capsys):
    steps = ["train.steps=1", "train.eval_every_steps=1"]
    transfer_lib.transfer(parent_dir, tmp_path / "default", "en-nl", corpus_spec=nl_tsv, overrides=steps)
    mix = json.loads((tmp_path / "default" / "transfer.json").read_text())["child"]["mix"]
    assert mix["pair"] == "en-de" and mix["ratio"] == transfer_lib.CHILD_MIX_PARENT_DATA == 0.5
    # A parent whose corpus is not here: the default trains on the child's pairs alone and says so;
    # asking for mixing is an error that names the parent's corpus.
    moved = tmp_path / "moved-parent"
    shutil.copytree(parent_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    config["corpus"] = f"tsv:{tmp_path / 'gone.tsv'}"
    (moved / "config.json").write_text(json.dumps(config))
    transfer_lib.transfer(moved, tmp_path / "unmixed", "en-nl", corpus_spec=nl_tsv, overrides=steps)
    assert "Not mixing in the parent's training data" in capsys.readouterr().out
    assert json.loads((tmp_path / "unmixed" / "transfer.json").read_text())["child"]["mix"]["ratio"] == 0
    with pytest.raises(UserError, match=r"mix.pair=en-de \(corpus tsv:.*gone.tsv\): .*does not exist"):
        transfer_lib.transfer(moved, tmp_path / "asked", "en-nl", corpus_spec=nl_tsv, mix_parent_data=0.5,
                              overrides=steps)
    assert not (tmp_path / "asked").exists()


# === Similar-language regularisation: --mix_related ===

@pytest.fixture(scope="module")
def multiway_parent(multiway, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("multiway_parent") / "run")
    trainer.train_and_evaluate(small_config(multiway, pair="en-de"), workdir)
    return workdir


def test_mix_related_adds_the_related_language_on_the_childs_new_side(multiway_parent, multiway, tmp_path):
    # "af" is a language the parent never saw; "nl" (the same made-up grammar) is its relative.
    child = transfer_lib.transfer(multiway_parent, tmp_path / "en-af", "en-af", mix_related=["nl"],
                                  overrides=["train.steps=2", "train.eval_every_steps=2"])
    report = json.loads((tmp_path / "en-af" / "transfer.json").read_text())
    assert report["child"]["mix"] == {"pair": "en-de,nl", "corpus": multiway, "ratio": 0.5}
    assert {"<2af>", "<2de>", "<2nl>"} <= set(Tokenizers.load(str(tmp_path / "en-af" / "tokenizer")).source.pieces())
    assert child["step"] == 2 and np.isfinite(child["history"][-1]["validation_loss"])
    # The pass holds all three target languages, the child's own pairs once.
    config = config_lib.from_json((tmp_path / "en-af" / "config.json").read_text())
    examples = as_strings(mixing.training_examples(config, 1000, seed=1))
    counts = collections.Counter(e["target_language"] for e in examples)
    assert counts["af"] == 1000 and counts["de"] + counts["nl"] == 1000 and counts["de"] and counts["nl"]
    # X->en: the related language joins the parent's sources.
    assert str(transfer_lib.related_mix_pair("de-en", "af-en", ["nl"])) == "de,nl-en"


@pytest.mark.parametrize("pair, related, options, message", [
    ("en-af", ["af"], {}, "is the child's own target language"),
    ("en-af", ["de"], {}, "repeats a target language"),
    ("en-af", ["n!"], {}, "'n!' is not a language code"),
    ("nl-af", ["de"], {}, "lacks, on one side: --pair=nl-af has new languages on both sides"),
    ("en-de", ["nl"], {}, "lacks, on one side: --pair=en-de has no language the parent"),
    ("en-af", ["nl"], {"mix_parent_data": 0}, "needs --mix_parent_data above 0"),
    ("en-af", ["fr"], {}, r"mix.pair=en-de,fr .*fr"),  # The corpus has no French.
])
def test_a_bad_mix_related_is_one_clear_error_before_anything_is_written(multiway_parent, tmp_path, pair, related,
                                                                          options, message):
    with pytest.raises(UserError, match=message):
        transfer_lib.transfer(multiway_parent, tmp_path / "child", pair, mix_related=related, **options)
    assert not (tmp_path / "child").exists()


# === --mix_related=auto (the default): the child's closest relative ===

def test_closest_relatives_come_from_the_table_and_a_variant_from_its_base_language():
    assert related_languages.closest_relatives("cs") == ("sk", "pl")
    assert related_languages.closest_relatives("pt_br") == ("pt", "gl", "es")
    assert related_languages.closest_relatives("sr_latn") == ("sr", "hr", "bs", "sl")
    assert related_languages.closest_relatives("zh_hans") == ("zh_hant", "zh_hk")
    assert related_languages.closest_relatives("xx") == () and related_languages.closest_relatives("xx_yy") == ("xx",)
    # Every entry names other languages, each once.
    for language, relatives in related_languages.RELATED.items():
        assert language not in relatives and len(set(relatives)) == len(relatives), language


def test_the_plain_command_mixes_in_the_childs_closest_relative(multiway_parent, multiway, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.setattr(transfer_lib, "RELATED_MIN_PAIRS", 100)
    steps = ["train.steps=1", "train.eval_every_steps=1"]
    transfer_lib.transfer(multiway_parent, tmp_path / "en-af", "en-af", overrides=steps)
    child = json.loads((tmp_path / "en-af" / "transfer.json").read_text())["child"]
    assert child["mix"] == {"pair": "en-de,nl", "corpus": multiway, "ratio": 0.5}
    assert child["mix_related"] == ["nl"]
    assert "nl: the closest relatives of af with 100+ training pairs" in child["mix_related_note"]
    assert "mixed fine-tuning: 50% of each pass is en-de,nl" in capsys.readouterr().out
    # X->en: the relative joins the parent's sources; with too few of its pairs there is none.
    config = ml_collections.ConfigDict({"pair": "de-en", "corpus": multiway, "data_dir": ""})
    assert transfer_lib.auto_related(config, "af-en")[0] == ("nl",)
    # A child with pairs enough of its own mixes in none.
    related, note = transfer_lib.auto_related(config, "af-en", train_pairs=transfer_lib.RELATED_MAX_CHILD_PAIRS)
    assert related == () and f"the child has {transfer_lib.RELATED_MAX_CHILD_PAIRS} training pairs" in note
    monkeypatch.setattr(transfer_lib, "RELATED_MIN_PAIRS", 10 ** 6)
    related, note = transfer_lib.auto_related(config, "af-en")
    assert related == () and "nl (" in note and "nl-en training pairs, under 1000000" in note


@pytest.mark.parametrize("parent_pair, child_pair, reason", [
    ("en-de,nl", "en-af", "nl (in the pairs already)"),  # Its one relative is the parent's already.
    ("en-de", "en-fr", "no language related to fr is known"),
    ("en-nl", "en-de", "lb (not in "),  # de: lb (not in the corpus), then nl (the parent's).
    ("en-de", "nl-af", "new languages on both sides"),
    ("en-de", "en-de", "no language the parent's en-de lacks"),
])
def test_auto_mixes_no_relative_where_there_is_none_and_says_why(multiway, parent_pair, child_pair, reason,
                                                                 monkeypatch):
    monkeypatch.setattr(related_languages, "RELATED", {**related_languages.RELATED, "fr": ()})
    config = ml_collections.ConfigDict({"pair": parent_pair, "corpus": multiway, "data_dir": ""})
    related, note = transfer_lib.auto_related(config, child_pair)
    assert related == () and reason in note


def test_autos_note_quotes_only_the_start_of_a_long_corpus_error(multiway, monkeypatch):
    # The built-in corpus refuses an unknown language by listing its ~80 languages.
    def refuse(spec, pair, *args, **kwargs):
        raise UserError(f"language 'lb' is not in the built-in corpus; languages: {', '.join(['xx'] * 80)}\nmore")

    monkeypatch.setattr(transfer_lib.corpus, "load_split", refuse)
    monkeypatch.setattr(related_languages, "RELATED", {**related_languages.RELATED, "de": ("lb",)})
    config = ml_collections.ConfigDict({"pair": "en-nl", "corpus": multiway, "data_dir": ""})
    related, note = transfer_lib.auto_related(config, "en-de")
    assert related == () and "lb (not in " in note and "language 'lb' is not in the built-in corpus;" in note
    assert note.count("xx") < 10 and "more" not in note


def test_auto_drops_a_relative_that_cannot_be_mixed_and_keeps_the_parents_data(multiway_parent, multiway, tmp_path,
                                                                             monkeypatch, capsys):
    monkeypatch.setattr(transfer_lib, "RELATED_MIN_PAIRS", 100)
    check_mix = mixing.check_mix

    def refuse_nl(config, model_class):
        if "nl" in config.mix.pair:
            raise UserError(f"mix.pair={config.mix.pair}: refused here")
        check_mix(config, model_class)

    monkeypatch.setattr(mixing, "check_mix", refuse_nl)
    steps = ["train.steps=1", "train.eval_every_steps=1"]
    transfer_lib.transfer(multiway_parent, tmp_path / "child", "en-af", overrides=steps)
    child = json.loads((tmp_path / "child" / "transfer.json").read_text())["child"]
    assert child["mix"]["pair"] == "en-de" and child["mix_related"] == []
    assert child["mix_related_note"] == "no related language mixed in: mix.pair=en-de,nl: refused here"
    assert "Not mixing in nl: mix.pair=en-de,nl: refused here" in capsys.readouterr().out
    # --mix_related=none: the parent's pair alone, without looking for a relative.
    transfer_lib.transfer(multiway_parent, tmp_path / "none", "en-af", mix_related=["none"], overrides=steps)
    child = json.loads((tmp_path / "none" / "transfer.json").read_text())["child"]
    assert child["mix"]["pair"] == "en-de" and child["mix_related"] == [] and child["mix_related_note"] is None


def test_a_child_resumed_keeps_the_languages_it_started_with(multiway_parent, tmp_path, monkeypatch):
    # A child started without relatives (before auto, or with none) resumes without them: its
    # tokenizer has no tag for them.
    monkeypatch.setattr(transfer_lib, "RELATED_MIN_PAIRS", 100)
    child_dir = tmp_path / "child"
    transfer_lib.transfer(multiway_parent, child_dir, "en-af", mix_related=["none"],
                          overrides=["train.steps=1", "train.eval_every_steps=1"])
    metrics = transfer_lib.transfer(multiway_parent, child_dir, "en-af",
                                    overrides=["train.steps=2", "train.eval_every_steps=1"])
    child = json.loads((child_dir / "transfer.json").read_text())["child"]
    assert metrics["step"] == 2 and child["mix"]["pair"] == "en-de" and child["mix_related"] == []


@pytest.mark.parametrize("related, options, message", [
    (["auto", "nl"], {}, "--mix_related=auto,nl: auto stands alone"),
    (["none", "nl"], {}, "--mix_related=none,nl: none stands alone"),
    (["auto"], {"mix_parent_data": 1.5}, r"mix.ratio=1.5 must be in \[0, 1\)"),
])
def test_a_bad_mix_flag_is_refused_before_anything_is_written(multiway_parent, tmp_path, related, options,
                                                                message, capsys):
    with pytest.raises(UserError, match=message):
        transfer_lib.transfer(multiway_parent, tmp_path / "child", "en-af", mix_related=related, **options)
    assert not (tmp_path / "child").exists() and "Not mixing" not in capsys.readouterr().out


def test_a_set_mix_override_replaces_autos_choice_and_transfer_json_says_so(multiway_parent, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer_lib, "RELATED_MIN_PAIRS", 100)
    transfer_lib.transfer(multiway_parent, tmp_path / "child", "en-af",
                          overrides=["mix.pair=en-de", "train.steps=1", "train.eval_every_steps=1"])
    child = json.loads((tmp_path / "child" / "transfer.json").read_text())["child"]
    assert child["mix"]["pair"] == "en-de" and child["mix_related"] == []
    assert child["mix_related_note"] == "no related language mixed in: --set=mix.* replaced the mix"


def test_a_tsv_parent_corpus_has_no_relatives(parent_dir):
    # A tsv file holds one pair, whatever languages it is asked for: nothing is looked up there.
    config = config_lib.from_json((pathlib.Path(parent_dir) / "config.json").read_text())
    related, note = transfer_lib.auto_related(config, "en-nl")
    assert related == () and "holds one pair" in note
