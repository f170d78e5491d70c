"""Greedy and beam search over any ``Seq2SeqTask``, as graph functions (one tf.while_loop, no
Python loop per token), so that evaluation, the translate CLI and the exported SavedModel share them.

The model supplies ``encode(ids, max_length) -> state``, ``decoding_weights()`` (computed once per
call) and ``decode_step(token, state, i, weights) -> (logits, state)``; the state is a nest of
batch-first tensors (LSTM states, Transformer caches), which beam search tiles to ``batch * beam``
rows and reorders with ``tf.gather`` after each step.
"""

import tensorflow as tf

from xling_zoo.data.corpus import Pair
# normalize_whitespace is re-exported: serving and the CTranslate2 export import it from here.
from xling_zoo.data.pipeline import encode_source, normalize_whitespace, source_lengths  # noqa: F401
from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from xling_zoo.errors import UserError

NEG_INF = -1e9


def _length_penalty(length, alpha):
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016); alpha = 0 disables it."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def _forbid_special(logits):
    """PAD and BOS are never outputs: a model that predicts them would corrupt the cache (PAD is
    masked out of teacher forcing), so they get -inf before argmax/top-k."""
    vocab = tf.shape(logits)[-1]
    banned = tf.reduce_sum(tf.one_hot([PAD_ID, BOS_ID], vocab, dtype=logits.dtype), 0)
    return logits + banned * tf.cast(NEG_INF, logits.dtype)


def _argmax(logits):
    """tf.argmax over the last axis (the first index of the maximum), as a max and a min: XLA on a
    CPU compiles tf.argmax to a scalar loop, 0.80-0.84 ms for [64, 8000] logits against 0.17-0.26 ms
    for this; without XLA 0.19-0.36 vs 0.28-0.35 ms (benchmarks/decode_step_ops.py). A row without
    a maximum (NaN) gets the last index."""
    vocab = tf.shape(logits)[-1]
    is_max = tf.equal(logits, tf.reduce_max(logits, axis=-1, keepdims=True))
    first = tf.reduce_min(tf.where(is_max, tf.range(vocab), vocab), axis=-1)
    return tf.minimum(first, vocab - 1)


def _greedy_tokens(logits, finished):
    """argmax over the allowed tokens. The forbidden ones (PAD, BOS) almost never win, so the
    [batch, vocab] masking runs only on steps where one did in an unfinished sentence (finished
    ones get PAD whatever wins): without XLA it cost a quarter of the output layer's time per step.
    Same result as masking first: masking lowers only the forbidden logits, so any other first
    maximum stays the first maximum."""
    best = _argmax(logits)
    picked_forbidden = tf.reduce_any(((best == PAD_ID) | (best == BOS_ID)) & ~finished)
    return tf.cond(picked_forbidden, lambda: _argmax(_forbid_special(logits)), lambda: best)


def _sampled_tokens(logits, index, temperature, top_k, seed, rows):
    """A token per row drawn from softmax(logits / temperature) (PAD and BOS never), among the
    ``top_k`` most likely when top_k > 0. Each row's draw is seeded by (seed, its step, ``rows``: its
    index among all the rows of a job, int32 [batch]), so a text draws the same tokens whatever the
    batch it is in; a row whose logits leave one token (a forced prompt piece) gets that token."""
    logits = _forbid_special(tf.cast(logits, tf.float32))
    forced = tf.reduce_sum(tf.cast(logits > NEG_INF / 2, tf.int32), axis=-1) == 1
    logits = logits / temperature
    if top_k:
        k = tf.minimum(top_k, tf.shape(logits)[-1])
        kth = tf.math.top_k(logits, k=k).values[:, -1:]
        logits = tf.where(logits < kth, NEG_INF, logits)
    step = tf.cast(index, tf.int64) * (1 << 32)

    def draw(row):
        row_logits, row_id = row
        seeds = tf.stack([tf.cast(seed, tf.int64), step + tf.cast(row_id, tf.int64)])
        return tf.cast(tf.random.stateless_categorical(row_logits[None, :], 1, seeds)[0, 0], tf.int32)

    drawn = tf.map_fn(draw, (logits, rows), fn_output_signature=tf.int32)
    return tf.where(forced, _argmax(logits), drawn)


