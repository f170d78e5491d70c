"""adversarial: a translator whose encoder is trained to hide the source language.

Several source languages share one encoder and translate into one target (``--pair=de,fr,es-en``).
A language discriminator (an MLP named ``discriminator_*``) predicts each sentence's source language
from its mean-pooled encoder states; between the two sits a gradient reversal layer, so the one
backward pass trains the translator on ``translation_loss`` while pushing the encoder to *raise*
the discriminator's loss (Ganin & Lempitsky 2015; Lample et al. 2018; ADAN, Chen et al. 2018).
Language-invariant encoder states are what a child language pair can reuse after transfer.

The translator is a ``TransformerSeq2Seq`` or an ``LSTMSeq2Seq`` (``encoder_type``) with every one of
its layers, names and decoding methods unchanged: the adversarial classes subclass them, so a parent
trained here transfers to a ``transformer`` / ``lstm_seq2seq`` child by layer name.

One ``training_step``:
  1. joint step (the trainer's optimizer, translator variables only): translation loss plus the
     discriminator loss seen through the reversal layer with weight ``adversary_weight * ramp``,
     the ramp 2 / (1 + exp(-10 p)) - 1 of Ganin et al. over ``adversary_ramp_steps`` (p = step /
     ramp steps), so the encoder first learns to translate;
  2. ``discriminator_steps`` discriminator-only updates (its own Adam, discriminator variables only)
     on the detached pooled states of the same forward pass.
With ``adversary=False`` (or ``adversary_weight=0``) the reversal weight is 0: the translator is
trained exactly as without an adversary, while step 2 still measures how well the source language
can be read off the encoder (``discriminator_accuracy``) — the baseline of the comparison.
"""

import copy

import keras
import tensorflow as tf

from xling_zoo.errors import UserError
from xling_zoo.layers.gradient_reversal import GradientReversal
from xling_zoo.models.base import Seq2SeqTask
from xling_zoo.models.lstm_seq2seq import LSTMSeq2Seq
from xling_zoo.models.transformer import TransformerSeq2Seq
from xling_zoo.registry import get_model, register_model

# Constructor arguments of the adversary itself (the rest of the model section is the translator's).
ADVERSARY_KEYS = ("adversary", "adversary_objective", "adversary_weight", "adversary_ramp_steps", "discriminator_steps",
                  "discriminator_hidden_dim", "discriminator_num_layers", "discriminator_dropout",
                  "discriminator_learning_rate")


