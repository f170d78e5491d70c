"""lstm_seq2seq: the classic Keras encoder-decoder, sized to train in ~12 minutes on a 2-core CPU.

With bidirectional=False and attention=False it is exactly the Keras tutorial recipe: embedding +
LSTM encoder whose final states initialise an LSTM decoder, then a softmax layer.
"""

import common


def get_config():
    config = common.get_common_config()
    config.model_name = "lstm_seq2seq"
    config.model = common.ml_collections.ConfigDict()
    # Size of the source and target token embeddings.
    config.model.embedding_dim = 256
    # LSTM units (the decoder's; a bidirectional encoder uses units // 2 per direction).
    config.model.units = 256
    # Stacked LSTM layers in the encoder and in the decoder (layer i's final state starts decoder layer i).
    config.model.num_layers = 1
    # Dropout on embeddings, between layers and before the output layer.
    config.model.dropout = 0.1
    # Read the source in both directions.
    config.model.bidirectional = True
    # Luong (general) attention over the encoder outputs; the plain recipe has none.
    config.model.attention = True

    # Sized for a 2-core CPU: the whole README command (corpus, tokenizer, training, evaluation)
    # takes about 15 minutes on an idle one. A number of updates, not a clock, so that the same
    # command gives the same model on a busy or a fast machine (train.max_minutes caps it if set).
    config.train.steps = 3500
    config.train.max_minutes = 0.0
    # An evaluation every epoch (138 updates on en-de): with patience 3, one noisy validation BLEU
    # plateau stopped the run at 2,208 updates (test BLEU 25.61 greedy, against 27.74 at 3,916).
    config.train.early_stopping_patience = 6
    # Op determinism cost nothing measurable on a 2-core CPU: 7,412 vs 7,170 target tok/s with and
    # without it (python -m xling_zoo.train --steps=300 --set=train.eval_every_steps=300
    # --deterministic=true|false, default lstm_seq2seq on en-de, one run each).
    config.train.deterministic = True
    config.train.warmup_steps = 150
    # Measured: 4e-3 reached the validation loss of 2e-3 in half the updates (runs/probe-*, 500 steps).
    config.train.learning_rate = 4e-3
    config.data.tokens_per_batch = 2048
    # 18k short UI strings: 4k pieces keep the output layer (most of the FLOPs) small.
    config.tokenizer.vocab_size = 4000
    return config
