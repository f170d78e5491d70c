import numpy as np
import pytest
import tensorflow as tf

from xling_zoo import config as config_lib
from xling_zoo.data.corpus import Pair
from xling_zoo.errors import UserError
from xling_zoo.models.base import VocabInfo
from xling_zoo.models.lstm_seq2seq import LSTMSeq2Seq

VOCAB = VocabInfo(source_vocab_size=40, target_vocab_size=50)
ENCODER_IDS = tf.constant([[5, 6, 7, 3], [8, 9, 3, 0]])
DECODER_IDS = tf.constant([[2, 10, 11, 12], [2, 13, 0, 0]])


def tiny_model(static_shapes=False, **overrides):
    config = config_lib.load_config("lstm_seq2seq").model
    for key, value in dict(embedding_dim=8, units=8, dropout=0.0, **overrides).items():
        config[key] = value
    return LSTMSeq2Seq.from_config(config, VOCAB, static_shapes=static_shapes)


def test_plain_options_are_the_classic_recipe():
    model = tiny_model(bidirectional=False, attention=False, num_layers=1)
    model({"encoder_token_ids": ENCODER_IDS, "decoder_token_ids": DECODER_IDS})
    names = {layer.name for layer in model.layers}
    assert names == {"source_embedding", "target_embedding", "encoder_lstm_0", "decoder_lstm_0", "dropout", "logits"}


@pytest.mark.parametrize("options", [
    dict(bidirectional=False, attention=False, num_layers=1),
    dict(bidirectional=True, attention=True, num_layers=2),
])
def test_cached_steps_equal_teacher_forcing(options):
    model = tiny_model(**options)
    full = model({"encoder_token_ids": ENCODER_IDS, "decoder_token_ids": DECODER_IDS})
    assert full.shape == (2, 4, 50) and full.dtype == tf.float32
    state = model.encode(ENCODER_IDS, 4)
    steps = []
    for i in range(4):
        logits, state = model.decode_step(DECODER_IDS[:, i], state, tf.constant(i))
        steps.append(logits)
    steps = tf.stack(steps, 1).numpy()
    np.testing.assert_allclose(steps[0], full[0], atol=1e-5)
    np.testing.assert_allclose(steps[1, :2], full[1, :2], atol=1e-5)  # Padding positions are not compared.


def test_vocab_axes_and_layer_groups_name_real_weights():
    model = tiny_model(attention=True)
    model(model.dummy_inputs())
    paths = {v.path: v for v in model.weights}
    for path, (side, axis) in model.vocab_axes().items():
        size = VOCAB.source_vocab_size if side == "source" else VOCAB.target_vocab_size
        assert paths[path].shape[axis] == size
    layer_names = {layer.name for layer in model.layers}
    for group in model.layer_groups().values():
        assert set(group) <= layer_names


def test_padding_does_not_change_the_encoding():
    model = tiny_model(bidirectional=True, attention=True)
    short = model.encode(tf.constant([[5, 6, 3]]), 4)
    padded = model.encode(tf.constant([[5, 6, 3, 0, 0]]), 4)
    np.testing.assert_allclose(short["h_0"], padded["h_0"], atol=1e-6)


def test_bad_configs_are_clear_errors():
    config = config_lib.load_config("lstm_seq2seq").model
    config.units = 7
    with pytest.raises(UserError, match="even model.units"):
        LSTMSeq2Seq.validate_config(config, VOCAB, Pair.parse("en-de"))
    config.units = 8
    with pytest.raises(UserError, match="one source language"):
        LSTMSeq2Seq.validate_config(config, VOCAB, Pair.parse("de,fr-en"))


def test_weight_paths_are_the_same_in_every_instance():
    """Transfer and checkpoints address weights by path: no auto-numbered layer names."""
    paths = []
    for _ in range(2):
        model = tiny_model(bidirectional=True, attention=True, num_layers=2)
        model(model.dummy_inputs())
        paths.append([v.path for v in model.weights])
    assert paths[0] == paths[1]
