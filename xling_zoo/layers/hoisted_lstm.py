"""An LSTM layer whose input projection runs once per sequence instead of once per time step."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="xling_zoo")
class HoistedLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` with the input projection hoisted out of the time loop.

    Where cuDNN does not apply (every CPU), Keras runs the cell once per time step, and each step
    multiplies that step's input by the kernel: T small matmuls. The input does not depend on the
    recurrence, so here ``inputs @ kernel + bias`` is one [B*T, E] x [E, 4U] matmul before the loop,
    and the loop keeps only ``h @ recurrent_kernel``. Weights, their names and the results (up to
    float rounding) are those of ``keras.layers.LSTM``, so checkpoints move between the two. On a
    GPU, and with LSTM-internal dropout, it defers to Keras (cuDNN, per-step dropout masks).

    Args: those of ``keras.layers.LSTM``.
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if (tf.config.list_logical_devices("GPU") or cell.dropout or cell.recurrent_dropout
                or cell.implementation == 1):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        projected = ops.matmul(sequences, cell.kernel)
        if cell.use_bias:
            projected = projected + cell.bias

        def step(projected_input, states):
            h_tm1, c_tm1 = states
            z = projected_input + ops.matmul(h_tm1, cell.recurrent_kernel)
            c, o = cell._compute_carry_and_output_fused(ops.split(z, 4, axis=-1), c_tm1)
            h = o * cell.activation(c)
            return h, [h, c]

        return keras.src.backend.rnn(
            step, projected, list(initial_state), go_backwards=self.go_backwards, mask=mask,
            unroll=self.unroll, input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask, return_all_outputs=self.return_sequences)
