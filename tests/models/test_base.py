import numpy as np
import tensorflow as tf

from xling_zoo.models.base import sequence_cross_entropy


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
