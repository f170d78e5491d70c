"""Settings shared by every model's config: corpus, tokenizer, input pipeline, training, decoding.

Each model's config file calls ``get_common_config()`` and adds its ``model`` section. Override any
field from the command line: ``--set=train.steps=200 --set=data.tokens_per_batch=2048``.
"""

import ml_collections  # Model configs use it through `common.ml_collections`.


def get_common_config():
    config = ml_collections.ConfigDict()
    # Registered model name (see `python -m xling_zoo.train --list_models`).
    config.model_name = ""
    # Corpus spec: builtin | tfds:NAME/CONFIG | tsv:PATH | tsv:TRAIN,VALIDATION,TEST | text:PREFIX.
    config.corpus = "builtin"
    # Direction SRC-TGT, or several sources into one target: "de,fr,es-en".
    config.pair = "en-de"
    # A monolingual model's (lm's) one language: it reads that side of `pair`'s corpus (en-LANGUAGE
    # when pair is ""). "" for a translator.
    config.language = ""
    # Where prepared datasets live (TFDS data_dir); "" = $XLING_ZOO_DATA_DIR or ~/.cache/xling_zoo.
    config.data_dir = ""
    # Use only this many training pairs (deterministic subsample); 0 = all of them.
    config.max_train_examples = 0
    # Skip (and count) malformed lines of tsv:/text: corpora instead of stopping at the first one.
    config.skip_bad_lines = False

    # Mixed fine-tuning (Chu et al. 2017): each pass over the training data also holds examples of
    # another pair (say the parent's), with its own target-language tag, so that a small corpus is
    # neither overfitted nor the other pair forgotten. mix.ratio is their share of each pass, in [0, 1).
    config.mix = ml_collections.ConfigDict()
    # The pair mixed in ("" = no mixing), e.g. "en-de" when fine-tuning an en-de parent on en-sv.
    config.mix.pair = ""
    # Its corpus spec ("" = config.corpus).
    config.mix.corpus = ""
    config.mix.ratio = 0.0

    config.tokenizer = ml_collections.ConfigDict()
    # SentencePiece vocabulary size (per tokenizer; one shared tokenizer when joint). An upper bound: a
    # corpus of fewer pairs gets max(512, its number of pairs) pieces (see data/tokenizer.py).
    config.tokenizer.vocab_size = 8000
    # "unigram" (default) or "bpe".
    config.tokenizer.model_type = "unigram"
    # One vocabulary for source and target (needed for tied embeddings and trivial transfer).
    config.tokenizer.joint = True
    # Train SentencePiece on at most this many sentences per side (sampled deterministically).
    config.tokenizer.max_training_sentences = 200000

    config.data = ml_collections.ConfigDict()
    # Longest sequence kept, in subword tokens (including bos/eos/language tag).
    config.data.max_length = 64
    # What happens to longer pairs in training: "drop" or "truncate" (the count is always reported).
    config.data.overlength = "drop"
    # Token budget per batch (padded tokens of the longer side); the batch size follows from it.
    config.data.tokens_per_batch = 4096
    # Length bucket upper bounds (in tokens); batches hold sequences of similar length.
    config.data.bucket_boundaries = (8, 12, 16, 24, 32, 48)
    # Shuffle buffer (examples) for training.
    config.data.shuffle_buffer = 20000
    # Prepend the target-language tag (<2de>) to the source: lets one vocabulary serve many pairs.
    config.data.target_language_tag = True

    config.train = ml_collections.ConfigDict()
    # Total optimisation steps; 0 = train for `epochs` passes over the data.
    config.train.steps = 0
    # Passes over the training data when steps == 0.
    config.train.epochs = 10
    # Wall-clock budget in minutes (0 = none): training stops after the first evaluation past it.
    config.train.max_minutes = 0.0
    # Peak learning rate of Adam.
    config.train.learning_rate = 2e-3
    # Linear warm-up steps, then inverse-square-root decay.
    config.train.warmup_steps = 500
    # Clip gradients to this global norm (0 = off).
    config.train.clipnorm = 1.0
    # Label smoothing of the target distribution.
    config.train.label_smoothing = 0.1
    # "" (float32), "mixed_bfloat16" or "mixed_float16".
    config.train.mixed_precision = ""
    # XLA-compile the training step (no reliable gain measured on CPU; see benchmarks/).
    config.train.jit_compile = False
    # Evaluate (validation loss and BLEU) every this many steps; 0 = once per epoch, or when an epoch is
    # under 100 updates every 100 with the child's early stopping (trainer.small_corpus_schedule).
    config.train.eval_every_steps = 0
    # Stop when the selection metric has not improved for this many evaluations (0 = never).
    config.train.early_stopping_patience = 3
    # Patience counted in updates since the best evaluation instead (0 = count evaluations as above):
    # an evaluation interval that changes with the data size leaves the patience as it was.
    config.train.early_stopping_patience_steps = 0
    # Early stopping cannot act before this many updates (a small corpus' first evaluations are noise).
    config.train.min_steps_before_early_stopping = 0
    # Validation figure that picks the best checkpoint and drives early stopping: "bleu", "chrf" or
    # "loss" (the lowest validation loss).
    config.train.selection_metric = "bleu"
    # Keep this many latest checkpoints.
    config.train.keep_checkpoints = 2
    # Also save a checkpoint every this many steps and every this many minutes (0 = only at
    # evaluations), so that a crash or preemption loses little; resuming is exact either way.
    config.train.checkpoint_every_steps = 1000
    config.train.checkpoint_every_minutes = 5.0
    # Deterministic ops (tf.config.experimental.enable_op_determinism): the same command gives the
    # same weights, and a run killed and resumed ends with the weights of an uninterrupted one.
    config.train.deterministic = False
    # Random seed (weights, shuffling, subsampling).
    config.train.seed = 1
    # tf.distribute strategy: default | mirrored | multi_worker | tpu.
    config.train.strategy = "default"
    # TPU address for the tpu strategy ("" = local / from the environment).
    config.train.tpu = ""

    config.eval = ml_collections.ConfigDict()
    # Beam width (1 = greedy).
    config.eval.beam_size = 1
    # Length penalty exponent alpha of GNMT ((5 + len) / 6) ** alpha; 0 = none.
    config.eval.length_penalty = 0.6
    # Longest translation, in tokens.
    config.eval.max_decode_length = 64
    # Each sentence's own limit: ratio * source ids + offset tokens, at most max_decode_length
    # (fairseq's max_len_a / max_len_b); ratio 0 = max_decode_length for every sentence.
    config.eval.decode_length_ratio = 0.0
    config.eval.decode_length_offset = 0
    # Sentences per decoding batch.
    config.eval.batch_size = 64
    # Validation sentences translated for BLEU at each evaluation during training (0 = all).
    config.eval.validation_bleu_examples = 500
    return config
