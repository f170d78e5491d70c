"""The tf.data pipeline: batch dict contract, special tokens, bucketing, overlength, sharding, seeds."""

import importlib.util
import random

import numpy as np
import pytest
import tensorflow as tf

from xling_zoo.config import CONFIG_DIR
from xling_zoo.data import pipeline
from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizers
from xling_zoo.errors import UserError

ENGLISH = "one two three four five six seven eight".split()
GERMAN = "eins zwei drei vier fünf sechs sieben acht".split()
SOURCE_LANGUAGES = ["en", "fr"]
MAX_LENGTH = 8
TOKENS_PER_BATCH = 32


def make_pairs(n=240, seed=0):
    """n distinct counting sentences of 1 to 7 words (a word is one piece once trained)."""
    rng = random.Random(seed)
    pairs = {}
    while len(pairs) < n:
        words = [rng.randrange(len(ENGLISH)) for _ in range(rng.randint(1, 7))]
        pairs[" ".join(ENGLISH[w] for w in words)] = " ".join(GERMAN[w] for w in words)
    return sorted(pairs.items())


PAIRS = make_pairs()
# Every third pair is labelled French, to exercise source_language_id.
LANGUAGES = ["fr" if i % 3 == 0 else "en" for i in range(len(PAIRS))]


def examples():
    return tf.data.Dataset.from_tensor_slices({
        "source": [s for s, _ in PAIRS], "target": [t for _, t in PAIRS], "source_language": LANGUAGES})


