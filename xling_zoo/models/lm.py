"""lm: a decoder-only language model of one language, a Transformer decoder or an LSTM.

``model.decoder_type`` picks the network, its section (``model.transformer`` / ``model.lstm``) its
sizes:

* ``transformer``: ``keras_hub.layers.TransformerDecoder`` layers called without an encoder, so each
  has a causal self-attention block and a feed-forward block and no cross-attention; learned
  positions; the embedding tied to the output projection by default (Press & Wolf 2017).
* ``lstm``: the classic LSTM language model (embedding, stacked LSTMs, dropout, softmax layer).

Every layer is named as the same layer of a translator's decoder (``target_embedding``,
``target_position_embedding``, ``decoder_layer_<i>``, ``decoder_output_layer_norm``,
``decoder_lstm_<i>``, ``logits``), which is what lets the transfer step put an LM's weights into a
``transformer`` / ``lstm_seq2seq`` decoder by name (Ramachandran et al. 2017).
"""

import keras
import keras_hub
import tensorflow as tf

from xling_zoo.errors import UserError
from xling_zoo.layers.hoisted_lstm import HoistedLSTM
from xling_zoo.models.base import PAD_ID, LanguageModelTask
from xling_zoo.models.transformer import LogitsBias, _fused_qkv, cached_decoder_stack, check_transformer_args
from xling_zoo.registry import register_model

DECODER_TYPES = ("transformer", "lstm")


@register_model("lm")
class LanguageModel(LanguageModelTask):
    """The registered ``lm``: ``from_config`` builds a ``TransformerLM`` or an ``LSTMLM`` from the
    ``model`` section's ``decoder_type`` and that type's section."""

    def __init__(self, *args, **kwargs):
        if type(self) is LanguageModel:
            raise TypeError("LanguageModel picks its network in from_config; build a TransformerLM or LSTMLM directly")
        super().__init__(*args, **kwargs)

    @classmethod
    def from_config(cls, model_config, vocab=None, **options):
        if vocab is None:  # Keras deserialisation: model_config is get_config()'s dict.
            return cls(**model_config)
        network = _NETWORKS[model_config.decoder_type]
        return network(vocab_size=vocab.target_vocab_size, **dict(model_config[model_config.decoder_type]), **options)

    @classmethod
    def validate_config(cls, model_config, vocab, pair):
        decoder_type = model_config.get("decoder_type")
        if decoder_type not in DECODER_TYPES:
            raise UserError(f"lm: model.decoder_type={decoder_type!r} must be one of {', '.join(DECODER_TYPES)}")
        section = model_config[decoder_type]
        for key, value in section.items():
            if key != "dropout" and isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise UserError(f"lm: model.{decoder_type}.{key} must be >= 1, got {value}")
        if decoder_type == "transformer":
            check_transformer_args(section.hidden_dim, section.num_heads, False, True)

    def layer_groups(self):
        names = {layer.name for layer in self._flatten_layers(include_self=False, recursive=False)}
        embeddings = [n for n in ("target_embedding", "target_position_embedding") if n in names]
        decoder = [layer.name for layer in self.decoder_layers]
        decoder += ["decoder_output_layer_norm"] if "decoder_output_layer_norm" in names else []
        return {"embeddings": embeddings, "decoder": decoder, "head": ["logits"]}