def decode_length_limits(encoder_token_ids, max_length, ratio=0.0, offset=0):
    """int32 [batch]: how many tokens each sentence may decode, ``ratio * n + offset`` for a source
    of n encoder ids (pieces, language tag and eos; fairseq's max_len_a / max_len_b), never above
    ``max_length``; ``ratio`` <= 0 gives every sentence ``max_length``. A sentence that reaches its
    limit is cut there, as one reaching ``max_length`` is."""
    batch = tf.shape(encoder_token_ids)[0]
    if ratio <= 0:
        return tf.fill([batch], tf.cast(max_length, tf.int32))
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(encoder_token_ids, PAD_ID), tf.float32), axis=1)
    limits = tf.cast(tf.math.floor(ratio * lengths + float(offset)), tf.int32)
    return tf.clip_by_value(limits, 1, max_length)


def greedy_search(model, encoder_token_ids, max_length, limits=None, static_shapes=False, temperature=0.0, top_k=0,
                  seed=0, rows=None):
    """Cached greedy decoding. Returns int32 [batch, max_length]: tokens, eos, then padding.
    ``limits`` (int32 [batch], ``decode_length_limits``) cuts each sentence at its own length;
    ``static_shapes`` (for XLA) keeps every loop tensor's shape fixed (``Seq2SeqTask.encode``).
    ``temperature`` > 0 samples each token instead (``_sampled_tokens``: ``top_k``, ``seed``, ``rows``:
    each row's index in the whole job, default its index in the batch)."""
    batch = tf.shape(encoder_token_ids)[0]
    if limits is None:
        limits = tf.fill([batch], max_length)
    if rows is None:
        rows = tf.range(batch)
    state = model.encode(encoder_token_ids, max_length, static_shapes)
    weights = model.decoding_weights()
    tokens = tf.fill([batch], BOS_ID)
    # A preallocated output (not a growing TensorArray) keeps every shape static for XLA.
    output = tf.fill([batch, max_length], PAD_ID)
    finished = tf.zeros([batch], tf.bool)

    def body(i, tokens, state, finished, output):
        logits, state = model.decode_step(tokens, state, i, weights)
        if temperature > 0:
            next_tokens = _sampled_tokens(logits, i, temperature, top_k, seed, rows)
        else:
            next_tokens = _greedy_tokens(logits, finished)
        next_tokens = tf.where(finished, PAD_ID, next_tokens)
        output = tf.where(tf.range(max_length)[None, :] == i, next_tokens[:, None], output)
        finished = finished | tf.equal(next_tokens, EOS_ID) | (i + 1 >= limits)
        return i + 1, next_tokens, state, finished, output

    def cond(i, tokens, state, finished, output):
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(finished)))

    loop_vars = (tf.constant(0), tokens, state, finished, output)
    _, _, _, _, output = tf.while_loop(cond, body, loop_vars, shape_invariants=_loop_shapes(model, loop_vars, 2))
    return output


def uncached_greedy_search(model, encoder_token_ids, max_length):
    """Greedy decoding that re-runs the whole teacher-forced model on the prefix at every step.

    Quadratic and slow: it exists as the reference that cached decoding must match exactly, and as
    the baseline of benchmarks/decoding_speed.py.
    """
    batch = tf.shape(encoder_token_ids)[0]
    prefix = tf.fill([batch, 1], BOS_ID)
    finished = tf.zeros([batch], tf.bool)

    def body(i, prefix, finished):
        logits = model({"encoder_token_ids": encoder_token_ids, "decoder_token_ids": prefix}, training=False)
        next_tokens = _greedy_tokens(logits[:, -1, :], finished)
        next_tokens = tf.where(finished, PAD_ID, next_tokens)
        return i + 1, tf.concat([prefix, next_tokens[:, None]], 1), finished | tf.equal(next_tokens, EOS_ID)

    def cond(i, prefix, finished):
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(finished)))

    _, prefix, _ = tf.while_loop(
        cond, body, (tf.constant(0), prefix, finished),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]), tf.TensorShape([None])))
    return _to_fixed_width(prefix[:, 1:], max_length)