@register_model("adversarial")
class AdversarialSeq2Seq(Seq2SeqTask):
    """A multi-source translator with a language discriminator behind a gradient reversal layer.

    Build it with ``AdversarialSeq2Seq.from_config`` (which picks ``AdversarialTransformer`` or
    ``AdversarialLSTM`` from ``encoder_type``) or one of those two classes directly; their other
    keyword arguments are the translator's (``TransformerSeq2Seq`` / ``LSTMSeq2Seq``).

    Args:
        num_source_languages: int. Classes of the discriminator (the pair's source languages).
        adversary: bool. Reverse the discriminator's gradient into the encoder. False trains the
            same network with the discriminator only observing (detached) encoder states.
        adversary_objective: str. What the encoder is pushed toward. "reversal": raise the
            discriminator's loss through the gradient reversal layer (Ganin & Lempitsky 2015).
            "confusion": make the discriminator's prediction uniform over the languages (the
            domain-confusion loss of Tzeng et al. 2015), whose optimum is an uninformed
            discriminator rather than a confidently wrong one.
        adversary_weight: float. Final weight (lambda) of the adversary's term for the encoder:
            the reversed gradient, or the confusion loss.
        adversary_ramp_steps: int. Steps over which the weight ramps up from 0 (0 = no ramp).
        discriminator_steps: int. Discriminator-only updates per training step (>= 1).
        discriminator_hidden_dim: int. Width of the discriminator's hidden layers.
        discriminator_num_layers: int. Hidden layers of the discriminator (0 = a linear probe).
        discriminator_dropout: float. Dropout before each discriminator layer.
        discriminator_learning_rate: float. Learning rate of the discriminator's own Adam.
        **kwargs: the translator's arguments, and those of ``keras.Model``.

    Example:
    >>> model = AdversarialTransformer(num_source_languages=3, source_vocab_size=100,
    ...     target_vocab_size=100, num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16,
    ...     num_heads=2, intermediate_dim=32, max_length=16)
    >>> ids = tf.constant([[5, 6, 3]])
    >>> batch = {"encoder_token_ids": ids, "decoder_token_ids": ids, "target_token_ids": ids,
    ...          "source_language_id": tf.constant([2])}
    >>> sorted(model.compute_losses(batch))
    ['discriminator_accuracy', 'discriminator_loss', 'loss', 'translation_loss']
    """

    # Its discriminator classifies each example's source language.
    reads_source_language_id = True
    # Set by the concrete subclasses: the key of the translator's section in the model config, and
    # the translator class whose layers and decoding they inherit.
    encoder_type = None
    translator_class = None

    def __init__(self, num_source_languages, adversary=True, adversary_objective="reversal", adversary_weight=1.0,
                 adversary_ramp_steps=2000, discriminator_steps=1, discriminator_hidden_dim=256,
                 discriminator_num_layers=1, discriminator_dropout=0.1,
                 discriminator_learning_rate=1e-3, **kwargs):
        if self.encoder_type is None:
            raise TypeError("AdversarialSeq2Seq needs a translator: use AdversarialSeq2Seq.from_config, "
                            "AdversarialTransformer or AdversarialLSTM")
        if discriminator_steps < 1:
            raise UserError(f"adversarial: model.discriminator_steps must be >= 1, got {discriminator_steps}")
        _check_objective(adversary_objective)
        super().__init__(name=kwargs.pop("name", "adversarial"), **kwargs)
        # === Layers ===
        self.gradient_reversal = GradientReversal(dtype="float32", name="gradient_reversal")
        # float32: the discriminator is tiny, and its own updates then need no loss scaling.
        self.discriminator_hidden_layers = [
            keras.layers.Dense(discriminator_hidden_dim, activation="relu", dtype="float32",
                               name=f"discriminator_hidden_{i}")
            for i in range(discriminator_num_layers)
        ]
        self.discriminator_dropout_layer = keras.layers.Dropout(discriminator_dropout,
                                                                name="discriminator_dropout")
        self.discriminator_logits = keras.layers.Dense(num_source_languages, dtype="float32",
                                                       name="discriminator_logits")
        # Built now (``call`` never reaches the discriminator): checkpoints restore into them and
        # the discriminator's optimizer gets its slots in the same tf.distribute scope as the model.
        width = self._encoder_width()
        with keras.name_scope(self.name):  # The path a build inside the model's call would give.
            for layer in self.discriminator_hidden_layers:
                layer.build((None, width))
                width = discriminator_hidden_dim
            self.discriminator_logits.build((None, width))
        self.discriminator_optimizer = keras.optimizers.Adam(discriminator_learning_rate,
                                                             name="discriminator_adam")
        self.discriminator_optimizer.build(self.discriminator_variables)

        # === Config ===
        self.num_source_languages = num_source_languages
        self.adversary = adversary
        self.adversary_objective = adversary_objective
        self.adversary_weight = adversary_weight
        self.adversary_ramp_steps = adversary_ramp_steps
        self.discriminator_steps = discriminator_steps
        self.discriminator_hidden_dim = discriminator_hidden_dim
        self.discriminator_num_layers = discriminator_num_layers
        self.discriminator_dropout = discriminator_dropout
        self.discriminator_learning_rate = discriminator_learning_rate

    def get_config(self):
        config = super().get_config()
        config.update({"encoder_type": self.encoder_type,
                       "num_source_languages": self.num_source_languages,
                       **{key: getattr(self, key) for key in ADVERSARY_KEYS}})
        return config

    @classmethod
    def from_config(cls, model_config, vocab=None, **options):
        if vocab is None:  # Keras deserialisation: model_config is get_config()'s flat dict.
            kwargs = dict(model_config)
            return _translator_class(kwargs.pop("encoder_type"))(**kwargs)
        subclass = _translator_class(model_config.encoder_type)
        return subclass(num_source_languages=vocab.num_source_languages,
                        source_vocab_size=vocab.source_vocab_size,
                        target_vocab_size=vocab.target_vocab_size,
                        # A key missing from an older run's config takes the constructor default.
                        **{key: model_config[key] for key in ADVERSARY_KEYS if key in model_config},
                        **dict(model_config[model_config.encoder_type]), **options)

    @classmethod
    def model_config_from_parent(cls, parent_model_name, parent_model_config, default_model_config):
        """A translator run (transformer, lstm_seq2seq) becomes this model's translator: its model
        section is the section ``encoder_type`` names; the discriminator starts fresh, configured
        as by default (``--set=model.discriminator_*`` changes it)."""
        section = getattr(get_model(parent_model_name), "translator_section", None)
        if section not in _TRANSLATORS:
            raise UserError(f"an adversarial child takes a translator parent ({', '.join(sorted(_PARENT_TYPES))}) or "
                            f"an adversarial one, not a {parent_model_name} run")
        config = copy.deepcopy(default_model_config)
        config.encoder_type = section
        config[section] = copy.deepcopy(parent_model_config)
        return config

    @classmethod
    def validate_config(cls, model_config, vocab, pair):
        subclass = _translator_class(model_config.encoder_type)
        if pair is not None and not pair.is_multi_source:
            raise UserError(f"adversarial needs several source languages, e.g. --pair=de,fr,es-en "
                            f"(got --pair={pair})")
        if vocab.num_source_languages < 2:
            raise UserError("adversarial needs several source languages for its discriminator, got "
                            f"{vocab.num_source_languages}; use a pair such as --pair=de,fr,es-en")
        if model_config.discriminator_steps < 1:
            raise UserError("adversarial: model.discriminator_steps must be >= 1, got "
                            f"{model_config.discriminator_steps}")
        _check_objective(model_config.get("adversary_objective", "reversal"))
        for key in ("adversary_weight", "adversary_ramp_steps", "discriminator_num_layers"):
            if model_config[key] < 0:
                raise UserError(f"adversarial: model.{key} must be >= 0, got {model_config[key]}")
        # The translator checks its own section; the multi-source pair is ours to accept.
        try:
            subclass.translator_class.validate_config(model_config[model_config.encoder_type], vocab, None)
        except UserError as error:
            raise UserError(f"adversarial (section model.{model_config.encoder_type}): {error}") from None

    # --- What the translator provides ----------------------------------------------------------

    def _encoder_width(self):
        """Width of the encoder states the discriminator reads."""
        raise NotImplementedError

    def _translate(self, inputs, training=False):
        """Teacher-forced pass: (decoder features [B, T, W] for the output layer, encoder states
        [B, S, W], source mask [B, S])."""
        raise NotImplementedError

    # --- Adversary -----------------------------------------------------------------------------

    @property
    def discriminator_variables(self):
        layers = self.discriminator_hidden_layers + [self.discriminator_logits]
        return [v for layer in layers for v in layer.trainable_variables]

    @property
    def translation_variables(self):
        """What the trainer's optimizer updates: every trainable variable but the discriminator's."""
        discriminator = {id(v) for v in self.discriminator_variables}
        return [v for v in self.trainable_variables if id(v) not in discriminator]

    def reversal_weight(self, step):
        """adversary_weight * (2 / (1 + exp(-10 p)) - 1), p = step / adversary_ramp_steps capped at 1."""
        if not self.adversary or not self.adversary_weight:
            return tf.constant(0.0)
        if not self.adversary_ramp_steps:
            return tf.constant(float(self.adversary_weight))
        progress = tf.minimum(tf.cast(step, tf.float32) / float(self.adversary_ramp_steps), 1.0)
        return self.adversary_weight * (2.0 / (1.0 + tf.exp(-10.0 * progress)) - 1.0)

    def _discriminate(self, features, labels, rows=None, training=False):
        """(mean cross-entropy, accuracy, logits) of the discriminator on pooled features [B, W],
        averaged over the real ``rows`` (float [B], 0 for the all-padding rows of static-shape
        batches; default all)."""
        if rows is None:
            rows = tf.ones(tf.shape(features)[:1], tf.float32)
        x = features
        for layer in self.discriminator_hidden_layers:
            x = layer(self.discriminator_dropout_layer(x, training=training))
        logits = self.discriminator_logits(self.discriminator_dropout_layer(x, training=training))
        labels = tf.cast(labels, tf.int32)
        loss = _row_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), rows)
        correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
        return loss, _row_mean(tf.cast(correct, tf.float32), rows), logits

    def _forward(self, batch, training, reversal_weight):
        """(losses, detached pooled encoder states) of one teacher-forced pass."""
        features, states, mask = self._translate(batch, training)
        translation_loss = self.translation_loss(batch["target_token_ids"], features, training)
        pooled = masked_mean(states, mask)
        rows = tf.cast(tf.reduce_any(tf.cast(mask, tf.bool), axis=1), tf.float32)
        if self.adversary_objective == "confusion":
            discriminator_loss, accuracy, discriminator_logits = self._discriminate(
                pooled, batch["source_language_id"], rows, training)
            # Cross-entropy against the uniform distribution: smallest when the discriminator
            # cannot tell the languages apart. Only the encoder learns from it (the joint step
            # leaves the discriminator's variables alone).
            confusion = -_row_mean(tf.reduce_mean(tf.nn.log_softmax(discriminator_logits), axis=-1), rows)
            adversary_loss = reversal_weight * confusion
        else:
            reversed_pooled = self.gradient_reversal(pooled, weight=reversal_weight)
            discriminator_loss, accuracy, _ = self._discriminate(reversed_pooled, batch["source_language_id"],
                                                                 rows, training)
            # Through the reversal layer the encoder receives -weight times this loss's gradient.
            adversary_loss = discriminator_loss
        losses = {
            # What the joint step differentiates (translator variables only).
            "loss": tf.cast(translation_loss, tf.float32) + adversary_loss,
            "translation_loss": translation_loss,
            "discriminator_loss": discriminator_loss,
            "discriminator_accuracy": accuracy,
        }
        return losses, tf.stop_gradient(pooled), rows

    def compute_losses(self, batch, training=False, reversal_weight=0.0):
        return self._forward(batch, training, reversal_weight)[0]

    def training_step(self, batch, optimizer, loss_scale=1.0):
        weight = self.reversal_weight(optimizer.iterations)
        with tf.GradientTape() as tape:
            losses, pooled, rows = self._forward(batch, True, weight)
            scaled = losses["loss"] * loss_scale
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = optimizer.scale_loss(scaled)
        variables = self.translation_variables
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))

        discriminator_variables = self.discriminator_variables
        labels = batch["source_language_id"]
        for _ in range(self.discriminator_steps):
            with tf.GradientTape() as tape:
                loss, _, _ = self._discriminate(pooled, labels, rows, training=True)
                scaled = loss * loss_scale
            grads = tape.gradient(scaled, discriminator_variables)
            self.discriminator_optimizer.apply_gradients(zip(grads, discriminator_variables))
        return {**losses, "reversal_weight": weight}

    def dummy_inputs(self):
        return {**super().dummy_inputs(), "source_language_id": tf.constant([0], tf.int32)}

    def owned_optimizers(self):
        return {"discriminator": self.discriminator_optimizer}

    def layer_groups(self):
        groups = super().layer_groups()
        groups["discriminator"] = ([layer.name for layer in self.discriminator_hidden_layers]
                                   + ["discriminator_logits"])
        return groups


