"""transformer: the encoder-decoder Transformer (Vaswani et al. 2017) from keras-hub layers.

Token embeddings are ``keras_hub.layers.ReversibleEmbedding`` so that ``tie_embeddings`` can share
one matrix between the source, the target and the output projection (Press & Wolf 2017); positions
are learned (``keras_hub.layers.PositionEmbedding``, up to ``max_length``). Decoding is incremental:
``encode`` projects the cross-attention keys/values once and pre-allocates the self-attention
caches, ``decode_step`` runs each ``TransformerDecoder`` layer's own weights on one new position
(see ``_cached_decoder_step`` for why not keras-hub's cached call).
"""

import keras
import keras_hub
import tensorflow as tf

from xling_zoo.errors import UserError
from xling_zoo.models.base import PAD_ID, Seq2SeqTask
from xling_zoo.registry import register_model


@keras.saving.register_keras_serializable(package="xling_zoo")
class LogitsBias(keras.layers.Layer):
    """The output bias when the output projection is the tied embedding matrix.

    Keeps a layer named ``logits`` (the head that transfer swaps and ``--freeze`` addresses) in the
    tied model too, and computes the logits in float32 like the untied ``Dense`` head.

    Args:
        vocabulary_size: int. Number of logits.
        **kwargs: other keyword arguments passed to ``keras.layers.Layer``.
    """

    def __init__(self, vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(self.vocabulary_size,), initializer="zeros", name="bias")

    def call(self, inputs):
        return tf.cast(inputs, self.compute_dtype) + tf.cast(self.bias, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size})
        return config