class TransformerLM(LanguageModel):
    """A Transformer decoder language model.

    Args:
        vocab_size: int. Size of the vocabulary.
        num_layers: int. Number of ``TransformerDecoder`` layers (self-attention and feed-forward).
        hidden_dim: int. Width of the embeddings and of every layer's output.
        num_heads: int. Attention heads; must divide ``hidden_dim``.
        intermediate_dim: int. Width of the feed-forward blocks.
        dropout: float. Dropout on embeddings, attention weights and residual branches.
        normalize_first: bool. Pre-layer-norm, with a final layer norm after the stack.
        tie_embeddings: bool. The output projection is the embedding matrix.
        max_length: int. Longest sequence (learned position embeddings).
        **kwargs: other keyword arguments passed to ``keras.Model``.

    Example:
    >>> model = TransformerLM(vocab_size=100, num_layers=1, hidden_dim=16, num_heads=2,
    ...     intermediate_dim=32, max_length=16)
    >>> model({"decoder_token_ids": tf.constant([[1, 5, 6]])}).shape
    TensorShape([1, 3, 100])
    """

    def __init__(self, vocab_size, num_layers=2, hidden_dim=256, num_heads=4, intermediate_dim=512, dropout=0.1,
                 normalize_first=True, tie_embeddings=True, max_length=256, **kwargs):
        super().__init__(name=kwargs.pop("name", "lm"), **kwargs)
        check_transformer_args(hidden_dim, num_heads, False, True)
        # === Layers ===
        # N(0, d^-1/2) keeps tied output logits O(1); inputs are scaled back up by sqrt(d).
        self.target_embedding = keras_hub.layers.ReversibleEmbedding(
            vocab_size, hidden_dim, tie_weights=True,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=hidden_dim ** -0.5),
            name="target_embedding")
        self.target_position_embedding = keras_hub.layers.PositionEmbedding(max_length,
                                                                            name="target_position_embedding")
        self.target_embedding_dropout = keras.layers.Dropout(dropout, name="target_embedding_dropout")
        self.decoder_layers = [
            keras_hub.layers.TransformerDecoder(intermediate_dim, num_heads, dropout=dropout,
                                                normalize_first=normalize_first, name=f"decoder_layer_{i}")
            for i in range(num_layers)
        ]
        if normalize_first:
            self.decoder_output_layer_norm = keras.layers.LayerNormalization(epsilon=1e-5,
                                                                             name="decoder_output_layer_norm")
        # float32 logits keep the softmax stable under mixed precision.
        self.logits = (LogitsBias(vocab_size, dtype="float32", name="logits") if tie_embeddings
                       else keras.layers.Dense(vocab_size, dtype="float32", name="logits"))

        # === Config ===
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.normalize_first = normalize_first
        self.tie_embeddings = tie_embeddings
        self.max_length = max_length

    def get_config(self):
        return {"vocab_size": self.vocab_size, "num_layers": self.num_layers, "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads, "intermediate_dim": self.intermediate_dim, "dropout": self.dropout,
                "normalize_first": self.normalize_first, "tie_embeddings": self.tie_embeddings,
                "max_length": self.max_length}

    def decoder_features(self, inputs, training=False):
        token_ids = inputs["decoder_token_ids"]
        x = self._embed(token_ids, training=training)
        padding_mask = tf.not_equal(token_ids, PAD_ID)
        for layer in self.decoder_layers:  # Causal self-attention: keras-hub's default without an encoder.
            x = layer(x, decoder_padding_mask=padding_mask, training=training)
        return x

    def output_logits(self, features, training=False):
        if self.normalize_first:
            features = self.decoder_output_layer_norm(features)
        if self.tie_embeddings:
            return self.logits(self.target_embedding(features, reverse=True))
        return self.logits(features)

    def _embed(self, token_ids, start_index=0, training=False):
        x = self.target_embedding(token_ids) * tf.cast(self.hidden_dim ** 0.5, self.target_embedding.compute_dtype)
        x = x + self.target_position_embedding(x, start_index=start_index)
        return self.target_embedding_dropout(x, training=training)

    # --- Decoding: the translator's cached layers (transformer.cached_decoder_stack), no cross-attention

    def initial_decoding_state(self, batch_size, max_decode_length, static_shapes):
        if isinstance(max_decode_length, int) and max_decode_length > self.max_length:
            raise UserError(f"lm: {max_decode_length} tokens to decode exceed the model's max_length={self.max_length} "
                            "(its learned positions)")
        head_dim = self.hidden_dim // self.num_heads
        # Heads-first caches, pre-allocated with static shapes (XLA), else growing by one position a step.
        empty = tf.zeros([batch_size, self.num_heads, max_decode_length if static_shapes else 0, head_dim],
                         self.compute_dtype)
        state = {}
        if static_shapes:
            state["cache_positions"] = tf.tile(tf.range(max_decode_length)[None, None, None, :], [batch_size, 1, 1, 1])
        for i in range(self.num_layers):
            state[f"self_key_{i}"], state[f"self_value_{i}"] = empty, empty
        return state

    def decoding_state_shapes(self, state):
        shapes = super().decoding_state_shapes(state)
        if "cache_positions" not in state:  # Growing caches: their length axis changes every step.
            for i in range(self.num_layers):
                for name in (f"self_key_{i}", f"self_value_{i}"):
                    shapes[name] = tf.TensorShape([None, self.num_heads, None, state[name].shape[3]])
        return shapes

    def decoding_weights(self):
        weights = {f"self_qkv_{i}": _fused_qkv(layer._self_attention_layer) for i, layer in enumerate(self.decoder_layers)}
        if self.tie_embeddings:
            weights["output_kernel"] = tf.transpose(self.target_embedding.embeddings)
        return weights

    def next_token_logits(self, token_ids, state, index, weights=None):
        index = tf.convert_to_tensor(index, tf.int32)
        x = self._embed(token_ids[:, None], start_index=index)[:, 0, :]
        weights = weights or self.decoding_weights()
        x, new_state = cached_decoder_stack(self.decoder_layers, x, state, index, weights)
        if self.normalize_first:
            x = self.decoder_output_layer_norm(x)
        if self.tie_embeddings:
            dtype = self.target_embedding.reverse_dtype or x.dtype
            logits = self.logits(tf.matmul(tf.cast(x, dtype), tf.cast(weights["output_kernel"], dtype)))
        else:
            logits = self.logits(x)
        return tf.cast(logits, tf.float32), new_state

    def vocab_axes(self):
        axes = {self.target_embedding.embeddings.path: ("target", 0), self.logits.bias.path: ("target", 0)}
        if not self.tie_embeddings:
            axes[self.logits.kernel.path] = ("target", 1)
        return axes


