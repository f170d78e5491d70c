"""SentencePiece tokenizers: exact round-trips of any text, special ids, save/load, added pieces."""

import importlib.util
import itertools

import pytest
import tensorflow as tf

from xling_zoo.config import CONFIG_DIR
from xling_zoo.data import tokenizer as tok
from xling_zoo.errors import UserError

# A made-up English/German corpus: no CJK or emoji, so those go through byte fallback.
ENGLISH = [f"{s} {v} {o}" for s, v, o in itertools.product(
    ["The cat", "A dog", "My friend", "The teacher", "Our neighbour", "Her brother", "The farmer"],
    ["sees", "likes", "finds", "buys", "paints", "sells", "forgets"],
    ["the house.", "a red book.", "the old car!", "two apples?", "the garden", "my umbrella",
     "three yellow bicycles"])]
GERMAN = [f"{s} {v} {o}" for s, v, o in itertools.product(
    ["Die Katze", "Ein Hund", "Mein Freund", "Der Lehrer", "Unser Nachbar", "Ihr Bruder", "Der Bauer"],
    ["sieht", "mag", "findet", "kauft", "malt", "verkauft", "vergisst"],
    ["das Haus.", "ein rotes Buch.", "das alte Auto!", "zwei Äpfel?", "den Garten an der Straße",
     "meinen Regenschirm", "drei gelbe Fahrräder"])]
VOCAB_SIZE = 340
# Each side alone supports a smaller vocabulary (SentencePiece refuses more than the data holds).
SEPARATE_VOCAB_SIZE = 310

ROUND_TRIP = [
    "ÄÖÜß, é, ł — Straße",
    "中文 and 日本語",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈",
    "%(name)s has {0} files, %s left",
    "<b>Bold</b> &amp; <a href=\"x\">link</a>",
    "<2de> is text here, not a tag",
    "two  spaces inside, one trailing ",
    "tab\tand\nnewline",
    "ﬁ ½ Å (not NFKC-normalised)",
    "",
]


def tokenizer_config(**overrides):
    """The real config's tokenizer section (configs/common.py), shrunk to the tiny corpus."""
    spec = importlib.util.spec_from_file_location("xling_zoo_config_common", CONFIG_DIR / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    config = common.get_common_config().tokenizer
    config.vocab_size = VOCAB_SIZE
    config.update(overrides)
    return config


def examples():
    return [{"source": s, "target": t, "source_language": "en"} for s, t in zip(ENGLISH, GERMAN)]


@pytest.fixture(scope="module")
def joint():
    return tok.SubwordTokenizer.train(ENGLISH + GERMAN, vocab_size=VOCAB_SIZE,
                                      language_tags=[tok.language_tag("en"), tok.language_tag("de")])


def round_trip(tokenizer, texts):
    ids = tokenizer.tokenize(tf.constant(texts))
    # Padded dense ids, as a model's decoder would produce them.
    return [t.decode("utf-8") for t in tokenizer.detokenize(ids.to_tensor()).numpy()]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_any_text_round_trips_exactly(joint, model_type):
    tokenizer = joint if model_type == "unigram" else tok.SubwordTokenizer.train(
        ENGLISH + GERMAN, vocab_size=VOCAB_SIZE, model_type="bpe")
    assert round_trip(tokenizer, ROUND_TRIP) == ROUND_TRIP
    # The one exception: tensorflow-text's SentencePiece drops leading whitespace when decoding.
    assert round_trip(tokenizer, ["  leading spaces", "   "]) == ["leading spaces", ""]
    # Characters outside the corpus are bytes, never <unk>.
    assert tok.UNK_ID not in tokenizer.tokenize(tf.constant(ROUND_TRIP)).flat_values.numpy()


def test_special_ids_and_language_tags(joint):
    assert joint.pieces()[:6] == ["<pad>", "<unk>", "<s>", "</s>", "<2en>", "<2de>"]
    assert (tok.PAD_ID, tok.UNK_ID, tok.BOS_ID, tok.EOS_ID) == (0, 1, 2, 3)
    assert joint.language_tag_id("de") == 5 and joint.piece_to_id("<2de>") == 5
    assert joint.id_to_piece(4) == "<2en>"
    assert joint.piece_to_id("no-such-piece") == tok.UNK_ID
    with pytest.raises(UserError, match="<2fr>"):
        joint.language_tag_id("fr")


def test_detokenize_cuts_at_eos_and_drops_specials(joint):
    pieces = joint.tokenize(tf.constant(["Die Katze mag das Haus."]))[0].numpy().tolist()
    ids = tf.constant([[5, tok.BOS_ID] + pieces + [tok.EOS_ID] + pieces + [tok.PAD_ID] * 3])
    assert joint.detokenize(ids).numpy().tolist() == [b"Die Katze mag das Haus."]


def test_usable_in_tf_data_and_saved_model(joint, tmp_path):
    dataset = tf.data.Dataset.from_tensor_slices(ENGLISH[:8]).batch(4).map(joint.tokenize)
    assert [row for batch in dataset for row in joint.detokenize(batch).numpy()] == [
        s.encode() for s in ENGLISH[:8]]

    module = tf.Module()
    module.tokenizer = joint
    module.round_trip = tf.function(
        lambda text: joint.detokenize(joint.tokenize(text).to_tensor()),
        input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "saved"))
    del module
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    texts = ROUND_TRIP[:4]
    assert restored.round_trip(tf.constant(texts)).numpy().tolist() == [t.encode() for t in texts]


