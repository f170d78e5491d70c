"""The contract every registered model fulfils, so that one trainer, one transfer step, one decoder
and one export serve them all.

A ``Task`` is a Keras model plus the few things the rest of xling_zoo asks of it:

* ``from_config(model_config, vocab)``: build from the ``model`` section of a run config.
* ``compute_losses(batch, training)``: a dict of scalar tensors with at least ``"loss"`` (the value
  that is differentiated). Extra entries (``discriminator_accuracy``, ...) are logged as they are.
* ``training_step(batch, optimizer)``: one optimisation step; the default differentiates
  ``compute_losses(...)["loss"]``. Models with several updates per step (the adversarial
  discriminator) override it; the trainer's loop stays the same.
* ``vocab_axes()``: which weights are indexed by which vocabulary, along which axis — the transfer
  step remaps exactly these rows/columns when the child's vocabulary differs.
* ``layer_groups()``: layer-name groups (``embeddings``, ``encoder``, ``decoder``, ``head``...) that
  ``--freeze`` and per-group learning rates address.

``Seq2SeqTask`` adds what decoding and export need: ``encode`` and a cached ``decode_step``. Later
task types (a decoder-only language model, an encoder classifier) subclass ``Task`` directly with
their own ``task_type`` and batch keys; nothing in the registry or transfer step assumes seq2seq.

Batches are dicts produced by ``xling_zoo.data.pipeline``:
  encoder_token_ids  int32 [batch, source_len]  source pieces (+ target-language tag) + eos, 0-padded
  decoder_token_ids  int32 [batch, target_len]  bos + target pieces, 0-padded
  target_token_ids   int32 [batch, target_len]  target pieces + eos, 0-padded (the labels)
  source_language_id int32 [batch]              index into the pair's source languages
"""

import dataclasses

import keras
import tensorflow as tf

PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """What a model needs to know about its tokenizers."""

    source_vocab_size: int
    target_vocab_size: int
    # True when source and target share one SentencePiece model (a prerequisite for tied embeddings).
    joint: bool = True
    # Number of source languages (the adversarial discriminator's classes).
    num_source_languages: int = 1


class Task(keras.Model):
    """Base class of every registered model."""

    # Set by @register_model.
    registered_name = None
    # What the batches look like and what decoding/export offer: "seq2seq" today; "lm" and
    # "classifier" are the task types planned next.
    task_type = None
    # Set by the trainer from config.train.label_smoothing (a training choice, not an architecture one).
    label_smoothing = 0.0

    @classmethod
    def from_config(cls, model_config, vocab):
        """Builds the model from the ``model`` section of a run config (a ConfigDict)."""
        raise NotImplementedError

    @classmethod
    def validate_config(cls, model_config, vocab, pair):
        """Raises UserError for a config that cannot build, or a corpus this model cannot use."""

    def compute_losses(self, batch, training=False):
        raise NotImplementedError

    def training_step(self, batch, optimizer, loss_scale=1.0):
        """One gradient step. ``loss_scale`` divides the loss (1 / replicas under tf.distribute)."""
        with tf.GradientTape() as tape:
            losses = self.compute_losses(batch, training=True)
            scaled = tf.cast(losses["loss"], tf.float32) * loss_scale
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = optimizer.scale_loss(scaled)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return losses

    def vocab_axes(self):
        """{variable.path: (vocab side "source"|"target", axis)} for weights indexed by a vocabulary."""
        return {}

    def layer_groups(self):
        """{group name: [layer names]} for freezing and per-group learning rates."""
        return {}

    def dummy_inputs(self):
        """A tiny batch that builds every weight (used before restoring checkpoints)."""
        raise NotImplementedError


class Seq2SeqTask(Task):
    """An encoder-decoder translator. ``call`` is teacher-forced; ``encode``/``decode_step`` decode."""

    task_type = "seq2seq"

    def encode(self, encoder_token_ids, max_decode_length):
        """Runs the encoder once. Returns the decoder's initial state: a nest of tensors whose
        first dimension is the batch (decode.py tiles and gathers it along that axis for beam
        search); caches are pre-allocated for ``max_decode_length`` steps."""
        raise NotImplementedError

    def decoding_weights(self):
        """Weights rearranged for ``decode_step`` (a transposed output matrix, ...), or None.
        decode.py computes them once per decoding call, outside its step loop, and passes them to
        every step as ``weights``: rearranging them inside the step would repeat it per token."""

    def decode_step(self, token_ids, state, index, weights=None):
        """One decoder step. token_ids: int32 [batch], the previous output token; index: scalar
        int32 position; weights: what ``decoding_weights()`` returned (None works too, slower).
        Returns (logits float32 [batch, vocab], new state of the same structure)."""
        raise NotImplementedError

    def compute_losses(self, batch, training=False):
        logits = self(batch, training=training)
        return {"loss": sequence_cross_entropy(batch["target_token_ids"], logits, self.label_smoothing)}

    def dummy_inputs(self):
        ids = tf.constant([[5, 6, 3]], tf.int32)
        return {"encoder_token_ids": ids, "decoder_token_ids": ids}


def sequence_cross_entropy(labels, logits, label_smoothing=0.0):
    """Mean cross-entropy over non-padding target tokens, with label smoothing, in float32.

    Smoothing toward the uniform distribution is computed in closed form,
    (1 - e) * nll + e * (logsumexp - mean logit), rather than against a [batch, length, vocab]
    one-hot target: same value, without materialising (and reading back) a vocabulary-sized tensor.
    """
    logits = tf.cast(logits, tf.float32)
    log_normalizer = tf.reduce_logsumexp(logits, axis=-1)
    nll = log_normalizer - tf.gather(logits, labels, axis=-1, batch_dims=2)
    if label_smoothing:
        uniform = log_normalizer - tf.reduce_mean(logits, axis=-1)
        token_loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    else:
        token_loss = nll
    mask = tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)
    return tf.reduce_sum(token_loss * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
