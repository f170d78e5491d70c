"""lm: a language model of one language (``--language=nl``), for pretraining a translator's decoder.

It reads the ``language`` side of ``pair``'s corpus (the built-in corpus's en-nl training split for
``--language=nl``): never a validation or test sentence, which translation children are scored on.
Each network's sizes equal the decoder of the translator config it is meant to initialise:
``transformer`` that of configs/transformer_tiny.py, ``lstm`` that of configs/lstm_seq2seq.py.
"""

import common


def get_config():
    config = common.get_common_config()
    config.model_name = "lm"
    config.pair = ""  # en-<language> (config.load_config); set it to read another pair's side.
    config.model = common.ml_collections.ConfigDict()
    # "transformer" (keras-hub TransformerDecoder layers) or "lstm" (the classic LSTM language model).
    config.model.decoder_type = "transformer"

    config.model.transformer = common.ml_collections.ConfigDict()
    config.model.transformer.num_layers = 2
    config.model.transformer.hidden_dim = 256
    config.model.transformer.num_heads = 4
    config.model.transformer.intermediate_dim = 512
    config.model.transformer.dropout = 0.1
    config.model.transformer.normalize_first = True
    # The output projection is the embedding matrix (as a tied translator's).
    config.model.transformer.tie_embeddings = True
    config.model.transformer.max_length = 256

    config.model.lstm = common.ml_collections.ConfigDict()
    config.model.lstm.embedding_dim = 256
    config.model.lstm.units = 256
    config.model.lstm.num_layers = 1
    config.model.lstm.dropout = 0.1

    # Validation perplexity picks the best checkpoint and stops early; no label smoothing, so the
    # training loss is the negative log-likelihood that perplexity is of.
    config.train.selection_metric = "perplexity"
    config.train.label_smoothing = 0.0
    config.train.steps = 3000
    config.train.eval_every_steps = 250
    config.train.early_stopping_patience = 4
    config.train.deterministic = True
    config.train.warmup_steps = 200
    config.train.learning_rate = 2e-3
    config.data.tokens_per_batch = 2048
    config.tokenizer.vocab_size = 4000
    return config