def beam_search_done(scores, lengths, finished, limits, length_penalty):
    """bool [batch]: True where no alive hypothesis can still overtake the best finished one, so
    further steps cannot change the sentence's result.

    A continuation only adds log-probabilities (<= 0), so an alive hypothesis's normalised score can
    at best reach its current score divided by the largest length penalty it could still get: that of
    the sentence's length limit (int32 [batch]) when alpha >= 0 (the bound of tensor2tensor's and the Model Garden's beam
    searches), of the next length when alpha < 0. The best finished hypothesis then stays first in
    the beam (nothing alive can score above it), hence stays the answer.
    """
    normalised = scores / _length_penalty(lengths, length_penalty)
    best_finished = tf.reduce_max(tf.where(finished, normalised, -float("inf")), axis=1)
    largest_penalty = tf.maximum(_length_penalty(limits[:, None], length_penalty),
                                 _length_penalty(lengths + 1, length_penalty))
    best_alive_bound = tf.reduce_max(tf.where(finished, -float("inf"), scores / largest_penalty), axis=1)
    return best_finished > best_alive_bound


def beam_search(model, encoder_token_ids, max_length, beam_size=4, length_penalty=0.6, stop_early=True,
                limits=None, static_shapes=False):
    """Batched beam search with the GNMT length penalty. Returns the best hypothesis per sentence,
    int32 [batch, max_length].

    Finished hypotheses stay in the beam (extended by padding at no cost), so alive and finished
    candidates compete in one top-k over length-normalised scores. With ``stop_early`` the loop ends
    once every sentence is ``beam_search_done``, with the same result as running to ``max_length``
    (or until every hypothesis has finished, the only stop without it). ``limits`` (int32 [batch],
    ``decode_length_limits``) cuts each sentence at its own length: from there its hypotheses only
    take padding, at no cost, and an unfinished one ranks below any finished one as at max_length.
    ``static_shapes``: as in ``greedy_search``.
    """
    batch = tf.shape(encoder_token_ids)[0]
    if limits is None:
        limits = tf.fill([batch], max_length)
    k = beam_size
    state = model.encode(encoder_token_ids, max_length, static_shapes)
    state = tf.nest.map_structure(lambda t: tf.repeat(t, k, axis=0), state)
    weights = model.decoding_weights()
    # Only the first beam is live at the start, so the first top-k does not pick k copies.
    scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], NEG_INF)], 0)[None, :], [batch, 1])
    lengths = tf.zeros([batch, k], tf.int32)
    finished = tf.zeros([batch, k], tf.bool)
    sequences = tf.zeros([batch, k, max_length], tf.int32)
    tokens = tf.fill([batch * k], BOS_ID)

    def body(i, tokens, old_state, scores, lengths, finished, sequences):
        logits, new_state = model.decode_step(tokens, old_state, i, weights)
        log_probs = tf.nn.log_softmax(_forbid_special(tf.cast(logits, tf.float32)))
        # Each hypothesis's k best next tokens: the sentence's k best candidates are among them (a
        # hypothesis's candidates share its score and length penalty), so the rest of the step works
        # on [batch, k, k] instead of [batch, k, vocab]. Ties keep top_k's order (beam, then token).
        top_log_probs, top_tokens = tf.math.top_k(log_probs, k=k)
        top_log_probs, top_tokens = tf.reshape(top_log_probs, [batch, k, k]), tf.reshape(top_tokens, [batch, k, k])
        # A finished hypothesis, or any of a sentence cut at its limit, may only continue with PAD,
        # at no cost.
        frozen = (finished | (i >= limits)[:, None])[:, :, None]
        pad_only = tf.one_hot(0, k, on_value=0.0, off_value=NEG_INF)
        top_log_probs = tf.where(frozen, pad_only[None, None, :], top_log_probs)
        top_tokens = tf.where(frozen, PAD_ID, top_tokens)
        candidate_scores = scores[:, :, None] + top_log_probs
        candidate_lengths = lengths[:, :, None] + tf.cast(~frozen, tf.int32)
        normalised = candidate_scores / _length_penalty(candidate_lengths, length_penalty)
        _, top = tf.math.top_k(tf.reshape(normalised, [batch, k * k]), k=k)
        beam_index = top // k
        next_tokens = tf.gather(tf.reshape(top_tokens, [batch, k * k]), top, batch_dims=1)
        scores = tf.gather(tf.reshape(candidate_scores, [batch, k * k]), top, batch_dims=1)
        lengths = tf.gather(tf.reshape(tf.broadcast_to(candidate_lengths, [batch, k, k]), [batch, k * k]), top,
                            batch_dims=1)
        was_finished = tf.gather(finished, beam_index, batch_dims=1)
        finished = was_finished | tf.equal(next_tokens, EOS_ID)
        sequences = tf.gather(sequences, beam_index, batch_dims=1)
        sequences = tf.where(tf.range(max_length)[None, None, :] == i, next_tokens[:, :, None], sequences)
        flat_index = tf.reshape(beam_index + tf.range(batch)[:, None] * k, [-1])
        # Entries decode_step passed through unchanged (the source's keys, values and masks) are
        # the same for every beam of a sentence: reordering them would copy them for nothing.
        state = tf.nest.map_structure(lambda new, old: new if new is old else tf.gather(new, flat_index, axis=0),
                                      new_state, old_state)
        return i + 1, tf.reshape(next_tokens, [-1]), state, scores, lengths, finished, sequences

    def cond(i, tokens, state, scores, lengths, finished, sequences):
        if stop_early:
            done = beam_search_done(scores, lengths, finished, limits, length_penalty)
        else:
            done = tf.reduce_all(finished, axis=1)
        done = done | (i >= limits)
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(done)))

    loop_vars = (tf.constant(0), tokens, state, scores, lengths, finished, sequences)
    shapes = _loop_shapes(model, loop_vars, 2)
    _, _, _, scores, lengths, finished, sequences = tf.while_loop(
        cond, _keeping_shapes(body, shapes), loop_vars, shape_invariants=shapes)
    # Unfinished hypotheses (cut at max_length) rank below finished ones.
    final = scores / _length_penalty(lengths, length_penalty) + tf.where(finished, 0.0, NEG_INF)
    best = tf.argmax(final, axis=-1, output_type=tf.int32)
    return tf.gather(sequences, best, batch_dims=1)