@register_model("transformer")
class TransformerSeq2Seq(Seq2SeqTask):
    """An encoder-decoder Transformer translator.

    Args:
        source_vocab_size: int. Size of the source vocabulary.
        target_vocab_size: int. Size of the target vocabulary.
        num_encoder_layers: int. Number of ``TransformerEncoder`` layers.
        num_decoder_layers: int. Number of ``TransformerDecoder`` layers.
        hidden_dim: int. Width of the embeddings and of every layer's output.
        num_heads: int. Attention heads; must divide ``hidden_dim``.
        intermediate_dim: int. Width of the feed-forward blocks.
        dropout: float. Dropout on embeddings, attention weights and residual branches.
        normalize_first: bool. Pre-layer-norm (normalise the input of each block, plus a final
            layer norm after each stack) instead of the original post-layer-norm; it trains
            stably with less warm-up.
        tie_embeddings: bool. One embedding matrix for the source, the target and the output
            projection. Needs one vocabulary for both sides (``source_vocab_size ==
            target_vocab_size``, a joint tokenizer).
        max_length: int. Longest source or target sequence (learned position embeddings), which
            also bounds ``max_decode_length``.
        **kwargs: other keyword arguments passed to ``keras.Model`` (``name``, ``dtype``...).

    Example:
    >>> model = TransformerSeq2Seq(source_vocab_size=100, target_vocab_size=100,
    ...     num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16, num_heads=2,
    ...     intermediate_dim=32, max_length=16)
    >>> ids = tf.constant([[5, 6, 3]])
    >>> model({"encoder_token_ids": ids, "decoder_token_ids": ids}).shape
    TensorShape([1, 3, 100])
    """

    translator_section = "transformer"
    lm_decoder_type = "transformer"
    lm_decoder_keys = {"num_decoder_layers": "num_layers", "hidden_dim": "hidden_dim", "num_heads": "num_heads",
                       "intermediate_dim": "intermediate_dim", "normalize_first": "normalize_first",
                       "tie_embeddings": "tie_embeddings", "max_length": "max_length"}

    def __init__(self, source_vocab_size, target_vocab_size, num_encoder_layers=6,
                 num_decoder_layers=6, hidden_dim=512, num_heads=8, intermediate_dim=2048,
                 dropout=0.1, normalize_first=False, tie_embeddings=False, max_length=256,
                 **kwargs):
        super().__init__(name=kwargs.pop("name", "transformer"), **kwargs)
        check_transformer_args(hidden_dim, num_heads, tie_embeddings,
                               source_vocab_size == target_vocab_size)
        # === Layers ===
        # N(0, d^-1/2) keeps tied output logits O(1); inputs are scaled back up by sqrt(d).
        embedding_init = keras.initializers.RandomNormal(stddev=hidden_dim ** -0.5)
        if tie_embeddings:
            self.source_embedding = keras_hub.layers.ReversibleEmbedding(
                source_vocab_size, hidden_dim, tie_weights=True,
                embeddings_initializer=embedding_init, name="shared_embedding")
            self.target_embedding = self.source_embedding
            self.logits = LogitsBias(target_vocab_size, dtype="float32", name="logits")
        else:
            self.source_embedding = keras_hub.layers.ReversibleEmbedding(
                source_vocab_size, hidden_dim, embeddings_initializer=embedding_init,
                name="source_embedding")
            self.target_embedding = keras_hub.layers.ReversibleEmbedding(
                target_vocab_size, hidden_dim, embeddings_initializer=embedding_init,
                name="target_embedding")
            # float32 logits keep the softmax stable under mixed precision.
            self.logits = keras.layers.Dense(target_vocab_size, dtype="float32", name="logits")
        self.source_position_embedding = keras_hub.layers.PositionEmbedding(
            max_length, name="source_position_embedding")
        self.target_position_embedding = keras_hub.layers.PositionEmbedding(
            max_length, name="target_position_embedding")
        self.source_embedding_dropout = keras.layers.Dropout(dropout, name="source_embedding_dropout")
        self.target_embedding_dropout = keras.layers.Dropout(dropout, name="target_embedding_dropout")
        self.encoder_layers = [
            keras_hub.layers.TransformerEncoder(intermediate_dim, num_heads, dropout=dropout,
                                                normalize_first=normalize_first,
                                                name=f"encoder_layer_{i}")
            for i in range(num_encoder_layers)
        ]
        self.decoder_layers = [
            keras_hub.layers.TransformerDecoder(intermediate_dim, num_heads, dropout=dropout,
                                                normalize_first=normalize_first,
                                                name=f"decoder_layer_{i}")
            for i in range(num_decoder_layers)
        ]
        if normalize_first:
            # Pre-LN blocks leave the residual stream unnormalised; these close each stack.
            self.encoder_output_layer_norm = keras.layers.LayerNormalization(
                epsilon=1e-5, name="encoder_output_layer_norm")
            self.decoder_output_layer_norm = keras.layers.LayerNormalization(
                epsilon=1e-5, name="decoder_output_layer_norm")

        # === Config ===
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.normalize_first = normalize_first
        self.tie_embeddings = tie_embeddings
        self.max_length = max_length

    def get_config(self):
        return {
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "num_encoder_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "normalize_first": self.normalize_first,
            "tie_embeddings": self.tie_embeddings,
            "max_length": self.max_length,
        }

    @classmethod
    def from_config(cls, model_config, vocab=None, **options):
        if vocab is None:  # Keras deserialisation: model_config is get_config()'s dict.
            return cls(**model_config)
        return cls(source_vocab_size=vocab.source_vocab_size,
                   target_vocab_size=vocab.target_vocab_size, **dict(model_config), **options)

    @classmethod
    def validate_config(cls, model_config, vocab, pair):
        if pair is not None and pair.is_multi_source:
            raise UserError(f"{cls.registered_name} reads one source language, but --pair={pair} has "
                            "several; use a single-source pair (e.g. en-de) or --model=adversarial")
        for key in ("num_encoder_layers", "num_decoder_layers", "hidden_dim", "num_heads",
                    "intermediate_dim", "max_length"):
            if model_config[key] < 1:
                raise UserError(f"{cls.registered_name}: model.{key} must be >= 1, got {model_config[key]}")
        check_transformer_args(model_config.hidden_dim, model_config.num_heads,
                               model_config.tie_embeddings,
                               vocab.joint and vocab.source_vocab_size == vocab.target_vocab_size)

    # --- Encoder -------------------------------------------------------------------------------

    def _embed(self, token_ids, embedding, position_embedding, dropout, start_index=0, training=False):
        x = embedding(token_ids) * tf.cast(self.hidden_dim ** 0.5, embedding.compute_dtype)
        x = x + position_embedding(x, start_index=start_index)
        return dropout(x, training=training)

    def _encode(self, encoder_token_ids, training=False):
        """Returns (encoder outputs [B, S, hidden_dim], padding mask bool [B, S])."""
        padding_mask = tf.not_equal(encoder_token_ids, PAD_ID)
        x = self._embed(encoder_token_ids, self.source_embedding, self.source_position_embedding,
                        self.source_embedding_dropout, training=training)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
        if self.normalize_first:
            x = self.encoder_output_layer_norm(x)
        return x, padding_mask

    # --- Decoder -------------------------------------------------------------------------------

    def _output(self, x, output_kernel=None):
        if self.normalize_first:
            x = self.decoder_output_layer_norm(x)
        if self.tie_embeddings and output_kernel is not None:
            # What ReversibleEmbedding(reverse=True) computes, with the transpose done once per
            # decoding call (decoding_weights): without XLA, x @ E^T as a transposed-operand matmul
            # took 31-45 % longer per step than x @ (E^T) on a CPU (benchmarks/decode_step_ops.py).
            dtype = self.target_embedding.reverse_dtype or x.dtype
            return self.logits(tf.matmul(tf.cast(x, dtype), tf.cast(output_kernel, dtype)))
        if self.tie_embeddings:
            return self.logits(self.target_embedding(x, reverse=True))
        return self.logits(x)

    def output_logits(self, features, training=False):
        return self._output(features)

    def _decode(self, decoder_token_ids, encoder_outputs, encoder_padding_mask, training=False):
        """Teacher-forced decoder: features [B, T, hidden_dim] for every target position."""
        x = self._embed(decoder_token_ids, self.target_embedding, self.target_position_embedding,
                        self.target_embedding_dropout, training=training)
        decoder_padding_mask = tf.not_equal(decoder_token_ids, PAD_ID)
        for layer in self.decoder_layers:
            x = layer(x, encoder_outputs, decoder_padding_mask=decoder_padding_mask,
                      encoder_padding_mask=encoder_padding_mask, training=training)
        return x

    def decoder_features(self, inputs, training=False):
        encoder_outputs, encoder_padding_mask = self._encode(inputs["encoder_token_ids"], training)
        return self._decode(inputs["decoder_token_ids"], encoder_outputs, encoder_padding_mask,
                            training)

    def encode(self, encoder_token_ids, max_decode_length, static_shapes=True):
        if isinstance(max_decode_length, int) and max_decode_length > self.max_length:
            raise UserError(f"{self.registered_name}: max_decode_length={max_decode_length} exceeds the "
                            f"model's max_length={self.max_length} (its learned positions)")
        if not all(layer.built for layer in self.decoder_layers):
            self(self.dummy_inputs())  # keras-hub creates the cross-attention weights on first call.
        encoder_outputs, encoder_padding_mask = self._encode(encoder_token_ids)
        batch_size = tf.shape(encoder_token_ids)[0]
        head_dim = self.hidden_dim // self.num_heads
        # Caches are heads-first, [batch, heads, length, head_dim], the layout of the attention
        # matmuls, so that no step transposes a whole cache. Without static shapes they start empty
        # and grow by one position per step: a step then copies (to append, and to reorder beams)
        # and attends over the positions so far, not over max_decode_length ones.
        cache_length = max_decode_length if static_shapes else 0
        empty = tf.zeros([batch_size, self.num_heads, cache_length, head_dim], encoder_outputs.dtype)
        # Additive attention bias for padded source positions: [batch, 1 head, 1 query, source].
        state = {"cross_bias": _mask_to_bias(encoder_padding_mask[:, None, None, :], encoder_outputs.dtype)}
        if static_shapes:
            # Each cache position's index, [batch, 1, 1, max_decode_length] (state entries are
            # batch-first): the new token may see those up to its own.
            positions = tf.range(max_decode_length)[None, None, None, :]
            state["cache_positions"] = tf.tile(positions, [batch_size, 1, 1, 1])
        for i, layer in enumerate(self.decoder_layers):
            # Cross-attention keys/values depend on the source only: projected once per sentence.
            cross_attention = layer._cross_attention_layer
            state[f"cross_key_{i}"] = _heads_first(cross_attention._key_dense(encoder_outputs))
            state[f"cross_value_{i}"] = _heads_first(cross_attention._value_dense(encoder_outputs))
            state[f"self_key_{i}"] = empty
            state[f"self_value_{i}"] = empty
        return state

    def decoding_state_shapes(self, state):
        shapes = super().decoding_state_shapes(state)
        if "cache_positions" not in state:  # Growing caches: their length axis changes every step.
            for i in range(len(self.decoder_layers)):
                for name in (f"self_key_{i}", f"self_value_{i}"):
                    shapes[name] = tf.TensorShape([None, self.num_heads, None, state[name].shape[3]])
        return shapes

    def decoding_weights(self):
        # Once per decoding call, not per token: each decoder layer's self-attention query, key and
        # value kernels side by side (one matmul), and the tied output matrix transposed.
        weights = {}
        for i, layer in enumerate(self.decoder_layers):
            weights[f"self_qkv_{i}"] = _fused_qkv(layer._self_attention_layer)
        if self.tie_embeddings:
            weights["output_kernel"] = tf.transpose(self.target_embedding.embeddings)
        return weights

    def decode_step(self, token_ids, state, index, weights=None):
        index = tf.convert_to_tensor(index, tf.int32)
        x = self._embed(token_ids[:, None], self.target_embedding, self.target_position_embedding,
                        self.target_embedding_dropout, start_index=index)[:, 0, :]
        weights = weights or self.decoding_weights()
        x, new_state = cached_decoder_stack(self.decoder_layers, x, state, index, weights)
        output_kernel = weights.get("output_kernel")
        return tf.cast(self._output(x, output_kernel), tf.float32), new_state

    # --- Transfer ------------------------------------------------------------------------------

    # A language model's weights that a Transformer encoder takes (Ramachandran et al. 2017): each
    # decoder layer's self-attention (bidirectional here, causal there) and feed-forward block.
    _ENCODER_FROM_LM = {"source_embedding/": "target_embedding/", "source_position_embedding/": "target_position_embedding/",
                        "encoder_output_layer_norm/": "decoder_output_layer_norm/",
                        "encoder_layer/self_attention_layer/": "decoder_layer/self_attention/",
                        "encoder_layer/": "decoder_layer/"}

    def encoder_key_in_lm(self, key):
        if self.tie_embeddings:
            raise UserError("--encoder_from: the child's one embedding matrix (model.tie_embeddings=true) is the "
                            "decoder's too, and cannot hold two language models' embeddings: "
                            "--set=model.tie_embeddings=false")
        for prefix, lm_prefix in self._ENCODER_FROM_LM.items():
            if key.startswith(prefix):
                return lm_prefix + key[len(prefix):]
        return None

    def parent_weight_key(self, key, parent_task_type):
        # A language model's embedding is "target_embedding" whether tied or not; a tied
        # translator's is "shared_embedding" (its encoder reads it too).
        if parent_task_type == "lm" and self.tie_embeddings and key.startswith("shared_embedding/"):
            return "target_embedding/" + key.split("/", 1)[1]
        return key

    def vocab_axes(self):
        axes = {self.logits.bias.path: ("target", 0)}
        if self.tie_embeddings:
            # One joint vocabulary: "source" and "target" name the same tokenizer here.
            axes[self.target_embedding.embeddings.path] = ("target", 0)
        else:
            axes[self.source_embedding.embeddings.path] = ("source", 0)
            axes[self.target_embedding.embeddings.path] = ("target", 0)
            axes[self.logits.kernel.path] = ("target", 1)
        return axes

    def layer_groups(self):
        embeddings = [self.source_embedding.name]
        if not self.tie_embeddings:
            embeddings.append(self.target_embedding.name)
        embeddings += ["source_position_embedding", "target_position_embedding"]
        final_norms = {"encoder": [], "decoder": []}
        if self.normalize_first:
            final_norms = {"encoder": ["encoder_output_layer_norm"],
                           "decoder": ["decoder_output_layer_norm"]}
        return {
            "embeddings": embeddings,
            "encoder": [layer.name for layer in self.encoder_layers] + final_norms["encoder"],
            "decoder": [layer.name for layer in self.decoder_layers] + final_norms["decoder"],
            "head": ["logits"],
        }


