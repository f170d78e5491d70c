"""transformer (base): Vaswani et al. (2017) "Transformer base" for GPU/TPU runs.

configs/transformer.py (which documents every model field) at the paper's size: six encoder and
six decoder layers, d_model 512, 8 heads, d_ff 2048, a shared 32k vocabulary with tied embeddings
(~60M weights). Run with ``--model=transformer --config=configs/transformer_base.py``. Too slow for
a CPU; use configs/transformer.py there.
"""

import pathlib

from xling_zoo.config import load_config_file


def get_config():
    config = load_config_file(pathlib.Path(__file__).resolve().parent / "transformer.py")
    # Six encoder layers.
    config.model.num_encoder_layers = 6
    # Six decoder layers.
    config.model.num_decoder_layers = 6
    # d_model.
    config.model.hidden_dim = 512
    # Attention heads (64 dimensions each).
    config.model.num_heads = 8
    # d_ff.
    config.model.intermediate_dim = 2048
    # Pre-layer-norm is kept: the paper is post-LN, but pre-LN converges without tuning the schedule.
    config.model.normalize_first = True

    # A shared SentencePiece vocabulary of the usual WMT size.
    config.tokenizer.vocab_size = 32000
    # Keep sentences up to 128 pieces (WMT sentences are longer than the builtin corpus's).
    config.data.max_length = 128
    # Buckets up to data.max_length.
    config.data.bucket_boundaries = (8, 12, 16, 24, 32, 48, 64, 96, 128)
    # About 25k target tokens per step, as in the paper (per replica: divide by the replica count).
    config.data.tokens_per_batch = 25000
    # Train by steps, not epochs (the paper's base model: 100k steps).
    config.train.steps = 100000
    # No wall-clock budget: the step count decides.
    config.train.max_minutes = 0.0
    # Peak learning rate of the paper's schedule d_model^-0.5 * warmup^-0.5 (~7e-4).
    config.train.learning_rate = 7e-4
    # The paper's warm-up.
    config.train.warmup_steps = 4000
    # bfloat16 activations: the usual choice on TPUs and Ampere or newer GPUs.
    config.train.mixed_precision = "mixed_bfloat16"
    # XLA-compiled training steps, the usual choice on accelerators (time both on yours).
    config.train.jit_compile = True
    # Evaluate every 5000 steps.
    config.train.eval_every_steps = 5000
    # Stop after 5 evaluations without a better validation BLEU.
    config.train.early_stopping_patience = 5
    # Beam search for the reported scores, as in the paper.
    config.eval.beam_size = 4
    # Translations up to data.max_length pieces.
    config.eval.max_decode_length = 128
    return config