def decode(model, encoder_token_ids, max_length, beam_size=1, length_penalty=0.6, length_ratio=0.0,
           length_offset=0, stop_early=True, static_shapes=False):
    """Greedy when beam_size == 1, else beam search; each sentence decodes at most
    ``decode_length_limits(..., length_ratio, length_offset)`` tokens. ``static_shapes`` for XLA."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    limits = decode_length_limits(encoder_token_ids, max_length, length_ratio, length_offset)
    if beam_size == 1:
        return greedy_search(model, encoder_token_ids, max_length, limits, static_shapes)
    return beam_search(model, encoder_token_ids, max_length, beam_size, length_penalty, stop_early, limits,
                       static_shapes)


def _loop_shapes(model, loop_vars, state_index):
    """tf.while_loop's shape invariants: each loop variable's own shape, the model's
    ``decoding_state_shapes`` for the decoder state (``loop_vars[state_index]``)."""
    shapes = [tf.nest.map_structure(lambda t: t.shape, v) for v in loop_vars]
    shapes[state_index] = model.decoding_state_shapes(loop_vars[state_index])
    return tuple(shapes)


def _keeping_shapes(body, shapes):
    """Wraps a while_loop body so that its outputs keep the static ``shapes`` (its shape
    invariants: gathers and reshapes lose the batch dimension, which tf.while_loop would reject)."""

    def wrapped(*loop_vars):
        return tf.nest.map_structure(tf.ensure_shape, body(*loop_vars), shapes)

    return wrapped


def _to_fixed_width(tokens, width):
    """Pads an early-stopped [batch, n <= width] result to [batch, width]."""
    tokens = tf.pad(tokens, [[0, 0], [0, width - tf.shape(tokens)[1]]], constant_values=PAD_ID)
    return tf.ensure_shape(tokens, [None, width]) if isinstance(width, int) else tokens


# Under XLA, source batches are padded to a multiple of this many tokens: XLA compiles once per
# input shape, so this bounds the compilations (4 for data.max_length 64) at little padding cost.
XLA_SOURCE_LENGTH_MULTIPLE = 16


def target_language_of(pair, target_language=None):
    """The language a run of ``pair`` is asked to write: ``target_language`` (one of the pair's
    targets), else the pair's only target. A multi-target run needs it named."""
    if target_language is None:
        if pair.is_multi_target:
            raise UserError(f"the run translates into {', '.join(pair.target_languages)} (--pair={pair}): name the "
                            "language to write with --target_language")
        return pair.target_language
    if target_language not in pair.target_languages:
        raise UserError(f"--target_language={target_language}: the run (--pair={pair}) writes "
                        f"{', '.join(pair.target_languages)}")
    return target_language