def _mask_to_bias(mask, dtype):
    """Boolean keep-mask -> additive attention bias: 0, or Keras' large negative number (-1e9, or
    -3e4 in float16, whose range ends at 65504) for masked positions."""
    large_negative = -3e4 if tf.as_dtype(dtype) == tf.float16 else -1e9
    return tf.where(mask, tf.constant(0.0, dtype), tf.constant(large_negative, dtype))


def _heads_first(x):
    """[batch, length, heads, head_dim] -> [batch, heads, length, head_dim]."""
    return tf.transpose(x, [0, 2, 1, 3])


def _flat_kernel(dense, dtype):
    """A MultiHeadAttention input projection (EinsumDense, kernel [width, heads, head_dim]) as a
    [width, heads * head_dim] matrix and bias in the compute dtype, for one plain matmul."""
    kernel = tf.reshape(dense.kernel, [dense.kernel.shape[0], -1])
    return tf.cast(kernel, dtype), tf.cast(tf.reshape(dense.bias, [-1]), dtype)


def _fused_qkv(attention):
    """(kernel [width, 3 * heads * head_dim], bias) of a MultiHeadAttention's query, key and value."""
    kernels, biases = zip(*(_flat_kernel(dense, dense.kernel.dtype) for dense in
                            (attention._query_dense, attention._key_dense, attention._value_dense)))
    return tf.concat(kernels, 1), tf.concat(biases, 0)


