import keras
import numpy as np
import pytest
import tensorflow as tf

from xling_zoo import config as config_lib
from xling_zoo import decode
from xling_zoo.data.corpus import Pair
from xling_zoo.errors import UserError
from xling_zoo.models.base import VocabInfo
from xling_zoo.models.transformer import TransformerSeq2Seq
from xling_zoo.registry import get_model

from tests.test_decode import EosAt

VOCAB = VocabInfo(source_vocab_size=40, target_vocab_size=50, joint=False)
JOINT_VOCAB = VocabInfo(source_vocab_size=50, target_vocab_size=50, joint=True)
ENCODER_IDS = tf.constant([[5, 6, 7, 3, 0], [8, 9, 3, 0, 0]])
DECODER_IDS = tf.constant([[2, 10, 11, 12], [2, 13, 0, 0]])
TINY = dict(num_encoder_layers=2, num_decoder_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
            max_length=16, dropout=0.0)


def tiny_model(vocab=VOCAB, **overrides):
    """configs/transformer.py, shrunk."""
    config = config_lib.load_config("transformer").model
    for key, value in {**TINY, "tie_embeddings": vocab.joint, **overrides}.items():
        config[key] = value
    TransformerSeq2Seq.validate_config(config, vocab, Pair.parse("en-de"))
    return TransformerSeq2Seq.from_config(config, vocab)


@pytest.mark.parametrize("config_file", ["transformer.py", "transformer_tiny.py", "transformer_base.py"])
def test_config_files_build(config_file):
    config = config_lib.load_config_file(config_lib.CONFIG_DIR / config_file)
    assert config.model_name == "transformer"
    # Real layer sizes; a tiny vocabulary keeps the embeddings small.
    vocab = VocabInfo(source_vocab_size=64, target_vocab_size=64, joint=config.tokenizer.joint)
    model_cls = get_model(config.model_name)
    model_cls.validate_config(config.model, vocab, Pair.parse(config.pair))
    model = model_cls.from_config(config.model, vocab)
    logits = model(model.dummy_inputs())
    assert logits.shape == (1, 3, 64)
    assert len(model.encoder_layers) == config.model.num_encoder_layers


@pytest.mark.parametrize("options", [
    dict(normalize_first=False),
    dict(normalize_first=True),
    # The shipped configs' dropout: Keras then takes its non-fused attention path.
    dict(normalize_first=True, dropout=0.1),
])
@pytest.mark.parametrize("vocab", [VOCAB, JOINT_VOCAB], ids=["untied", "tied"])
@pytest.mark.parametrize("static_shapes", [True, False], ids=["preallocated_cache", "growing_cache"])
def test_cached_steps_equal_teacher_forcing(options, vocab, static_shapes):
    model = tiny_model(vocab, **options)
    full = model({"encoder_token_ids": ENCODER_IDS, "decoder_token_ids": DECODER_IDS})
    assert full.shape == (2, 4, vocab.target_vocab_size) and full.dtype == tf.float32
    state = model.encode(ENCODER_IDS, 6, static_shapes)
    steps = []
    for i in range(4):
        logits, state = model.decode_step(DECODER_IDS[:, i], state, tf.constant(i))
        steps.append(logits)
    steps = tf.stack(steps, 1).numpy()
    np.testing.assert_allclose(steps[0], full[0], atol=1e-4)
    np.testing.assert_allclose(steps[1, :2], full[1, :2], atol=1e-4)  # Padding positions are not compared.


@pytest.mark.parametrize("dropout", [0.0, 0.1], ids=["fused_attention", "einsum_attention"])
@pytest.mark.parametrize("static_shapes", [True, False], ids=["preallocated_cache", "growing_cache"])
def test_cached_steps_equal_teacher_forcing_in_mixed_bfloat16(dropout, static_shapes):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = tiny_model(JOINT_VOCAB, normalize_first=True, dropout=dropout)
        full = model({"encoder_token_ids": ENCODER_IDS, "decoder_token_ids": DECODER_IDS})
        state = model.encode(ENCODER_IDS, 6, static_shapes)
        weights = model.decoding_weights()
        steps = []
        for i in range(4):
            logits, state = model.decode_step(DECODER_IDS[:, i], state, tf.constant(i), weights)
            steps.append(logits)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    steps = tf.stack(steps, 1).numpy()
    # bfloat16 keeps ~3 significant digits; the cached step follows the attention path Keras took.
    np.testing.assert_allclose(steps[0], full[0], atol=0.02)
    np.testing.assert_allclose(steps[1, :2], full[1, :2], atol=0.02)


@pytest.mark.parametrize("vocab", [VOCAB, JOINT_VOCAB], ids=["untied", "tied"])
def test_decoding_weights_give_the_same_logits(vocab):
    model = tiny_model(vocab)
    state = model.encode(ENCODER_IDS, 6)
    weights = model.decoding_weights()
    assert ("output_kernel" in weights) == vocab.joint  # Only a tied output matrix is transposed.
    plain, _ = model.decode_step(DECODER_IDS[:, 0], state, tf.constant(0))
    with_weights, _ = model.decode_step(DECODER_IDS[:, 0], state, tf.constant(0), weights)
    np.testing.assert_allclose(with_weights, plain, atol=1e-5)


