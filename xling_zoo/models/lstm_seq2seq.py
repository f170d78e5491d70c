"""lstm_seq2seq: the classic Keras encoder-decoder, with optional bidirectional encoder and attention.

With ``bidirectional=False, attention=False`` it is exactly the Keras tutorial recipe (Chollet,
"A ten-minute introduction to sequence-to-sequence learning in Keras"): an embedding + LSTM encoder
whose final states initialise an LSTM decoder, followed by a softmax layer. ``attention=True`` adds
Luong "general" global attention (Luong et al. 2015) over the encoder outputs.
"""

import keras
import tensorflow as tf

from xling_zoo.errors import UserError
from xling_zoo.layers.hoisted_lstm import HoistedLSTM
from xling_zoo.models.base import PAD_ID, Seq2SeqTask
from xling_zoo.registry import register_model


@register_model("lstm_seq2seq")
class LSTMSeq2Seq(Seq2SeqTask):
    """An LSTM encoder-decoder translator.

    Args:
        source_vocab_size: int. Size of the source vocabulary.
        target_vocab_size: int. Size of the target vocabulary.
        embedding_dim: int. Size of the token embeddings.
        units: int. LSTM units of each decoder layer (a bidirectional encoder uses ``units // 2``
            per direction so that its concatenated states initialise the decoder directly).
        num_layers: int. Stacked LSTM layers in the encoder and in the decoder.
        dropout: float. Dropout on embeddings, between layers and before the output layer.
        bidirectional: bool. Read the source in both directions.
        attention: bool. Luong general attention over the encoder outputs.

    Example:
    >>> model = LSTMSeq2Seq(source_vocab_size=100, target_vocab_size=100, embedding_dim=8, units=8)
    >>> ids = tf.constant([[5, 6, 3]])
    >>> model({"encoder_token_ids": ids, "decoder_token_ids": ids}).shape
    TensorShape([1, 3, 100])
    """

    translator_section = "lstm"
    lm_decoder_type = "lstm"
    lm_decoder_keys = {"embedding_dim": "embedding_dim", "units": "units", "num_layers": "num_layers"}

    def __init__(self, source_vocab_size, target_vocab_size, embedding_dim=256, units=256,
                 num_layers=1, dropout=0.1, bidirectional=False, attention=False, **kwargs):
        super().__init__(name=kwargs.pop("name", "lstm_seq2seq"), **kwargs)
        if bidirectional and units % 2:
            raise UserError(f"lstm_seq2seq: bidirectional needs an even number of units, got {units}")
        # === Layers ===
        self.source_embedding = keras.layers.Embedding(source_vocab_size, embedding_dim, name="source_embedding")
        self.target_embedding = keras.layers.Embedding(target_vocab_size, embedding_dim, name="target_embedding")
        self.encoder_layers = []
        for i in range(num_layers):
            if bidirectional:
                # Named inner layer: Bidirectional derives forward_/backward_ names from it, and an
                # auto-numbered name would differ between two instances (breaking transfer by path).
                layer = keras.layers.Bidirectional(
                    HoistedLSTM(units // 2, return_sequences=True, return_state=True, name="lstm"),
                    name=f"encoder_lstm_{i}")
            else:
                layer = HoistedLSTM(units, return_sequences=True, return_state=True, name=f"encoder_lstm_{i}")
            self.encoder_layers.append(layer)
        self.decoder_layers = [
            HoistedLSTM(units, return_sequences=True, return_state=True, name=f"decoder_lstm_{i}")
            for i in range(num_layers)
        ]
        if attention:
            self.attention_score = keras.layers.Dense(units, use_bias=False, name="attention_score")
            self.attention_projection = keras.layers.Dense(units, activation="tanh", use_bias=False,
                                                           name="attention_projection")
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        # float32 logits keep the softmax stable under mixed precision.
        self.logits = keras.layers.Dense(target_vocab_size, dtype="float32", name="logits")

        # === Config ===
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.num_layers = num_layers
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.attention = attention

    def get_config(self):
        return {
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "attention": self.attention,
        }

    @classmethod
    def from_config(cls, model_config, vocab=None, **options):
        if vocab is None:  # Keras deserialisation: model_config is get_config()'s dict.
            return cls(**model_config)
        return cls(source_vocab_size=vocab.source_vocab_size, target_vocab_size=vocab.target_vocab_size,
                   **dict(model_config), **options)

    @classmethod
    def validate_config(cls, model_config, vocab, pair):
        if pair is not None and pair.is_multi_source:
            raise UserError(f"lstm_seq2seq reads one source language, but --pair={pair} has several; "
                            "use a single-source pair (e.g. en-de) or --model=adversarial")
        for key in ("embedding_dim", "units", "num_layers"):
            if model_config[key] < 1:
                raise UserError(f"lstm_seq2seq: model.{key} must be >= 1, got {model_config[key]}")
        if model_config.bidirectional and model_config.units % 2:
            raise UserError(f"lstm_seq2seq: bidirectional needs an even model.units, got {model_config.units}")

    # --- Encoder -------------------------------------------------------------------------------

    def _encode(self, encoder_token_ids, training=False):
        """Returns (encoder outputs [B, S, units], source mask [B, S], per-layer final [h, c])."""
        mask = tf.not_equal(encoder_token_ids, PAD_ID)
        x = self.dropout_layer(self.source_embedding(encoder_token_ids), training=training)
        states = []
        for i, layer in enumerate(self.encoder_layers):
            if i:
                x = self.dropout_layer(x, training=training)
            x, *layer_states = layer(x, mask=mask, training=training)
            if self.bidirectional:
                h_fw, c_fw, h_bw, c_bw = layer_states
                layer_states = [tf.concat([h_fw, h_bw], -1), tf.concat([c_fw, c_bw], -1)]
            states.append(layer_states)
        return x, mask, states

    # --- Decoder -------------------------------------------------------------------------------

    def _attend(self, decoder_outputs, encoder_outputs, source_mask):
        """Luong general attention: score(h_t, h_s) = h_t . W h_s; output tanh(W_c [c_t; h_t])."""
        keys = self.attention_score(encoder_outputs)  # [B, S, U]
        scores = tf.matmul(decoder_outputs, keys, transpose_b=True)  # [B, T, S]
        scores = tf.where(source_mask[:, None, :], scores, tf.cast(-1e9, scores.dtype))
        weights = tf.nn.softmax(scores, axis=-1)
        context = tf.matmul(weights, encoder_outputs)
        return self.attention_projection(tf.concat([context, decoder_outputs], -1))

    def _features(self, x, encoder_outputs, source_mask):
        """Decoder LSTM outputs -> what the output layer reads (attentional states with attention)."""
        if self.attention:
            x = self._attend(x, encoder_outputs, source_mask)
        return x

    def output_logits(self, features, training=False):
        return self.logits(self.dropout_layer(features, training=training))

    def _decode(self, decoder_token_ids, encoder_outputs, source_mask, initial_states, training=False):
        """Teacher-forced decoder: features [B, T, units] from the encoder's outputs and final states."""
        x = self.dropout_layer(self.target_embedding(decoder_token_ids), training=training)
        target_mask = tf.not_equal(decoder_token_ids, PAD_ID)
        for i, layer in enumerate(self.decoder_layers):
            if i:
                x = self.dropout_layer(x, training=training)
            x, _, _ = layer(x, initial_state=initial_states[i], mask=target_mask, training=training)
        return self._features(x, encoder_outputs, source_mask)

    def decoder_features(self, inputs, training=False):
        encoder_outputs, source_mask, states = self._encode(inputs["encoder_token_ids"], training)
        return self._decode(inputs["decoder_token_ids"], encoder_outputs, source_mask, states, training)

    def encode(self, encoder_token_ids, max_decode_length=None, static_shapes=True):
        encoder_outputs, source_mask, states = self._encode(encoder_token_ids)
        state = {"encoder_outputs": encoder_outputs, "source_mask": source_mask}
        for i, (h, c) in enumerate(states):
            state[f"h_{i}"], state[f"c_{i}"] = h, c
        return state

    def decode_step(self, token_ids, state, index, weights=None):
        # The LSTM state carries the whole history, so a step needs no cache beyond it.
        x = self.target_embedding(token_ids)
        new_state = dict(state)
        for i, layer in enumerate(self.decoder_layers):
            x, (h, c) = layer.cell(x, [state[f"h_{i}"], state[f"c_{i}"]])
            new_state[f"h_{i}"], new_state[f"c_{i}"] = h, c
        features = self._features(x[:, None, :], state["encoder_outputs"], state["source_mask"])
        return tf.cast(self.output_logits(features[:, 0, :]), tf.float32), new_state

    # --- Transfer ------------------------------------------------------------------------------

    def encoder_key_in_lm(self, key):
        # A unidirectional encoder reads left to right as a language model does (Ramachandran et al. 2017).
        if self.bidirectional:
            raise UserError("--encoder_from: a bidirectional encoder cannot take a left-to-right language model's "
                            "LSTMs: --set=model.bidirectional=false")
        for prefix, lm_prefix in (("source_embedding/", "target_embedding/"), ("encoder_lstm/", "decoder_lstm/")):
            if key.startswith(prefix):
                return lm_prefix + key[len(prefix):]
        return None

    def vocab_axes(self):
        return {
            self.source_embedding.embeddings.path: ("source", 0),
            self.target_embedding.embeddings.path: ("target", 0),
            self.logits.kernel.path: ("target", 1),
            self.logits.bias.path: ("target", 0),
        }

    def layer_groups(self):
        head = ["logits"] + (["attention_score", "attention_projection"] if self.attention else [])
        return {
            "embeddings": ["source_embedding", "target_embedding"],
            "encoder": [layer.name for layer in self.encoder_layers],
            "decoder": [layer.name for layer in self.decoder_layers],
            "head": head,
        }