class LSTMLM(LanguageModel):
    """The classic LSTM language model: embedding, stacked LSTMs, dropout, softmax layer.

    Args:
        vocab_size: int. Size of the vocabulary.
        embedding_dim: int. Size of the token embeddings.
        units: int. LSTM units of each layer.
        num_layers: int. Stacked LSTM layers.
        dropout: float. Dropout on embeddings, between layers and before the output layer.
        **kwargs: other keyword arguments passed to ``keras.Model``.

    Example:
    >>> model = LSTMLM(vocab_size=100, embedding_dim=8, units=8)
    >>> model({"decoder_token_ids": tf.constant([[1, 5, 6]])}).shape
    TensorShape([1, 3, 100])
    """

    def __init__(self, vocab_size, embedding_dim=256, units=256, num_layers=1, dropout=0.1, **kwargs):
        super().__init__(name=kwargs.pop("name", "lm"), **kwargs)
        # === Layers ===
        self.target_embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="target_embedding")
        self.decoder_layers = [HoistedLSTM(units, return_sequences=True, return_state=True, name=f"decoder_lstm_{i}")
                               for i in range(num_layers)]
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        self.logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")

        # === Config ===
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.num_layers = num_layers
        self.dropout = dropout

    def get_config(self):
        return {"vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim, "units": self.units,
                "num_layers": self.num_layers, "dropout": self.dropout}

    def decoder_features(self, inputs, training=False):
        token_ids = inputs["decoder_token_ids"]
        mask = tf.not_equal(token_ids, PAD_ID)
        x = self.dropout_layer(self.target_embedding(token_ids), training=training)
        batch_size = tf.shape(token_ids)[0]
        for i, layer in enumerate(self.decoder_layers):
            if i:
                x = self.dropout_layer(x, training=training)
            zeros = tf.zeros([batch_size, layer.units], x.dtype)
            x, _, _ = layer(x, initial_state=[zeros, zeros], mask=mask, training=training)
        return x

    def output_logits(self, features, training=False):
        return self.logits(self.dropout_layer(features, training=training))

    def initial_decoding_state(self, batch_size, max_decode_length, static_shapes):
        zeros = tf.zeros([batch_size, self.units], self.compute_dtype)
        return {name: zeros for i in range(self.num_layers) for name in (f"h_{i}", f"c_{i}")}

    def next_token_logits(self, token_ids, state, index, weights=None):
        # The LSTM state carries the whole history: no cache beyond it.
        x = self.target_embedding(token_ids)
        new_state = dict(state)
        for i, layer in enumerate(self.decoder_layers):
            x, (h, c) = layer.cell(x, [state[f"h_{i}"], state[f"c_{i}"]])
            new_state[f"h_{i}"], new_state[f"c_{i}"] = h, c
        return tf.cast(self.output_logits(x), tf.float32), new_state

    def vocab_axes(self):
        return {self.target_embedding.embeddings.path: ("target", 0), self.logits.kernel.path: ("target", 1),
                self.logits.bias.path: ("target", 0)}


_NETWORKS = {"transformer": TransformerLM, "lstm": LSTMLM}