def common_config():
    spec = importlib.util.spec_from_file_location("xling_zoo_config_common", CONFIG_DIR / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common.get_common_config()


def data_config(**overrides):
    """The real config's data section, shrunk to the tiny corpus."""
    config = common_config().data
    config.update(dict(max_length=MAX_LENGTH, bucket_boundaries=(4, 6), tokens_per_batch=TOKENS_PER_BATCH,
                       shuffle_buffer=1000), **overrides)
    return config


@pytest.fixture(scope="module")
def tokenizers():
    config = common_config().tokenizer
    config.vocab_size = 300
    examples = [{"source": s, "target": t, "source_language": "en"} for s, t in PAIRS]
    return train_tokenizers(examples, config, ["en", "fr", "de"])


def make(tokenizers, training=False, **kwargs):
    config = kwargs.pop("config", None) or data_config()
    return pipeline.make_dataset(kwargs.pop("examples", None) or examples(), tokenizers, config,
                                 target_language="de", source_languages=SOURCE_LANGUAGES,
                                 training=training, **kwargs)


def rows(dataset, tokenizers):
    """{source sentence: (encoder, decoder, target, language id) without padding}, and the batches."""
    found, batches = {}, []
    for batch in dataset:
        batch = {key: value.numpy() for key, value in batch.items()}
        batches.append(batch)
        sources = tokenizers.source.detokenize(batch["encoder_token_ids"]).numpy()
        for i, source in enumerate(sources):
            enc, dec, tgt = (batch[k][i] for k in ("encoder_token_ids", "decoder_token_ids", "target_token_ids"))
            found[source.decode()] = (enc[enc != PAD_ID], dec[dec != PAD_ID], tgt[tgt != PAD_ID],
                                      batch["source_language_id"][i])
    return found, batches


def expected_overlength(tokenizers):
    """Pairs longer than MAX_LENGTH, counted independently of the pipeline."""
    sources = tokenizers.source.tokenize([s for s, _ in PAIRS]).row_lengths().numpy() + 2  # tag, eos
    targets = tokenizers.target.tokenize([t for _, t in PAIRS]).row_lengths().numpy() + 1  # bos|eos
    return {PAIRS[i][0] for i in np.flatnonzero((sources > MAX_LENGTH) | (targets > MAX_LENGTH))}


def test_batches_follow_the_contract(tokenizers):
    batch = next(iter(make(tokenizers, training=True)))
    assert set(batch) == {"encoder_token_ids", "decoder_token_ids", "target_token_ids", "source_language_id"}
    assert all(value.dtype == tf.int32 for value in batch.values())
    size, length = batch["encoder_token_ids"].shape
    assert length in (4, 6, MAX_LENGTH)
    assert batch["decoder_token_ids"].shape == batch["target_token_ids"].shape == (size, length)
    assert batch["source_language_id"].shape == (size,)


def test_special_tokens_frame_the_pieces(tokenizers):
    found, _ = rows(make(tokenizers), tokenizers)
    tag = tokenizers.source.language_tag_id("de")
    assert tag == 6
    kept = [(i, s, t) for i, (s, t) in enumerate(PAIRS) if s in found]
    assert kept
    for i, source, target in kept:
        enc, dec, tgt, language_id = found[source]
        source_pieces = tokenizers.source.tokenize([source])[0].numpy().tolist()
        target_pieces = tokenizers.target.tokenize([target])[0].numpy().tolist()
        assert enc.tolist() == [tag] + source_pieces + [EOS_ID]
        assert dec.tolist() == [BOS_ID] + target_pieces
        assert tgt.tolist() == target_pieces + [EOS_ID]
        assert language_id == SOURCE_LANGUAGES.index(LANGUAGES[i])


def test_no_tag_when_disabled(tokenizers):
    found, _ = rows(make(tokenizers, config=data_config(target_language_tag=False)), tokenizers)
    source = next(iter(found))
    assert found[source][0].tolist() == tokenizers.source.tokenize([source])[0].numpy().tolist() + [EOS_ID]


def test_every_batch_fits_its_bucket_and_the_token_budget(tokenizers):
    _, batches = rows(make(tokenizers, training=True), tokenizers)
    previous_bucket = {4: 0, 6: 4, MAX_LENGTH: 6}
    for batch in batches:
        size, length = batch["encoder_token_ids"].shape
        assert size * length <= TOKENS_PER_BATCH
        longer = np.maximum((batch["encoder_token_ids"] != PAD_ID).sum(1),
                            (batch["target_token_ids"] != PAD_ID).sum(1))
        # Each pair sits in the smallest bucket that holds its longer side.
        assert np.all(longer <= length) and np.all(longer > previous_bucket[length])


def test_overlength_pairs_are_dropped_and_counted(tokenizers):
    overlength = expected_overlength(tokenizers)
    # The corpus must exercise both outcomes.
    assert 0 < len(overlength) < len(PAIRS) // 2
    report = pipeline.length_report(examples(), tokenizers, data_config(), target_language="de")
    assert report == {"examples": len(PAIRS), "overlength": len(overlength), "action": "drop"}
    found, _ = rows(make(tokenizers, training=True), tokenizers)
    assert set(found) == {s for s, _ in PAIRS} - overlength


def test_overlength_pairs_are_truncated_keeping_eos(tokenizers):
    overlength = expected_overlength(tokenizers)
    config = data_config(overlength="truncate")
    assert pipeline.length_report(examples(), tokenizers, config, target_language="de")["action"] == "truncate"
    found, batches = rows(make(tokenizers, config=config), tokenizers)
    assert sum(len(b["source_language_id"]) for b in batches) == len(PAIRS)
    assert {s for s, _ in PAIRS} - overlength <= set(found)
    for batch in batches:
        for name in ("encoder_token_ids", "target_token_ids"):
            ids = batch[name]
            lengths = (ids != PAD_ID).sum(1)
            assert lengths.max() <= MAX_LENGTH
            assert np.all(ids[np.arange(len(ids)), lengths - 1] == EOS_ID)
        assert np.all(batch["decoder_token_ids"][:, 0] == BOS_ID)


def test_input_context_shards_into_disjoint_halves_with_a_per_replica_budget(tokenizers):
    config = data_config(max_length=16, bucket_boundaries=(8,))
    halves = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        found, batches = rows(make(tokenizers, training=True, config=config, input_context=context), tokenizers)
        assert all(np.prod(b["encoder_token_ids"].shape) <= TOKENS_PER_BATCH // 2 for b in batches)
        halves.append(set(found))
    assert not halves[0] & halves[1]
    assert halves[0] | halves[1] == {s for s, _ in PAIRS}
    assert abs(len(halves[0]) - len(halves[1])) <= 1


def order(dataset):
    return [b["encoder_token_ids"].numpy().tolist() for b in dataset]


def test_shuffling_is_seeded_and_validation_order_fixed(tokenizers):
    first = make(tokenizers, training=True, seed=3)
    assert order(first) == order(make(tokenizers, training=True, seed=3))
    assert order(first) != order(make(tokenizers, training=True, seed=4))
    # Every pass is shuffled anew.
    assert order(first) != order(first)
    assert order(make(tokenizers)) == order(make(tokenizers))


def test_unknown_source_language_is_an_error(tokenizers):
    german = examples().map(lambda e: dict(e, source_language=tf.constant("de")))
    with pytest.raises(tf.errors.InvalidArgumentError, match="source languages"):
        next(iter(make(tokenizers, examples=german)))


def test_encode_source_matches_training_and_truncates(tokenizers):
    tag = tokenizers.source.language_tag_id("de")
    long_source = " ".join(["seven"] * 20)
    ids = pipeline.encode_source(tf.constant(["two one", long_source]), tokenizers, data_config(), "de")
    assert ids[0].numpy().tolist() == [tag] + tokenizers.source.tokenize(["two one"])[0].numpy().tolist() + [EOS_ID]
    assert len(ids[1]) == MAX_LENGTH and ids[1][0] == tag and ids[1][-1] == EOS_ID


def test_config_mistakes_are_user_errors(tokenizers):
    with pytest.raises(UserError, match="data.overlength"):
        make(tokenizers, config=data_config(overlength="cut"))
    with pytest.raises(UserError, match="tokens_per_batch"):
        make(tokenizers, config=data_config(tokens_per_batch=MAX_LENGTH - 1))
    with pytest.raises(UserError, match="<2xx>"):
        pipeline.encode_source(tf.constant(["one"]), tokenizers, data_config(), "xx")


def real_tokens(batches):
    """{key: number of non-padding ids} over batches of numpy dicts."""
    keys = ("encoder_token_ids", "decoder_token_ids", "target_token_ids")
    return {key: int(sum((b[key] != PAD_ID).sum() for b in batches)) for key in keys}


def without_padding_rows(batch):
    real = (batch["encoder_token_ids"] != PAD_ID).any(axis=1)
    return {key: value[real] for key, value in batch.items()}


def test_batch_shapes_are_the_token_budget_per_bucket():
    assert pipeline.batch_shapes(data_config()) == [(8, 4), (5, 6), (4, MAX_LENGTH)]
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    assert pipeline.batch_shapes(data_config(), context) == [(4, 4), (2, 6), (2, MAX_LENGTH)]


@pytest.mark.parametrize("training", [True, False])
def test_static_shapes_give_every_batch_its_bucket_shape_and_keep_every_example(tokenizers, training):
    shapes = pipeline.batch_shapes(data_config())
    dynamic = make(tokenizers, training=training, seed=5)
    static = make(tokenizers, training=training, seed=5, static_shapes=True)
    assert all(spec.shape.rank == (1 if key == "source_language_id" else 2)
               for key, spec in static.element_spec.items())
    _, dynamic_batches = rows(dynamic, tokenizers)
    found, batches = rows(static, tokenizers)
    seen = set()
    for batch in batches:
        size, length = batch["encoder_token_ids"].shape
        seen.add((size, length))
        assert (size, length) in shapes
        assert batch["decoder_token_ids"].shape == batch["target_token_ids"].shape == (size, length)
        assert batch["source_language_id"].shape == (size,)
    assert seen == set(shapes)  # The corpus fills every bucket.
    # Padding rows were added (the tiny corpus leaves a partial last batch) and are padding in every key.
    padded_rows = sum(len(b["source_language_id"]) for b in batches) - sum(
        len(b["source_language_id"]) for b in dynamic_batches)
    assert padded_rows > 0
    for batch in batches:
        padding = ~(batch["encoder_token_ids"] != PAD_ID).any(axis=1)
        for key, value in batch.items():
            assert not value[padding].any(), key
    # Nothing real is lost or changed: the same pairs, tokens and batches as without static shapes.
    assert real_tokens(batches) == real_tokens(dynamic_batches)
    assert set(found) - {""} == {s for s, _ in PAIRS} - expected_overlength(tokenizers)  # "": padding rows
    assert len(batches) == len(dynamic_batches)
    for static_batch, dynamic_batch in zip(batches, dynamic_batches):
        real = without_padding_rows(static_batch)
        assert all(np.array_equal(real[key], dynamic_batch[key]) for key in real)


def test_static_shapes_with_one_bucket_define_the_element_spec(tokenizers):
    config = data_config(bucket_boundaries=())
    (size, length), = pipeline.batch_shapes(config)
    static = make(tokenizers, config=config, training=True, static_shapes=True)
    shapes = {key: tuple(spec.shape) for key, spec in static.element_spec.items()}
    assert shapes == {"encoder_token_ids": (size, length), "decoder_token_ids": (size, length),
                      "target_token_ids": (size, length), "source_language_id": (size,)}
    _, batches = rows(static, tokenizers)
    assert {b["encoder_token_ids"].shape for b in batches} == {(size, length)}
    _, dynamic_batches = rows(make(tokenizers, config=config, training=True), tokenizers)
    assert real_tokens(batches) == real_tokens(dynamic_batches)
    # The default pipeline leaves its shapes open (its last batch is smaller).
    assert make(tokenizers, config=config).element_spec["encoder_token_ids"].shape.as_list() == [None, None]