def test_training_is_deterministic(joint):
    again = tok.SubwordTokenizer.train(ENGLISH + GERMAN, vocab_size=VOCAB_SIZE,
                                       language_tags=["<2en>", "<2de>"])
    assert again.model_proto == joint.model_proto


def test_vocab_size_too_large_is_a_user_error():
    with pytest.raises(UserError, match="lower tokenizer.vocab_size"):
        tok.SubwordTokenizer.train(ENGLISH, vocab_size=5000)
    with pytest.raises(UserError, match="model_type"):
        tok.SubwordTokenizer.train(ENGLISH, vocab_size=300, model_type="wordpiece")


@pytest.mark.parametrize("joint_vocab", [True, False])
def test_train_tokenizers_save_and_load(tmp_path, joint_vocab):
    config = tokenizer_config(joint=joint_vocab, vocab_size=VOCAB_SIZE if joint_vocab else SEPARATE_VOCAB_SIZE)
    tokenizers = tok.train_tokenizers(examples(), config, ["en", "de"])
    assert tokenizers.joint == joint_vocab
    assert (tokenizers.source is tokenizers.target) == joint_vocab
    if not joint_vocab:
        # Each side has its own vocabulary, with the same reserved ids and tags.
        assert tokenizers.source.pieces() != tokenizers.target.pieces()
        german = tf.constant(GERMAN)
        assert (tokenizers.target.tokenize(german).flat_values.shape[0]
                < tokenizers.source.tokenize(german).flat_values.shape[0])
    for side in (tokenizers.source, tokenizers.target):
        assert side.language_tag_id("en") == 4 and side.language_tag_id("de") == 5

    tokenizers.save(tmp_path / "tokenizers")
    loaded = tok.Tokenizers.load(tmp_path / "tokenizers")
    assert loaded.joint == joint_vocab and (loaded.source is loaded.target) == joint_vocab
    assert loaded.source.model_proto == tokenizers.source.model_proto
    assert loaded.target.model_proto == tokenizers.target.model_proto
    assert round_trip(loaded.target, ROUND_TRIP) == ROUND_TRIP


def test_load_errors_name_the_path(tmp_path, joint):
    with pytest.raises(UserError, match="nowhere"):
        tok.Tokenizers.load(tmp_path / "nowhere")
    with pytest.raises(UserError, match="does not exist"):
        tok.SubwordTokenizer.load(tmp_path / "nowhere.model")
    tok.Tokenizers(joint).save(tmp_path / "broken")
    (tmp_path / "broken" / "spm.model").write_bytes(b"not a model")
    with pytest.raises(UserError, match="broken"):
        tok.Tokenizers.load(tmp_path / "broken")


def test_add_pieces_appends_without_shifting_ids(joint):
    grown = joint.add_pieces(["<2fr>", "<2de>", "@@placeholder@@"])
    # <2de> already exists and is skipped; the rest follows the old vocabulary.
    assert grown.vocab_size == joint.vocab_size + 2
    assert grown.pieces()[: joint.vocab_size] == joint.pieces()
    assert grown.language_tag_id("fr") == joint.vocab_size
    assert grown.piece_to_id("@@placeholder@@") == joint.vocab_size + 1
    text = tf.constant(ROUND_TRIP)
    assert grown.tokenize(text).to_list() == joint.tokenize(text).to_list()
    # The new tag is a control symbol like the trained ones: detokenize drops it.
    ids = tf.constant([[joint.vocab_size] + joint.tokenize(["Ein Hund"])[0].numpy().tolist()])
    assert grown.detokenize(ids).numpy().tolist() == [b"Ein Hund"]


def test_extend_needs_a_unigram_model(joint):
    bpe = tok.SubwordTokenizer.train(ENGLISH + GERMAN, vocab_size=VOCAB_SIZE, model_type="bpe")
    with pytest.raises(UserError, match="extending a vocabulary needs a unigram SentencePiece model.*--vocab=child"):
        bpe.extend_with(joint)
    # Extending with a vocabulary of the same text adds nothing: it spells nothing as bytes.
    same, added = joint.extend_with(joint)
    assert added == [] and same.pieces() == joint.pieces()
