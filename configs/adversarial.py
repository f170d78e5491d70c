"""adversarial: German, French and Spanish into English through one language-invariant encoder.

The translator is the CPU-sized configs/transformer_tiny.py model (or configs/lstm_seq2seq.py's with
``--set=model.encoder_type=lstm``), copied here as the section ``model.<encoder_type>``; the rest of
``model`` configures the language discriminator behind the gradient reversal layer. Compare with
``--set=model.adversary=false``: the same run with the discriminator only observing.
"""

import pathlib

import common

from xling_zoo.config import load_config_file

HERE = pathlib.Path(__file__).resolve().parent


def get_config():
    config = common.get_common_config()
    config.model_name = "adversarial"
    # Three source languages into English, from the builtin corpus (one shared vocabulary).
    config.pair = "de,fr,es-en"
    config.model = common.ml_collections.ConfigDict()
    # Which translator shares its encoder: "transformer" or "lstm" (the section of that name).
    config.model.encoder_type = "transformer"
    # The transformer translator: configs/transformer_tiny.py's model section (override as
    # --set=model.transformer.hidden_dim=128; configs/transformer.py documents each field).
    config.model.transformer = load_config_file(HERE / "transformer_tiny.py").model
    # The LSTM translator: configs/lstm_seq2seq.py's model section.
    config.model.lstm = load_config_file(HERE / "lstm_seq2seq.py").model
    # How the encoder fights the discriminator: "reversal" (gradient reversal, raise its loss) or
    # "confusion" (push its prediction to uniform; see experiments/adversarial/).
    config.model.adversary_objective = "reversal"
    # Reverse the discriminator's gradient into the encoder; false = the no-adversary baseline
    # (the discriminator still trains on detached states, so its accuracy is still measured).
    config.model.adversary = True
    # Final weight lambda of the reversed gradient.
    config.model.adversary_weight = 0.1
    # Steps over which lambda ramps from 0 (Ganin's 2 / (1 + exp(-10 p)) - 1): translate first.
    config.model.adversary_ramp_steps = 500
    # Discriminator-only updates per training step (its own Adam, discriminator weights only).
    # Several: a discriminator that lags behind the encoder is fooled, not defeated.
    config.model.discriminator_steps = 3
    # Width of the discriminator's hidden layers.
    config.model.discriminator_hidden_dim = 256
    # Hidden layers of the discriminator MLP (0 = a linear probe).
    config.model.discriminator_num_layers = 1
    # Dropout before each discriminator layer.
    config.model.discriminator_dropout = 0.1
    # Learning rate of the discriminator's Adam.
    config.model.discriminator_learning_rate = 1e-3

    # Same budget as configs/transformer_tiny.py, in updates, not minutes: the same command gives the
    # same model on a busy or a fast machine (~1,076 updates took 11 minutes on one CPU core,
    # experiments/model_comparison round 3; train.max_minutes adds a clock if you want one).
    config.train.steps = 2000
    config.train.max_minutes = 0.0
    # A run of a few hundred steps cannot afford the default 500-step warm-up.
    config.train.warmup_steps = 200
    # The translator's peak Adam learning rate and batch (configs/transformer_tiny.py's).
    config.train.learning_rate = 2e-3
    config.data.tokens_per_batch = 2048
    return config
