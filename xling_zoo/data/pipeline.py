"""The tf.data input pipeline: tokenized, length-bucketed batches within a token budget.

Batches are the dicts described in ``xling_zoo.models.base`` (all int32, 0-padded):

  encoder_token_ids  [B, L]  [<2tgt>] + source pieces + [eos]   (tag when data.target_language_tag)
  decoder_token_ids  [B, L]  [bos] + target pieces
  target_token_ids   [B, L]  target pieces + [eos]
  source_language_id [B]     index of the example's source language in ``source_languages``

Text is whitespace-normalised right before tokenisation (``normalize_whitespace``), here and in
decoding and the export alike, whatever the corpus reader did.

Every sequence counts its special tokens against ``data.max_length``. A pair with either side
longer is dropped or truncated (``data.overlength``; truncation keeps the final eos), in training
and in validation alike, so that validation loss is measured on the kind of batch the model trains
on; ``length_report`` counts those pairs for the trainer to log.

Batches group pairs of similar length: the longer side of a pair picks the smallest bucket
(``data.bucket_boundaries`` plus ``data.max_length``) it fits, and both sides are padded to that
bucket's length L, with B = tokens_per_batch (per replica) // L. Every batch therefore holds at most
``tokens_per_batch`` padded tokens per side, and each bucket has one fixed shape but for the
smaller last batch of a pass.

XLA (``train.jit_compile``) and TPUs compile one program per input shape, so ``static_shapes=True``
pads that last batch with all-padding rows to the bucket's [B, L]: every batch has one of the
``batch_shapes`` (one compilation per bucket). Padding rather than dropping it keeps every example
in every pass, validation included. A padding row's target ids are all 0, so the translation loss
and the token counts skip it; a loss over rows (not tokens) must skip such rows too. A dataset
mixes the buckets' shapes, so its
``element_spec`` is fully defined only with a single bucket (``data.bucket_boundaries=()``).
"""

import tensorflow as tf

from xling_zoo.data.tokenizer import BOS_ID, EOS_ID
from xling_zoo.errors import UserError

OVERLENGTH_ACTIONS = ("drop", "truncate")
# Raw pairs tokenized per call: tensorflow-text is much faster on a batch than on one string.
TOKENIZE_BATCH = 256
# Python's whitespace (str.isspace, what str.split splits on), as an RE2 class: ASCII's six, the
# separators \x1c-\x1f, NEL, NBSP and Unicode's other spaces. RE2's \s is only ASCII's.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"


def normalize_whitespace(strings):
    """tf.string -> tf.string: every run of whitespace one space, both ends stripped; in-graph (core
    ops), so the exported model runs it. The same text as Python's ``" ".join(s.split())``
    (``hash_split.normalize_whitespace``, which the built-in corpus applies when it is prepared).

    SentencePiece keeps whitespace as it comes (``tokenizer``), so training, decoding and serving
    all tokenize through this: a non-breaking space or a tab gives the ids a plain space gives.
    """
    # After the collapse every whitespace left is one space, which strip's ASCII set covers.
    return tf.strings.strip(tf.strings.regex_replace(strings, f"[{WHITESPACE}]+", " "))


def _pieces(tokenizer, strings):
    """int32 ragged [B, None]: the pieces of the whitespace-normalised strings."""
    return tokenizer.tokenize(normalize_whitespace(strings))


def _check_data_config(data_config):
    if data_config.overlength not in OVERLENGTH_ACTIONS:
        raise UserError(
            f"data.overlength must be one of {', '.join(OVERLENGTH_ACTIONS)}, not {data_config.overlength!r}")
    # The tag, one piece and eos must fit.
    if data_config.max_length < 3:
        raise UserError(f"data.max_length={data_config.max_length} is too small (at least 3)")


def _bucket_lengths(data_config):
    """Padded lengths of the buckets, ascending; the last is data.max_length."""
    max_length = data_config.max_length
    inner = sorted({int(b) for b in data_config.bucket_boundaries if 0 < int(b) < max_length})
    return inner + [max_length]


def _source_prefix(tokenizers, data_config, target_language):
    if data_config.target_language_tag:
        return [tokenizers.source.language_tag_id(target_language)]
    return []