def _split_heads(x, num_heads):
    """[batch, heads * head_dim] -> [batch, heads, 1 query, head_dim]."""
    return tf.reshape(x, [tf.shape(x)[0], num_heads, 1, -1])


def _attend(attention, query, key, value, bias):
    """Scaled dot-product attention of one query per sentence, with the weights of a keras
    ``MultiHeadAttention``: query [batch, heads, 1, head_dim], key/value [batch, heads, length,
    head_dim], bias broadcastable to [batch, heads, 1, length] or None (every key visible).
    Returns [batch, width].

    Follows whichever path Keras takes in the teacher-forced call, so that cached decoding matches
    it under mixed precision too. (A source of padding only, which encode_source never makes, gets
    uniform weights here where Keras' masked softmax gives zeros.)"""
    if attention._dropout == 0:
        # ops.dot_product_attention: scores scaled, biased and normalised in float32.
        scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32) * attention._inverse_sqrt_key_dim
        if bias is not None:
            scores += tf.cast(bias, tf.float32)
        weights = tf.cast(tf.nn.softmax(scores), value.dtype)
    else:
        # The einsum path (attention dropout): the query scaled, softmax in the compute dtype.
        query = query * tf.cast(attention._inverse_sqrt_key_dim, query.dtype)
        scores = tf.matmul(query, key, transpose_b=True)
        weights = tf.nn.softmax(scores if bias is None else scores + bias)
    context = tf.matmul(weights, value)  # [batch, heads, 1, head_dim]
    output_kernel = attention._output_dense.kernel  # [heads, head_dim, width]
    output_kernel = tf.cast(tf.reshape(output_kernel, [-1, output_kernel.shape[-1]]), query.dtype)
    context = tf.reshape(context, [tf.shape(context)[0], -1])
    return tf.matmul(context, output_kernel) + tf.cast(attention._output_dense.bias, query.dtype)