def _check_objective(objective):
    if objective not in ("reversal", "confusion"):
        raise UserError(f"adversarial: model.adversary_objective={objective!r} is not one of confusion, reversal")


def masked_mean(states, mask):
    """Mean over the non-padding positions: [B, S, W], bool [B, S] -> float32 [B, W]."""
    states = tf.cast(states, tf.float32)
    weights = tf.cast(mask, tf.float32)[:, :, None]
    return tf.reduce_sum(states * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


class AdversarialTransformer(AdversarialSeq2Seq, TransformerSeq2Seq):
    """``adversarial`` with a Transformer translator (``TransformerSeq2Seq``'s layers and decoding)."""

    encoder_type = "transformer"
    translator_class = TransformerSeq2Seq

    def _encoder_width(self):
        return self.hidden_dim

    def _translate(self, inputs, training=False):
        states, mask = self._encode(inputs["encoder_token_ids"], training)
        return self._decode(inputs["decoder_token_ids"], states, mask, training), states, mask


class AdversarialLSTM(AdversarialSeq2Seq, LSTMSeq2Seq):
    """``adversarial`` with an LSTM translator (``LSTMSeq2Seq``'s layers and decoding)."""

    encoder_type = "lstm"
    translator_class = LSTMSeq2Seq

    def _encoder_width(self):
        return self.units

    def _translate(self, inputs, training=False):
        states, mask, final_states = self._encode(inputs["encoder_token_ids"], training)
        return self._decode(inputs["decoder_token_ids"], states, mask, final_states, training), states, mask


_TRANSLATORS = {cls.encoder_type: cls for cls in (AdversarialTransformer, AdversarialLSTM)}
# The registered translators whose runs an adversarial child takes (``model_config_from_parent``).
_PARENT_TYPES = {cls.translator_class.registered_name for cls in _TRANSLATORS.values()}


def _translator_class(encoder_type):
    if encoder_type not in _TRANSLATORS:
        raise UserError(f"adversarial: model.encoder_type={encoder_type!r} is not one of "
                        f"{', '.join(sorted(_TRANSLATORS))}")
    return _TRANSLATORS[encoder_type]


def _row_mean(values, rows):
    """Mean of ``values`` [B] over the rows where ``rows`` [B] is 1."""
    return tf.reduce_sum(values * rows) / tf.maximum(tf.reduce_sum(rows), 1.0)
