import numpy as np
import pytest
import tensorflow as tf

from xling_zoo.models.base import sequence_cross_entropy, token_cross_entropy


def reference_loss(labels, logits, smoothing):
    """Label-smoothed cross-entropy against an explicit smoothed one-hot target."""
    vocab = logits.shape[-1]
    target = tf.one_hot(labels, vocab) * (1 - smoothing) + smoothing / vocab
    token = tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=logits)
    mask = tf.cast(labels != 0, tf.float32)
    return float(tf.reduce_sum(token * mask) / tf.reduce_sum(mask))


def test_closed_form_smoothing_equals_the_one_hot_definition():
    rng = np.random.RandomState(0)
    logits = tf.constant(rng.randn(3, 5, 11), tf.float32)
    labels = tf.constant([[4, 5, 6, 3, 0], [7, 3, 0, 0, 0], [8, 9, 10, 4, 3]])
    for smoothing in (0.0, 0.1, 0.3):
        np.testing.assert_allclose(float(sequence_cross_entropy(labels, logits, smoothing)),
                                   reference_loss(labels, logits, smoothing), rtol=1e-5)


def test_padding_carries_no_loss():
    logits = tf.constant(np.random.RandomState(1).randn(1, 4, 7), tf.float32)
    short = sequence_cross_entropy(tf.constant([[4, 3, 0, 0]]), logits, 0.1)
    changed = tf.concat([logits[:, :2], logits[:, 2:] * 5.0], axis=1)
    np.testing.assert_allclose(float(short), float(sequence_cross_entropy(tf.constant([[4, 3, 0, 0]]), changed, 0.1)))


def test_token_cross_entropy_of_no_tokens_is_zero():
    loss = token_cross_entropy(tf.zeros([0], tf.int32), tf.zeros([0, 7]), 0.1)
    assert float(loss) == 0.0


def _batch():
    ids = tf.constant([[5, 6, 7, 3, 0], [8, 9, 3, 0, 0]])
    return {"encoder_token_ids": ids, "decoder_token_ids": tf.constant([[2, 10, 11, 12], [2, 13, 0, 0]]),
            "target_token_ids": tf.constant([[10, 11, 12, 3], [13, 3, 0, 0]]),
            "source_language_id": tf.constant([0, 2])}


def _models():
    from tests.models import test_adversarial, test_lstm_seq2seq, test_transformer
    return {"lstm_seq2seq": lambda: test_lstm_seq2seq.tiny_model(attention=True, bidirectional=True),
            "transformer": lambda: test_transformer.tiny_model(test_transformer.JOINT_VOCAB, dropout=0.0),
            "adversarial": lambda: test_adversarial.tiny_model(encoder_type="lstm")}


@pytest.mark.parametrize("name", ["lstm_seq2seq", "transformer", "adversarial"])
def test_loss_on_real_positions_equals_the_loss_on_every_position(name):
    model = _models()[name]()
    model.label_smoothing = 0.1
    batch = _batch()
    model(batch)
    results = {}
    for on_real_positions in (True, False):
        model.static_shapes = not on_real_positions  # What workdir.build_model(static_shapes=) sets.
        assert model.loss_on_real_positions == on_real_positions
        with tf.GradientTape() as tape:
            loss = model.compute_losses(batch)["loss"]
        grads = tape.gradient(loss, model.trainable_variables)
        results[on_real_positions] = (float(loss), [tf.convert_to_tensor(g).numpy() for g in grads])
    # The gathered loss never sees padding: same value, same gradients.
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    for sparse, dense in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(sparse, dense, atol=1e-6)
