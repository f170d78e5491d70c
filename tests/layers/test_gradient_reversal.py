import numpy as np
import tensorflow as tf

from xling_zoo.layers.gradient_reversal import GradientReversal

X = tf.constant([[1.0, -2.0], [3.0, 0.5]])


def value_and_gradient(layer, **call_kwargs):
    with tf.GradientTape() as tape:
        tape.watch(X)
        y = layer(X, **call_kwargs)
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0], [3.0, 4.0]]))
    return y, tape.gradient(loss, X)


def test_identity_forward_reversed_scaled_gradient_backward():
    y, grad = value_and_gradient(GradientReversal(weight=0.5))
    np.testing.assert_array_equal(y, X)
    np.testing.assert_allclose(grad, [[-0.5, -1.0], [-1.5, -2.0]])


def test_call_weight_overrides_and_zero_blocks():
    layer = GradientReversal(weight=0.5)
    _, grad = value_and_gradient(layer, weight=2.0)
    np.testing.assert_allclose(grad, [[-2.0, -4.0], [-6.0, -8.0]])
    _, grad = value_and_gradient(layer, weight=tf.constant(0.0))
    np.testing.assert_array_equal(grad, np.zeros((2, 2)))


def test_weight_as_a_traced_tensor():
    layer = GradientReversal()

    @tf.function(jit_compile=True)
    def grad_at(weight):
        with tf.GradientTape() as tape:
            tape.watch(X)
            loss = tf.reduce_sum(layer(X, weight=weight))
        return tape.gradient(loss, X)

    np.testing.assert_allclose(grad_at(tf.constant(0.25)), np.full((2, 2), -0.25))
    np.testing.assert_allclose(grad_at(tf.constant(1.0)), np.full((2, 2), -1.0))


def test_config_round_trip():
    layer = GradientReversal(weight=0.3, name="gradient_reversal")
    clone = GradientReversal.from_config(layer.get_config())
    assert clone.weight == 0.3 and clone.name == "gradient_reversal" and clone.built
