"""transformer_tiny: the `transformer` model sized for a CPU: what the transfer experiment and a
first try on a laptop use (`--config=configs/transformer_tiny.py`).

Two encoder and two decoder layers of width 256 with a 512-wide feed-forward block and a 4k tied
vocabulary: ~2.5x fewer FLOPs per token than configs/transformer.py, so several times more
updates fit a CPU budget. Same model code; only sizes and the schedule differ.
"""

import pathlib

from xling_zoo.config import load_config_file


def get_config():
    config = load_config_file(pathlib.Path(__file__).resolve().parent / "transformer.py")
    config.model.num_encoder_layers = 2
    config.model.num_decoder_layers = 2
    config.model.intermediate_dim = 512
    # 18k short UI strings: 4k pieces keep the tied output layer small (as lstm_seq2seq).
    config.tokenizer.vocab_size = 4000
    # Small batches: more updates per minute, which a short run needs more than large batches.
    config.data.tokens_per_batch = 2048
    config.train.warmup_steps = 200
    config.train.learning_rate = 2e-3
    # A number of updates, not a clock (same command, same model on any machine): 1,450 updates
    # took 11 minutes on one CPU core in experiments/model_comparison (round 3).
    config.train.steps = 2000
    config.train.max_minutes = 0.0
    # Op determinism cost nothing measurable on a 2-core CPU (measured on lstm_seq2seq): 7,412 vs 7,170 target tok/s with and
    # without it (python -m xling_zoo.train --steps=300 --set=train.eval_every_steps=300
    # --deterministic=true|false, default lstm_seq2seq on en-de, one run each).
    config.train.deterministic = True
    return config