def cached_decoder_stack(layers, x, state, index, weights):
    """One token ([batch, width]) at position ``index`` through every decoder layer's cached step
    (``_cached_decoder_step``), with the caches of ``state`` (``self_key_<i>``, ``self_value_<i>``;
    ``cross_key_<i>``, ``cross_value_<i>``, ``cross_bias`` where the layers have cross-attention).
    Returns (x, the new state)."""
    self_bias = None  # A growing cache holds exactly the positions the new token may see.
    if "cache_positions" in state:
        # The new token sees itself and every earlier position: [1, 1 head, 1 query, keys].
        self_bias = _mask_to_bias(state["cache_positions"] <= index, x.dtype)
    new_state = dict(state)
    for i, layer in enumerate(layers):
        x, new_state[f"self_key_{i}"], new_state[f"self_value_{i}"] = _cached_decoder_step(
            layer, x, state[f"self_key_{i}"], state[f"self_value_{i}"], state.get(f"cross_key_{i}"),
            state.get(f"cross_value_{i}"), index, self_bias, state.get("cross_bias"), weights[f"self_qkv_{i}"])
    return x, new_state


def _cached_decoder_step(layer, x, self_key, self_value, cross_key, cross_value, index, self_bias, cross_bias,
                         self_qkv):
    """One token ([batch, width]) through a ``keras_hub.layers.TransformerDecoder`` at inference,
    with its own weights.

    keras-hub's cached call keeps keys and values stacked in one [batch, 2, length, heads, dim]
    tensor and re-slices, updates and re-stacks it on every step, and Keras' attention transposes
    the whole cache to heads-first for its matmuls on every step: on a CPU that copying was most of
    the per-step time (benchmarks/decoding_speed.py). Here the caches are separate and heads-first,
    updated in place, and the self-attention query, key and value come from one matmul
    (``self_qkv``, from ``decoding_weights``).
    tests/models/test_transformer.py checks that the logits match the teacher-forced model.
    ``cross_key`` None: a layer without cross-attention (a language model's).
    Returns (x, self_key, self_value).
    """
    num_heads = self_key.shape[1]

    def sublayer(norm, x, fn):
        residual = x
        x = fn(norm(x) if layer.normalize_first else x) + residual
        return x if layer.normalize_first else norm(x)

    def self_attention(h):
        nonlocal self_key, self_value
        attention = layer._self_attention_layer
        kernel, bias = self_qkv  # _fused_qkv, computed once per decoding call.
        projected = tf.matmul(h, tf.cast(kernel, h.dtype)) + tf.cast(bias, h.dtype)
        # Slices, not tf.split: Split on the minor axis was ~5x slower here (TF CPU executor).
        width = projected.shape[-1] // 3
        query, key, value = (projected[:, i * width:(i + 1) * width] for i in range(3))
        if self_bias is None:  # A growing cache (encode without static shapes).
            self_key = tf.concat([self_key, _split_heads(key, num_heads)], axis=2)
            self_value = tf.concat([self_value, _split_heads(value, num_heads)], axis=2)
        else:
            self_key = keras.ops.slice_update(self_key, [0, 0, index, 0], _split_heads(key, num_heads))
            self_value = keras.ops.slice_update(self_value, [0, 0, index, 0], _split_heads(value, num_heads))
        return _attend(attention, _split_heads(query, num_heads), self_key, self_value, self_bias)

    def cross_attention(h):
        attention = layer._cross_attention_layer
        kernel, bias = _flat_kernel(attention._query_dense, h.dtype)
        query = _split_heads(tf.matmul(h, kernel) + bias, num_heads)
        return _attend(attention, query, cross_key, cross_value, cross_bias)

    x = sublayer(layer._self_attention_layer_norm, x, self_attention)
    if cross_key is not None:  # A language model's layers have no cross-attention.
        x = sublayer(layer._cross_attention_layer_norm, x, cross_attention)
    x = sublayer(layer._feedforward_layer_norm, x,
                 lambda h: layer._feedforward_output_dense(layer._feedforward_intermediate_dense(h)))
    return x, self_key, self_value


def check_transformer_args(hidden_dim, num_heads, tie_embeddings, joint_vocabulary):
    """UserError for the transformer settings that cannot build."""
    if hidden_dim % num_heads:
        raise UserError(f"transformer: model.num_heads={num_heads} must divide "
                        f"model.hidden_dim={hidden_dim} (each head gets hidden_dim / num_heads)")
    if tie_embeddings and not joint_vocabulary:
        raise UserError("transformer: model.tie_embeddings=true shares one embedding matrix between "
                        "source and target, which needs a joint vocabulary; set tokenizer.joint=true "
                        "or model.tie_embeddings=false")
