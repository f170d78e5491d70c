import keras
import numpy as np
import pytest
import tensorflow as tf

from xling_zoo.layers.hoisted_lstm import HoistedLSTM

INPUTS = tf.random.stateless_normal([3, 7, 5], seed=[1, 2])
# Right padding of different lengths, as the pipeline produces.
MASK = tf.constant([[True] * 7, [True] * 4 + [False] * 3, [True] * 2 + [False] * 5])


def pair(wrap=lambda layer: layer, **kwargs):
    """A keras.layers.LSTM and a HoistedLSTM with the same weights."""
    reference = wrap(keras.layers.LSTM(6, return_sequences=True, return_state=True, name="lstm", **kwargs))
    hoisted = wrap(HoistedLSTM(6, return_sequences=True, return_state=True, name="lstm", **kwargs))
    reference(INPUTS, mask=MASK)
    hoisted(INPUTS, mask=MASK)
    hoisted.set_weights(reference.get_weights())
    return reference, hoisted


@pytest.mark.parametrize("kwargs", [{}, {"go_backwards": True}], ids=["forward", "backward"])
def test_outputs_states_and_gradients_equal_keras_lstm(kwargs):
    reference, hoisted = pair(**kwargs)
    initial = [tf.fill([3, 6], 0.3), tf.fill([3, 6], -0.2)]
    results = []
    for layer in (reference, hoisted):
        with tf.GradientTape() as tape:
            outputs = layer(INPUTS, mask=MASK, initial_state=initial)
            loss = sum(tf.reduce_sum(o * o) for o in outputs)
        results.append((outputs, tape.gradient(loss, layer.trainable_weights)))
    for expected, actual in zip(list(results[0][0]) + results[0][1], list(results[1][0]) + results[1][1]):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_bidirectional_keeps_names_and_results():
    # One name for both wrappers: weight paths include it.
    reference, hoisted = pair(lambda layer: keras.layers.Bidirectional(layer, name="encoder"))
    assert [w.path for w in hoisted.weights] == [w.path for w in reference.weights]
    assert isinstance(hoisted.backward_layer, HoistedLSTM)
    for expected, actual in zip(reference(INPUTS, mask=MASK), hoisted(INPUTS, mask=MASK)):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_serialises_as_itself():
    layer = HoistedLSTM(4, return_sequences=True)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, HoistedLSTM) and restored.units == 4
