"""transformer: a small pre-LN Transformer; documents every model field.

Three encoder and three decoder layers of width 256 with tied embeddings: about 7.7M weights with
the default 8000-piece joint vocabulary, ~1 s per 4096-token batch on two CPU cores, so an 11-minute
CPU run made only a few hundred updates (experiments/model_comparison/, round 2). On a CPU use
configs/transformer_tiny.py; this size suits a GPU, and configs/transformer_base.py is the
paper-sized model for GPU/TPU.
"""

import common


def get_config():
    config = common.get_common_config()
    config.model_name = "transformer"
    config.model = common.ml_collections.ConfigDict()
    # Stacked TransformerEncoder layers.
    config.model.num_encoder_layers = 3
    # Stacked TransformerDecoder layers (self-attention, cross-attention, feed-forward).
    config.model.num_decoder_layers = 3
    # Width of the embeddings and of every layer's output (d_model).
    config.model.hidden_dim = 256
    # Attention heads per layer; must divide hidden_dim.
    config.model.num_heads = 4
    # Width of the feed-forward block inside each layer (d_ff).
    config.model.intermediate_dim = 1024
    # Dropout on embeddings, attention weights and residual branches.
    config.model.dropout = 0.1
    # Pre-layer-norm: trains stably with a short warm-up, which a short CPU run needs.
    config.model.normalize_first = True
    # One embedding matrix for source, target and output projection (needs tokenizer.joint).
    config.model.tie_embeddings = True
    # Longest sequence the learned position embeddings cover (>= data.max_length and
    # eval.max_decode_length).
    config.model.max_length = 256

    # Passes and early stopping, not a clock: the same command gives the same model on any machine
    # (train.max_minutes adds a clock if you want one). ~2,000 updates on en-de: a GPU's minutes,
    # a CPU's hour (there, use configs/transformer_tiny.py).
    config.train.epochs = 30
    config.train.max_minutes = 0.0
    # A run of a few hundred steps cannot afford the default 500-step warm-up.
    config.train.warmup_steps = 200
    # Peak Adam learning rate: the usual Transformer peak at this width (the common 2e-3 suits LSTMs).
    config.train.learning_rate = 1e-3
    return config
