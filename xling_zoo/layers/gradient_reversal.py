"""Gradient reversal (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by Backpropagation").

Identity on the forward pass; on the backward pass the incoming gradient is multiplied by
``-weight``. Placed between a feature extractor and a domain (here: language) discriminator, it lets
one loss train the discriminator to recognise the domain while pushing the features to hide it.
"""

import keras
import tensorflow as tf


@tf.custom_gradient
def reverse_gradient(x, weight):
    """Returns ``x``; the gradient flowing back to ``x`` is ``-weight * dy`` (none to ``weight``)."""

    def grad(dy):
        return -tf.cast(weight, dy.dtype) * dy, tf.zeros_like(weight)

    return tf.identity(x), grad


@keras.saving.register_keras_serializable(package="xling_zoo")
class GradientReversal(keras.layers.Layer):
    """Identity forward, gradient times ``-weight`` backward.

    The weight is usually ramped up during training, so it can be given per call (a Python float or
    a scalar tensor, e.g. computed from ``optimizer.iterations``) and falls back to the constructor's.

    Args:
        weight: float. The gradient multiplier used when ``call`` gets none. ``0`` blocks the
            gradient (the features are then only observed, like ``tf.stop_gradient``).
        **kwargs: other keyword arguments passed to ``keras.layers.Layer`` (``name``, ``dtype``...).

    Example:
    >>> layer = GradientReversal(weight=0.5)
    >>> x = tf.constant([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = tf.reduce_sum(layer(x))
    >>> tape.gradient(y, x).numpy()
    array([-0.5, -0.5], dtype=float32)
    """

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight
        self.supports_masking = True
        # No weights: built now, like Keras' own stateless layers (Dropout, Activation).
        self._build_at_init()

    def call(self, inputs, weight=None):
        weight = self.weight if weight is None else weight
        return reverse_gradient(inputs, tf.cast(weight, tf.float32))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"weight": self.weight})
        return config