def _with_specials(pieces, prefix, suffix, max_length=None, row_prefix=None):
    """prefix + pieces + suffix per row of a ragged [B, None]; pieces are cut so a row holds at most
    max_length ids (no cut when None). row_prefix: int32 [B], one id per row that replaces ``prefix``
    (whose length it must have: 1), for batches whose rows have different target-language tags."""
    if max_length is not None:
        pieces = pieces[:, : max_length - len(prefix) - len(suffix)]
    nrows = pieces.nrows()
    parts = [pieces]
    if row_prefix is not None:
        parts.insert(0, tf.RaggedTensor.from_tensor(tf.expand_dims(tf.cast(row_prefix, tf.int32), -1)))
    elif prefix:
        parts.insert(0, tf.RaggedTensor.from_tensor(tf.tile(tf.constant([prefix], tf.int32), [nrows, 1])))
    if suffix:
        parts.append(tf.RaggedTensor.from_tensor(tf.tile(tf.constant([suffix], tf.int32), [nrows, 1])))
    return tf.concat(parts, axis=1) if len(parts) > 1 else pieces


def _tokenize_pairs(batch, tokenizers, prefix, max_length):
    """Source and target pieces of a batch of raw pairs, and which pairs exceed max_length."""
    source = _pieces(tokenizers.source, batch["source"])
    target = _pieces(tokenizers.target, batch["target"])
    # Source: [tag] + pieces + eos; decoder input / labels: one special each (bos / eos).
    overlength = tf.logical_or(
        source.row_lengths() + len(prefix) + 1 > max_length,
        target.row_lengths() + 1 > max_length)
    return source, target, overlength


def _language_ids(languages, known_languages, field="source_language"):
    known = tf.constant(list(known_languages), tf.string)
    matches = tf.equal(tf.expand_dims(languages, -1), known)
    found = tf.reduce_any(matches, axis=-1)
    check = tf.debugging.Assert(
        tf.reduce_all(found),
        [f"{field} not among the run's {field.split('_')[0]} languages {list(known_languages)}:",
         tf.boolean_mask(languages, tf.logical_not(found))])
    with tf.control_dependencies([check]):
        return tf.cast(tf.argmax(tf.cast(matches, tf.int32), axis=-1), tf.int32)


def encode_source(strings, tokenizers, data_config, target_language):
    """tf.string [B] -> int32 ragged [B, None]: [<2tgt>] + pieces + [eos], the encoder input.

    Sources longer than data.max_length are truncated (keeping eos): no model has been trained on
    longer ones. Used by decoding and export, so they feed exactly what training fed.
    """
    prefix = _source_prefix(tokenizers, data_config, target_language)
    pieces = _pieces(tokenizers.source, strings)
    return _with_specials(pieces, prefix, [EOS_ID], data_config.max_length)


def source_lengths(strings, tokenizers, data_config, target_language):
    """int32 [B]: how many encoder ids each string needs, before ``encode_source``'s truncation."""
    prefix = _source_prefix(tokenizers, data_config, target_language)
    return tf.cast(_pieces(tokenizers.source, strings).row_lengths(), tf.int32) + len(prefix) + 1