class Translator(tf.Module):
    """Raw strings in, translations out, in one graph: tokenize, decode, detokenize.

    Evaluation, the translate CLI and the SavedModel export all call ``translate``, so what is
    measured is what is served. ``jit_compile=True`` compiles the decoder with XLA (16 % faster
    cached greedy on one CPU core, benchmarks/decoding_speed.py; ~3 s of compilation per source
    length bucket and batch size here).
    """

    def __init__(self, model, tokenizers, config, beam_size=None, max_decode_length=None, jit_compile=False,
                 target_language=None, length_ratio=None, length_offset=None, stop_early=True, static_shapes=None):
        super().__init__(name="translator")
        if model.task_type != "seq2seq":
            raise UserError(f"this {model.registered_name} run does not translate (a {model.task_type} model); "
                            "translate with a translator's run")
        self.model = model
        self.tokenizers = tokenizers
        self.data_config = config.data
        self.target_language = target_language_of(Pair.parse(config.pair), target_language)
        self.beam_size = int(beam_size or config.eval.beam_size)
        if self.beam_size < 1:
            raise UserError(f"--beam_size must be >= 1, got {self.beam_size}")
        self.max_decode_length = int(max_decode_length or config.eval.max_decode_length)
        self.length_penalty = float(config.eval.length_penalty)
        self.length_ratio = float(config.eval.decode_length_ratio if length_ratio is None else length_ratio)
        self.length_offset = int(config.eval.decode_length_offset if length_offset is None else length_offset)
        if self.length_ratio < 0 or self.length_offset < 0:
            raise UserError(f"decode length ratio and offset must be >= 0, got {self.length_ratio} and {self.length_offset}")
        self.jit_compile = bool(jit_compile)
        self.stop_early = bool(stop_early)  # False: beam search as before the bound (benchmarks compare).
        # Preallocated decoding caches: what XLA needs; without XLA growing ones copy less per step.
        self.static_shapes = self.jit_compile if static_shapes is None else bool(static_shapes)
        self._decode_ids = tf.function(self._decode_ids_eager, jit_compile=jit_compile, reduce_retracing=True)

    def _decode_ids_eager(self, encoder_token_ids):
        return decode(self.model, encoder_token_ids, self.max_decode_length, self.beam_size, self.length_penalty,
                      self.length_ratio, self.length_offset, self.stop_early, self.static_shapes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def translate(self, sentences):
        ids = encode_source(sentences, self.tokenizers, self.data_config, self.target_language)
        ids = ids.to_tensor(default_value=PAD_ID)
        if self.jit_compile:
            extra = -tf.shape(ids)[1] % XLA_SOURCE_LENGTH_MULTIPLE
            ids = tf.pad(ids, [[0, 0], [0, extra]], constant_values=PAD_ID)  # Padding is masked.
        output = self._decode_ids(ids)
        return self.tokenizers.target.detokenize(output)

    def overlength(self, sentences):
        """[(index, source tokens)] of the sentences longer than data.max_length: ``translate``
        reads only their first max_length tokens, so callers must say so."""
        if not sentences:
            return []
        lengths = source_lengths(tf.constant(sentences, tf.string), self.tokenizers, self.data_config,
                                 self.target_language).numpy()
        return [(i, int(n)) for i, n in enumerate(lengths) if n > self.data_config.max_length]

    def translate_all(self, sentences, batch_size=64, should_stop=None):
        """Python list in, list out; batches sentences of similar length together for speed.
        ``should_stop()``, asked before each batch: True abandons the work and returns None."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        results = [None] * len(sentences)
        for start in range(0, len(order), batch_size):
            if should_stop is not None and should_stop():
                return None
            index = order[start:start + batch_size]
            batch = tf.constant([sentences[i] for i in index], tf.string)
            for i, text in zip(index, self.translate(batch).numpy()):
                results[i] = text.decode("utf-8")
        return results


class Continuer(tf.Module):
    """A language model's prompts in, their continuations out, in one graph: tokenize, decode (the
    prompt forced through the cached steps, then greedy, sampled or beam search), detokenize.

    A prompt and its continuation stay within the positions the model was trained on: at most
    ``data.max_length - 1`` pieces after bos. A longer prompt keeps its last ``data.max_length - 2``
    pieces; each continues for at most ``max_new_tokens`` pieces, fewer where that limit would pass,
    or to its eos. ``continue_text`` returns each prompt's kept text followed by its continuation.
    Beam search ranks hypotheses by the GNMT length penalty over the prompt's pieces too.
    """

    # Sampling temperatures outside this range either stop being a distribution (the forced
    # prompt's -1e9 logits divided away) or overflow float32.
    TEMPERATURES = (1e-3, 100.0)

    def __init__(self, model, tokenizers, config, max_new_tokens=None, beam_size=1, temperature=0.0, top_k=0, seed=0):
        super().__init__(name="continuer")
        if model.task_type != "lm":
            raise UserError(f"this {model.registered_name} run continues no text (a {model.task_type} model); "
                            "continue text with a language model's run (python -m xling_zoo.train --model=lm)")
        self.model, self.tokenizer = model, tokenizers.target
        # bos + pieces fill the longest training input; the prompt leaves room for one new piece.
        self.max_length = config.data.max_length - 1
        self.max_prompt = self.max_length - 1
        self.max_new_tokens = int(config.eval.max_decode_length if max_new_tokens is None else max_new_tokens)
        self.beam_size, self.temperature, self.top_k, self.seed = int(beam_size), float(temperature), int(top_k), int(seed)
        self.length_penalty = float(config.eval.length_penalty)
        problems = [f"{name}={value} must be {rule}" for name, value, ok, rule in (
            ("--max_new_tokens", self.max_new_tokens, self.max_new_tokens >= 1, ">= 1"),
            ("--beam_size", self.beam_size, self.beam_size >= 1, ">= 1"),
            ("--temperature", self.temperature, self.temperature == 0 or
             self.TEMPERATURES[0] <= self.temperature <= self.TEMPERATURES[1],
             f"0 (the most likely piece) or in [{self.TEMPERATURES[0]}, {self.TEMPERATURES[1]:g}]"),
            ("--top_k", self.top_k, self.top_k >= 0, ">= 0 (0 = every piece)"),
            ("--top_k", self.top_k, not (self.top_k and not self.temperature), "0 without --temperature (it "
             "narrows sampling; without it the most likely piece is taken)"),
            ("--temperature", self.temperature, not (self.temperature and self.beam_size > 1),
             "0 with --beam_size above 1 (sampling draws one continuation)")) if not ok]
        if problems:
            raise UserError("; ".join(problems))
        positions = getattr(model, "max_length", None)
        if positions is not None and self.max_length + 1 > positions:
            raise UserError(f"data.max_length={config.data.max_length} exceeds the model's {positions} positions "
                            "(model.transformer.max_length)")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32)])
    def continue_text(self, prompts, first_row=0):
        """``first_row``: the index of the first prompt among all of a job's (what sampling is seeded by)."""
        pieces = self.tokenizer.tokenize(normalize_whitespace(prompts))[:, -self.max_prompt:]
        lengths = tf.cast(pieces.row_lengths(), tf.int32)
        ids = pieces.to_tensor(default_value=PAD_ID)
        limits = tf.minimum(lengths + self.max_new_tokens, self.max_length)
        if self.beam_size > 1:
            output = beam_search(self.model, ids, self.max_length, self.beam_size, self.length_penalty, limits=limits)
        else:
            output = greedy_search(self.model, ids, self.max_length, limits, temperature=self.temperature,
                                   top_k=self.top_k, seed=self.seed, rows=first_row + tf.range(tf.size(prompts)))
        return self.tokenizer.detokenize(output)

    def prompts_cut(self, prompts):
        """[(index, pieces)] of the prompts longer than ``data.max_length - 2`` pieces (their start is dropped)."""
        if not prompts:
            return []
        lengths = self.tokenizer.tokenize(normalize_whitespace(tf.constant(prompts, tf.string))).row_lengths().numpy()
        return [(i, int(n)) for i, n in enumerate(lengths) if n > self.max_prompt]

    def continue_all(self, prompts, batch_size=64):
        """Python list in, list out, batches of ``batch_size``: the same texts whatever the batch size."""
        if batch_size < 1:
            raise UserError(f"--batch_size must be >= 1, got {batch_size}")
        results = []
        for start in range(0, len(prompts), batch_size):
            batch = tf.constant(prompts[start:start + batch_size], tf.string)
            results += [text.decode("utf-8", "replace") for text in self.continue_text(batch, start).numpy()]
        return results