def test_state_is_batch_first():
    model = tiny_model()
    state = model.encode(ENCODER_IDS, 6)
    head_dim = TINY["hidden_dim"] // TINY["num_heads"]
    assert state["cross_bias"].shape == (2, 1, 1, 5)
    for i in range(TINY["num_decoder_layers"]):
        for name in ("self_key", "self_value"):
            assert state[f"{name}_{i}"].shape == (2, TINY["num_heads"], 6, head_dim)
        for name in ("cross_key", "cross_value"):
            assert state[f"{name}_{i}"].shape == (2, TINY["num_heads"], 5, head_dim)
    assert state["cache_positions"].shape == (2, 1, 1, 6)
    # Without static shapes the self-attention caches start empty and grow, and the decoding loop
    # lets their length axis change.
    growing = model.encode(ENCODER_IDS, 6, static_shapes=False)
    assert "cache_positions" not in growing
    assert growing["self_key_0"].shape == (2, TINY["num_heads"], 0, head_dim)
    assert model.decoding_state_shapes(growing)["self_key_0"].as_list() == [None, TINY["num_heads"], None, head_dim]
    assert model.decoding_state_shapes(state)["self_key_0"].as_list() == [None, TINY["num_heads"], 6, head_dim]


def test_compiled_step_with_symbolic_index():
    model = tiny_model()
    state = model.encode(ENCODER_IDS, 6)
    eager, _ = model.decode_step(DECODER_IDS[:, 0], state, tf.constant(0))
    compiled = tf.function(model.decode_step, jit_compile=True)
    logits, new_state = compiled(DECODER_IDS[:, 0], state, tf.constant(0))
    np.testing.assert_allclose(logits, eager, atol=1e-5)
    assert set(new_state) == set(state)


@pytest.mark.parametrize("vocab", [VOCAB, JOINT_VOCAB], ids=["untied", "tied"])
def test_greedy_and_beam_search_run_on_the_cache(vocab):
    keras.utils.set_random_seed(0)
    model = tiny_model(vocab)
    ids = tf.constant(np.random.RandomState(0).randint(4, 40, size=(3, 6)), tf.int32)
    cached = tf.function(lambda x: decode.greedy_search(model, x, 8))(ids)
    uncached = tf.function(lambda x: decode.uncached_greedy_search(model, x, 8))(ids)
    np.testing.assert_array_equal(cached.numpy(), uncached.numpy())
    beam_one = decode.beam_search(model, ids, 8, beam_size=1, length_penalty=0.0)
    np.testing.assert_array_equal(cached.numpy(), beam_one.numpy())
    assert decode.beam_search(model, ids, 8, beam_size=3).shape[0] == 3


@pytest.mark.parametrize("beam_size,length_penalty", [(1, 0.6), (3, 0.6), (4, 0.0), (4, 1.0)])
def test_growing_and_preallocated_caches_decode_the_same(beam_size, length_penalty):
    """Growing caches (what TF Serving runs) and preallocated ones (what XLA needs) give the same
    tokens, compiled with XLA or not, on sentences that stop at different steps."""
    keras.utils.set_random_seed(1)
    model = EosAt(tiny_model(JOINT_VOCAB, normalize_first=True))
    ids = tf.constant(np.random.RandomState(1).randint(4, 50, size=(5, 7)), tf.int32)

    def run(static_shapes, jit_compile):
        fn = lambda x: decode.decode(model, x, 12, beam_size, length_penalty, static_shapes=static_shapes)  # noqa: E731
        return tf.function(fn, jit_compile=jit_compile)(ids).numpy()

    growing = run(static_shapes=False, jit_compile=False)
    assert len({int((row != 0).sum()) for row in growing}) > 1  # Sentences end at different steps.
    np.testing.assert_array_equal(growing, run(static_shapes=True, jit_compile=False))
    np.testing.assert_array_equal(growing, run(static_shapes=True, jit_compile=True))


@pytest.mark.parametrize("vocab", [VOCAB, JOINT_VOCAB], ids=["untied", "tied"])
def test_names_vocab_axes_and_layer_groups(vocab):
    model = tiny_model(vocab, normalize_first=True)
    model(model.dummy_inputs())
    paths = {v.path: v for v in model.weights}
    axes = model.vocab_axes()
    for path, (side, axis) in axes.items():
        size = vocab.source_vocab_size if side == "source" else vocab.target_vocab_size
        assert paths[path].shape[axis] == size
    layer_names = {layer.name for layer in model.layers}
    groups = model.layer_groups()
    for group in groups.values():
        assert set(group) <= layer_names
    assert groups["head"] == ["logits"]
    assert groups["encoder"][:2] == ["encoder_layer_0", "encoder_layer_1"]
    assert groups["decoder"][:2] == ["decoder_layer_0", "decoder_layer_1"]
    if vocab.joint:
        assert model.source_embedding is model.target_embedding
        assert len(axes) == 2  # The shared matrix and the output bias.
    else:
        assert {"source_embedding", "target_embedding"} <= set(groups["embeddings"])
        assert len(axes) == 4
    assert len({id(v) for v in model.trainable_variables}) == len(model.trainable_variables)


def test_get_config_round_trip():
    model = tiny_model(JOINT_VOCAB)
    clone = TransformerSeq2Seq.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


def test_bad_configs_are_clear_errors():
    config = config_lib.load_config("transformer").model
    en_de = Pair.parse("en-de")
    config.num_heads = 5
    with pytest.raises(UserError, match="num_heads=5 must divide"):
        TransformerSeq2Seq.validate_config(config, JOINT_VOCAB, en_de)
    config.num_heads = 4
    with pytest.raises(UserError, match="joint vocabulary"):
        TransformerSeq2Seq.validate_config(config, VOCAB, en_de)
    with pytest.raises(UserError, match="one source language"):
        TransformerSeq2Seq.validate_config(config, JOINT_VOCAB, Pair.parse("de,fr-en"))
    with pytest.raises(UserError, match="max_length"):
        tiny_model().encode(ENCODER_IDS, 17)