def length_report(examples, tokenizers, data_config, *, target_language):
    """How many pairs of ``examples`` exceed data.max_length, and what the pipeline does to them.

    Returns {"examples": n, "overlength": k, "action": "drop" | "truncate"}.
    """
    _check_data_config(data_config)
    prefix = _source_prefix(tokenizers, data_config, target_language)

    def count(batch):
        _, _, overlength = _tokenize_pairs(batch, tokenizers, prefix, data_config.max_length)
        return tf.size(overlength, tf.int64), tf.reduce_sum(tf.cast(overlength, tf.int64))

    total, overlength = (
        examples.batch(TOKENIZE_BATCH)
        .map(count, num_parallel_calls=tf.data.AUTOTUNE)
        .reduce((tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
                lambda acc, x: (acc[0] + x[0], acc[1] + x[1])))
    return {"examples": int(total), "overlength": int(overlength), "action": data_config.overlength}


def _per_replica_budget(data_config, input_context):
    budget = data_config.tokens_per_batch
    if input_context is not None:
        budget //= input_context.num_replicas_in_sync
    if budget < data_config.max_length:
        raise UserError(
            f"data.tokens_per_batch={data_config.tokens_per_batch} ({budget} per replica) is smaller "
            f"than data.max_length={data_config.max_length}: raise tokens_per_batch or lower max_length")
    return budget


def batch_shapes(data_config, input_context=None):
    """[(B, L)] per bucket, shortest first: the shapes of ``make_dataset(..., static_shapes=True)``'s
    token-id batches (its source_language_id batches are [B])."""
    _check_data_config(data_config)
    budget = _per_replica_budget(data_config, input_context)
    return [(budget // length, length) for length in _bucket_lengths(data_config)]


def _row_tags(target_languages_of_rows, tokenizers, target_languages):
    """int32 [B]: each row's target-language tag id, for examples that carry their target language."""
    tag_ids = tf.constant([tokenizers.source.language_tag_id(lang) for lang in target_languages], tf.int32)
    return tf.gather(tag_ids, _language_ids(target_languages_of_rows, target_languages, "target_language"))


def make_dataset(examples, tokenizers, data_config, *, target_language, source_languages, training,
                 input_context=None, seed=0, static_shapes=False, target_languages=None):
    """Batches of a split for training (training=True) or validation loss (training=False).

    examples: a dataset of {"source", "target", "source_language"} tf.string scalars
      (``corpus.load_split``), and optionally "target_language" (mixed pairs, see ``mixing``): each
      example then gets its own target-language tag, one of ``target_languages``.
    input_context: from ``strategy.distribute_datasets_from_function``; the dataset is then this
      input pipeline's shard, and the token budget is per replica.
    training: shuffle (seeded by ``seed``, reshuffled every pass). The dataset is never repeated:
      one iteration is one pass (the trainer repeats). Validation keeps the order of ``examples``.
    static_shapes: every batch of a bucket has that bucket's shape in ``batch_shapes`` (the last
      batch of a pass is padded with all-padding rows), as XLA and TPUs need.
    """
    _check_data_config(data_config)
    if not source_languages:
        raise UserError("make_dataset needs the pair's source languages")
    prefix = _source_prefix(tokenizers, data_config, target_language)
    max_length = data_config.max_length
    truncate = data_config.overlength == "truncate"

    shapes = batch_shapes(data_config, input_context)
    # Shard the raw examples, before shuffling and tokenizing, so each pipeline does 1/N of it.
    if input_context is not None and input_context.num_input_pipelines > 1:
        examples = examples.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

    if training:
        examples = examples.shuffle(data_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    per_row_tags = "target_language" in examples.element_spec and bool(prefix)
    target_languages = tuple(target_languages or (target_language,))

    def encode(batch):
        source, target, overlength = _tokenize_pairs(batch, tokenizers, prefix, max_length)
        cut = max_length if truncate else None
        row_prefix = _row_tags(batch["target_language"], tokenizers, target_languages) if per_row_tags else None
        features = {
            "encoder_token_ids": _with_specials(source, prefix, [EOS_ID], cut, row_prefix),
            "decoder_token_ids": _with_specials(target, [BOS_ID], [], cut),
            "target_token_ids": _with_specials(target, [], [EOS_ID], cut),
            "source_language_id": _language_ids(batch["source_language"], source_languages),
        }
        if not truncate:
            keep = tf.logical_not(overlength)
            features = {key: tf.ragged.boolean_mask(value, keep) for key, value in features.items()}
        return features

    # Tokenize 256 pairs per op call, then regroup the pairs by length.
    features = examples.batch(TOKENIZE_BATCH).map(encode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return _bucketed_batches(features, shapes, static_shapes)


def lm_ids(tokenizer, strings, max_length, truncate):
    """decoder_token_ids ([bos] + pieces) and target_token_ids (pieces + [eos]) of a batch of
    sentences, and which of them exceed ``max_length``. ``truncate`` keeps the first max_length of
    both, still shifted by one: a cut sentence's labels are its first max_length pieces, no eos (it
    did not end there)."""
    pieces = _pieces(tokenizer, strings)
    overlength = pieces.row_lengths() + 1 > max_length
    inputs, labels = _with_specials(pieces, [BOS_ID], []), _with_specials(pieces, [], [EOS_ID])
    if truncate:
        inputs, labels = inputs[:, :max_length], labels[:, :max_length]
    return inputs, labels, overlength


def lm_length_report(texts, tokenizer, data_config):
    """``length_report`` for a language model's sentences (a dataset of tf.string scalars)."""
    _check_data_config(data_config)

    def count(strings):
        _, _, overlength = lm_ids(tokenizer, strings, data_config.max_length, truncate=False)
        return tf.size(overlength, tf.int64), tf.reduce_sum(tf.cast(overlength, tf.int64))

    total, overlength = (
        texts.batch(TOKENIZE_BATCH).map(count, num_parallel_calls=tf.data.AUTOTUNE)
        .reduce((tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
                lambda acc, x: (acc[0] + x[0], acc[1] + x[1])))
    return {"examples": int(total), "overlength": int(overlength), "action": data_config.overlength}


def make_lm_dataset(texts, tokenizer, data_config, *, training, input_context=None, seed=0, static_shapes=False):
    """A language model's batches of ``decoder_token_ids`` ([bos] + pieces) and ``target_token_ids``
    (pieces + [eos]) from ``texts``, a dataset of tf.string scalars (one sentence each): sharded,
    shuffled, length-limited and bucketed exactly as ``make_dataset`` does a translator's pairs."""
    _check_data_config(data_config)
    shapes = batch_shapes(data_config, input_context)
    if input_context is not None and input_context.num_input_pipelines > 1:
        texts = texts.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        texts = texts.shuffle(data_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    truncate = data_config.overlength == "truncate"

    def encode(strings):
        inputs, labels, overlength = lm_ids(tokenizer, strings, data_config.max_length, truncate)
        features = {"decoder_token_ids": inputs, "target_token_ids": labels}
        if not truncate:
            features = {key: tf.ragged.boolean_mask(value, tf.logical_not(overlength))
                        for key, value in features.items()}
        return features

    features = texts.batch(TOKENIZE_BATCH).map(encode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return _bucketed_batches(features, shapes, static_shapes)


def _bucketed_batches(features, shapes, static_shapes):
    """Dicts of ragged int32 rows (and scalars) -> 0-padded batches grouped by length: the longest
    row of an example picks the smallest bucket of ``shapes`` ([(B, L)], ``batch_shapes``) it fits,
    and its batch holds B examples padded to L. Batching a bucket's ragged elements and padding the
    batch costs one op per batch instead of one per example."""
    bucket_lengths = tf.constant([length for _, length in shapes], tf.int64)
    bucket_batch_sizes = tf.constant([size for size, _ in shapes], tf.int64)

    def bucket(features):
        longest = tf.reduce_max(tf.stack([tf.size(value, tf.int64) for value in features.values()
                                          if value.shape.rank == 1]))
        # The first bucket whose length holds the longest row.
        return tf.reduce_sum(tf.cast(longest > bucket_lengths, tf.int64))

    def pad_to_bucket(features, length, rows=None):
        """Dense [rows, length] batches; rows=None keeps the batch's own number of rows."""
        padded = {}
        for key, value in features.items():
            if isinstance(value, tf.RaggedTensor):
                padded[key] = value.to_tensor(shape=tf.stack([value.nrows() if rows is None else rows, length]))
            elif rows is not None:
                padded[key] = tf.pad(value, [[0, rows - tf.shape(value, out_type=tf.int64)[0]]])
            else:
                padded[key] = value
        return padded

    def batch_bucket(key, window):
        length = tf.gather(bucket_lengths, key)
        size = tf.gather(bucket_batch_sizes, key)
        rows = size if static_shapes else None
        return window.batch(size).map(lambda f: pad_to_bucket(f, length, rows))

    dataset = features.group_by_window(bucket, batch_bucket,
                                       window_size_func=lambda key: tf.gather(bucket_batch_sizes, key))
    if static_shapes and len(shapes) == 1:
        # The bucket is chosen at run time, so tf.data cannot infer the one shape it always has.
        (size, length), = shapes
        dataset = dataset.map(lambda f: {key: tf.ensure_shape(value, [size, length][:value.shape.rank])
                                         for key, value in f.items()})
    return dataset.prefetch(tf.data.AUTOTUNE)
