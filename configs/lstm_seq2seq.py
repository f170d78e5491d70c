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

    # Wall-clock budget: the whole default run (corpus, tokenizer, training, test) fits 15 minutes.
    config.train.epochs = 30
    config.train.max_minutes = 10.0
    config.tokenizer.vocab_size = 8000
    return config
