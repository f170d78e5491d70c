"""The serving graph behind the export: raw strings in, one translation and one status per string out.

A model server batches requests from many clients into one call, so one bad sentence must not fail
the others: each sentence gets a status, a rejected one an empty translation, and only the accepted
ones are decoded.

  ok               translated
  split            longer than the model was trained on: translated in pieces, joined by spaces
                   (only with ``split_long_sentences``)
  empty            nothing but whitespace
  too_long         over ``max_input_bytes`` UTF-8 bytes (never tokenised: protects the server)
  too_many_tokens  needs more source tokens than ``data.max_length`` (without ``split_long_sentences``;
                   translating a cut sentence would return a silently wrong answer)

Also here: TF Serving's REST request and response forms (``rest_predict``), as the model server maps
them onto the signature, so that tests and users can check a request without a model server.
"""

import base64
import contextlib

import tensorflow as tf

from xling_zoo.data import corpus
from xling_zoo.data.pipeline import normalize_whitespace, source_lengths
from xling_zoo.errors import UserError

SIGNATURE_KEY = "serving_default"
INPUT_KEY = "sentences"
OK, SPLIT, EMPTY, TOO_LONG, TOO_MANY_TOKENS = "ok", "split", "empty", "too_long", "too_many_tokens"
STATUSES = {
    OK: "translated",
    SPLIT: "longer than data.max_length source tokens: translated in pieces (sentences, then windows of "
           "words), the pieces' translations joined by spaces",
    EMPTY: "nothing but whitespace; translation empty",
    TOO_LONG: "over max_input_bytes UTF-8 bytes; not read; translation empty",
    TOO_MANY_TOKENS: "needs more than data.max_length source tokens; translation empty",
}
# A piece ends a sentence when its last character (before closing quotes or brackets) is one of these.
SENTENCE_END = r".*[.!?…。！？][\"'”’»)\]]*"


class ServingGraph:
    """What the exported signature runs, in front of a ``decode.Translator``.

    Deliberately not a tf.Module: the export tracks exactly the variables and the tokenizer resource
    that the signature uses (``export.write_saved_model``), not the Keras model's object graph.
    """

    def __init__(self, translator, max_input_bytes, split_long_sentences=False):
        if max_input_bytes < 1:
            raise UserError(f"--max_input_bytes must be >= 1, got {max_input_bytes}")
        self.translator = translator
        self.max_input_bytes = int(max_input_bytes)
        self.max_source_tokens = int(translator.data_config.max_length)
        self.split_long_sentences = bool(split_long_sentences)
        # Encoder ids besides the text's own (the target-language tag, eos): what an empty text needs.
        specials = int(self._source_lengths(tf.constant([""]))[0])
        # The most text pieces one encoder input holds.
        self.window = self.max_source_tokens - specials

    input_signature = [tf.TensorSpec([None], tf.string, name=INPUT_KEY)]

    def trackables(self):
        """What the signature reads besides the weights: the SentencePiece resources."""
        return [self.translator.tokenizers]

    def accepts(self, sentence):
        """Whether the export translates this sentence whole (status ok)."""
        return (len(sentence.encode("utf-8")) <= self.max_input_bytes and bool(sentence.strip())
                and not self.translator.overlength([sentence]))

    def check(self, saved_model_dir, run, count):
        """Up to ``count`` of the run's validation sentences that the export translates whole, run
        through TF Serving's loader: each must come back exactly as the in-process translator
        translates it, status ok (else RuntimeError). Returns the sentences checked."""
        if count <= 0:
            return []
        pair = corpus.Pair(run.pair.source_languages, (self.translator.target_language,))
        examples = corpus.read_split(run.config.corpus, pair, "validation", data_dir=run.config.data_dir or None,
                                     skip_bad_lines=run.config.get("skip_bad_lines", False))
        sentences = [e["source"] for e in examples if self.accepts(e["source"])][:count]
        if not sentences:
            return []
        outputs = session_outputs(saved_model_dir, sentences)
        exported = [t.decode("utf-8") for t in outputs["translations"]]
        statuses = [s.decode("utf-8") for s in outputs["status"]]
        expected = [t.decode("utf-8") for t in self.translator.translate(tf.constant(sentences)).numpy()]
        mismatches = [i for i, (a, b, s) in enumerate(zip(exported, expected, statuses)) if a != b or s != OK]
        if mismatches:
            i = mismatches[0]
            raise RuntimeError(f"the exported model disagrees with the in-process translator on {len(mismatches)} of "
                               f"{len(sentences)} sentences, e.g. {sentences[i]!r}: {exported[i]!r} ({statuses[i]}) "
                               f"vs {expected[i]!r}")
        return sentences

    def metadata(self):
        """The signature and its settings, for the export's metadata file."""
        t = self.translator
        return {"target_language": t.target_language, "beam_size": t.beam_size,
                "max_decode_length": t.max_decode_length, "max_source_tokens": self.max_source_tokens,
                "max_input_bytes": self.max_input_bytes, "split_long_sentences": self.split_long_sentences,
                "signature": {"name": SIGNATURE_KEY, "inputs": {INPUT_KEY: "tf.string [batch]"},
                              "outputs": {"translations": "tf.string [batch]", "status": "tf.string [batch]"}},
                "statuses": STATUSES}

    def _source_lengths(self, normalized):
        t = self.translator
        return source_lengths(normalized, t.tokenizers, t.data_config, t.target_language)

    def serve(self, sentences):
        """tf.string [batch] -> {"translations": tf.string [batch], "status": tf.string [batch]}."""
        too_long = tf.strings.length(sentences) > self.max_input_bytes
        normalized = normalize_whitespace(tf.where(too_long, "", sentences))
        empty = tf.logical_and(tf.logical_not(too_long), tf.equal(tf.strings.length(normalized), 0))
        overlength = tf.logical_and(tf.logical_not(too_long | empty),
                                    self._source_lengths(normalized) > self.max_source_tokens)
        status = tf.where(too_long, TOO_LONG, tf.where(empty, EMPTY, tf.where(
            overlength, SPLIT if self.split_long_sentences else TOO_MANY_TOKENS, OK)))
        ok = tf.equal(status, OK)
        # An ok sentence goes to the translator unchanged (as the translate CLI sends it).
        pieces, rows = tf.boolean_mask(sentences, ok), tf.cast(tf.where(ok)[:, 0], tf.int32)
        if self.split_long_sentences:
            split_rows = tf.cast(tf.where(overlength)[:, 0], tf.int32)
            split_pieces, owners = self.split(tf.gather(normalized, split_rows))
            pieces = tf.concat([pieces, split_pieces], 0)
            rows = tf.concat([rows, tf.gather(split_rows, owners)], 0)
            order = tf.argsort(rows, stable=True)
            pieces, rows = tf.gather(pieces, order), tf.gather(rows, order)
        # The encoder cannot run on zero rows: an empty request, or one with nothing accepted.
        translated = tf.cond(tf.size(pieces) > 0, lambda: self.translator.translate(pieces),
                             lambda: tf.zeros([0], tf.string))
        # A rejected sentence owns no piece, so its joined translation is "".
        per_sentence = tf.RaggedTensor.from_value_rowids(translated, rows, nrows=tf.size(sentences, tf.int32))
        return {"translations": tf.strings.reduce_join(per_sentence, axis=1, separator=" "), "status": status}

    def split(self, normalized):
        """Cuts whitespace-normalised sentences into pieces of at most ``window`` text pieces each:
        at sentence ends first, then (greedily) between words; a word that alone exceeds the window is
        cut into runs of characters. Returns (pieces tf.string [P], owner int32 [P]: the index of the
        sentence each piece came from), in sentence order.

        SentencePiece never joins two words into one piece, so a run of words needs exactly the sum of
        its words' pieces: each cut is known to fit without retokenising the run.
        """
        words = tf.strings.split(normalized, " ")
        word_owner = tf.cast(words.value_rowids(), tf.int32)
        words = words.flat_values
        # A character is at most 4 byte pieces, plus one for the word-start marker.
        chars_per_cut = max(1, (self.window - 1) // 4)
        chars = tf.strings.unicode_split(words, "UTF-8", errors="replace")
        word_pieces = tf.cast(self.translator.tokenizers.source.tokenize(words).row_lengths(), tf.int32)
        oversized = word_pieces > self.window
        num_chars = tf.cast(chars.row_lengths(), tf.int32)
        cuts = tf.where(oversized, (num_chars + chars_per_cut - 1) // chars_per_cut, 1)
        first_cut = tf.cumsum(cuts, exclusive=True)
        char_word = tf.cast(chars.value_rowids(), tf.int32)
        char_index = tf.range(tf.size(chars.flat_values, tf.int32)) - tf.gather(tf.cast(chars.row_starts(), tf.int32),
                                                                                 char_word)
        char_cut = tf.gather(first_cut, char_word) + tf.where(tf.gather(oversized, char_word),
                                                              char_index // chars_per_cut, 0)
        units = tf.strings.reduce_join(
            tf.RaggedTensor.from_value_rowids(chars.flat_values, char_cut, nrows=tf.reduce_sum(cuts)), axis=1)
        # A word that fits stays as it came (unicode_split replaced any invalid UTF-8 in it).
        units = tf.where(tf.repeat(oversized, cuts), units, tf.repeat(words, cuts))
        unit_owner = tf.repeat(word_owner, cuts)
        unit_pieces = tf.cast(self.translator.tokenizers.source.tokenize(units).row_lengths(), tf.int32)
        # A new piece starts at a sentence's first unit and after a unit that ends a sentence...
        previous_owner = tf.concat([[-1], unit_owner[:-1]], 0)
        previous_ends = tf.concat([[False], tf.strings.regex_full_match(units, SENTENCE_END)[:-1]], 0)
        forced = tf.logical_or(tf.not_equal(unit_owner, previous_owner), previous_ends)

        # ...and where the next unit would overflow the window.
        def step(state, unit):
            piece, used = state
            pieces, starts = unit
            new = tf.logical_or(starts, used + pieces > self.window)
            return piece + tf.cast(new, tf.int32), tf.where(new, pieces, used + pieces)

        unit_piece, _ = tf.scan(step, (unit_pieces, forced), initializer=(tf.constant(-1), tf.constant(0)))
        num_pieces = tf.reduce_max(tf.concat([[-1], unit_piece], 0)) + 1  # unit_piece never decreases.
        pieces = tf.strings.reduce_join(
            tf.RaggedTensor.from_value_rowids(units, unit_piece, nrows=num_pieces), axis=1, separator=" ")
        owners = tf.math.unsorted_segment_min(unit_owner, unit_piece, num_pieces)
        return pieces, owners


# A language model's export (``ContinuationServingGraph``): its statuses.
CUT = "cut"
CONTINUATION_STATUSES = {
    OK: "continued",
    CUT: "longer than data.max_length - 2 pieces: its last pieces continued (the text returned starts there)",
    TOO_LONG: "over max_input_bytes UTF-8 bytes; not read; text empty",
}


class ContinuationServingGraph:
    """What a language model's exported signature runs, in front of a ``decode.Continuer``: each
    prompt (the "sentences" input) comes back followed by its continuation ("texts"), with a status.
    An empty prompt is continued from the start of a sentence."""

    def __init__(self, continuer, tokenizers, max_input_bytes):
        if max_input_bytes < 1:
            raise UserError(f"--max_input_bytes must be >= 1, got {max_input_bytes}")
        self.continuer, self.tokenizers = continuer, tokenizers
        self.max_input_bytes = int(max_input_bytes)

    input_signature = [tf.TensorSpec([None], tf.string, name=INPUT_KEY)]

    def trackables(self):
        return [self.tokenizers]

    def serve(self, sentences):
        """tf.string [batch] -> {"texts": tf.string [batch], "status": tf.string [batch]}."""
        too_long = tf.strings.length(sentences) > self.max_input_bytes
        pieces = self.tokenizers.target.tokenize(normalize_whitespace(tf.where(too_long, "", sentences))).row_lengths()
        status = tf.where(too_long, TOO_LONG, tf.where(pieces > self.continuer.max_prompt, CUT, OK))
        # Only the accepted prompts are decoded (a too_long one is never tokenised for decoding); the
        # decoder cannot run on zero rows.
        accepted = tf.logical_not(too_long)
        prompts, rows = tf.boolean_mask(sentences, accepted), tf.cast(tf.where(accepted)[:, 0], tf.int32)
        texts = tf.cond(tf.size(prompts) > 0, lambda: self.continuer.continue_text(prompts, 0),
                        lambda: tf.zeros([0], tf.string))
        per_prompt = tf.RaggedTensor.from_value_rowids(texts, rows, nrows=tf.size(sentences, tf.int32))
        return {"texts": tf.strings.reduce_join(per_prompt, axis=1), "status": status}

    def check(self, saved_model_dir, run, count):
        """Up to ``count`` prompts (the first three words of the run's validation sentences) through TF
        Serving's loader: each must come back as the in-process continuer continues it, status ok."""
        if count <= 0:
            return []
        side = "source" if run.config.language in run.pair.source_languages else "target"
        examples = corpus.read_split(run.config.corpus, run.pair, "validation", data_dir=run.config.data_dir or None,
                                     skip_bad_lines=run.config.get("skip_bad_lines", False))
        prompts = [" ".join(e[side].split()[:3]) for e in examples[:count]]
        if not prompts:
            return []
        outputs = session_outputs(saved_model_dir, prompts)
        exported = [t.decode("utf-8") for t in outputs["texts"]]
        expected = [t.decode("utf-8") for t in self.continuer.continue_text(tf.constant(prompts), 0).numpy()]
        wrong = [i for i, (a, b, s) in enumerate(zip(exported, expected, outputs["status"])) if a != b or s != b"ok"]
        if wrong:
            i = wrong[0]
            raise RuntimeError(f"the exported model disagrees with the in-process continuer on {len(wrong)} of "
                               f"{len(prompts)} prompts, e.g. {prompts[i]!r}: {exported[i]!r} vs {expected[i]!r}")
        return prompts

    def metadata(self):
        c = self.continuer
        return {"beam_size": c.beam_size, "max_new_tokens": c.max_new_tokens, "max_prompt_pieces": c.max_prompt,
                "max_input_bytes": self.max_input_bytes,
                "signature": {"name": SIGNATURE_KEY, "inputs": {INPUT_KEY: "tf.string [batch] (prompts)"},
                              "outputs": {"texts": "tf.string [batch] (each prompt and its continuation)",
                                          "status": "tf.string [batch]"}},
                "statuses": CONTINUATION_STATUSES}


# === Ops the model server runs ===

def session_outputs(saved_model_dir, inputs, signature=SIGNATURE_KEY):
    """The signature's outputs (name -> numpy array) for ``inputs`` (its one input), run through TF1's
    session-based loader: the loader TF Serving uses (``tf.saved_model.load`` is more forgiving)."""
    from tensorflow.python.util import deprecation

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        with deprecation.silence():  # "use tf.saved_model.load instead": not what TF Serving uses.
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], saved_model_dir)
        signature_def = meta_graph.signature_def[signature]
        fetches = {name: info.name for name, info in signature_def.outputs.items()}
        (input_info,) = signature_def.inputs.values()
        return session.run(fetches, {input_info.name: list(inputs)})


@contextlib.contextmanager
def core_tensorflow_ops():
    """While the export is traced, ``keras.ops.slice_update`` (a model's preallocated decoding caches,
    e.g. the Transformer's with static shapes; the export's own caches grow instead) is built from
    core TensorFlow ops. Keras' TensorFlow backend emits XlaDynamicUpdateSlice, which
    outside an XLA cluster runs only through XLA's compile-on-demand: TF Serving turns that off by
    default (--xla_cpu_compilation_enabled=false), and such an export then fails every request
    with "XLA compilation disabled". The values are the same, so the translations are too. Only the
    export is traced so: in-process decoding keeps the (faster) XLA op.
    """
    from keras.src.backend.tensorflow import core as keras_backend_core

    original = keras_backend_core.slice_update
    keras_backend_core.slice_update = slice_update
    try:
        yield
    finally:
        keras_backend_core.slice_update = original


def slice_update(inputs, start_indices, updates):
    """``inputs`` with the block at ``start_indices`` replaced by ``updates`` (XLA's
    DynamicUpdateSlice: the start is clamped so that the block fits), as TensorScatterUpdate.

    Beam 4 on 64 sentences, transformer_tiny, in the session loader: 3.2-3.4 s against 2.8-2.9 s
    with the XLA op run by compile-on-demand, and 3.6-4.3 s with Pad and Select instead.
    """
    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(updates, inputs.dtype)
    size = tf.shape(updates, out_type=tf.int32)
    start = tf.stack([tf.cast(i, tf.int32) for i in start_indices])
    start = tf.clip_by_value(start, 0, tf.shape(inputs, out_type=tf.int32) - size)
    # Trailing axes that the update spans whole are written as slices: fewer indices.
    depth = inputs.shape.rank
    while (depth > 1 and isinstance(start_indices[depth - 1], int) and start_indices[depth - 1] == 0
           and updates.shape[depth - 1] is not None and updates.shape[depth - 1] == inputs.shape[depth - 1]):
        depth -= 1
    grids = tf.meshgrid(*[start[d] + tf.range(size[d]) for d in range(depth)], indexing="ij")
    return tf.tensor_scatter_nd_update(inputs, tf.stack(grids, axis=-1), updates)


def xla_ops(op_types):
    """The XLA-only op types among ``op_types``: a model server runs them only with XLA's JIT on."""
    return sorted(op for op in op_types if op.startswith("Xla"))


# === TF Serving's REST API ===

def rest_inputs(request):
    """The signature name, the sentences and the form ("row" | "columnar") of a REST predict body,
    parsed as the model server parses it for a signature with one string input:

      {"instances": ["s1", "s2"]}  or  {"instances": [{"sentences": "s1"}, ...]}     (row)
      {"inputs": {"sentences": ["s1", "s2"]}}  or  {"inputs": ["s1", "s2"]}          (columnar)

    with an optional "signature_name"; a string may be given as {"b64": BASE64} (binary data).
    """
    if not isinstance(request, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(request).__name__}")
    if ("instances" in request) == ("inputs" in request):
        raise ValueError('the request needs exactly one of "instances" (row format) or "inputs" (columnar format)')
    signature_name = request.get("signature_name", SIGNATURE_KEY)
    if "instances" in request:
        form, values = "row", request["instances"]
        if not isinstance(values, list):
            raise ValueError('"instances" must be a list')
        values = [v[INPUT_KEY] if isinstance(v, dict) and set(v) == {INPUT_KEY} else v for v in values]
    else:
        form, values = "columnar", request["inputs"]
        if isinstance(values, dict) and "b64" not in values:
            if set(values) != {INPUT_KEY}:
                raise ValueError(f'"inputs" must name exactly the input "{INPUT_KEY}", got {sorted(values)}')
            values = values[INPUT_KEY]
        if not isinstance(values, list):
            values = [values]
    return signature_name, [_rest_string(v) for v in values], form


def _rest_string(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if not isinstance(value, str):
        raise ValueError(f'every sentence must be a JSON string (or {{"b64": ...}}), got {value!r}')
    return value.encode("utf-8")


def rest_response(outputs, form):
    """The JSON body the model server returns for these outputs (a dict of equal-length arrays of
    UTF-8 bytes): row format -> {"predictions": [{"translations": ..., "status": ...}, ...]},
    columnar -> {"outputs": {"translations": [...], "status": [...]}}."""
    columns = {name: [v.decode("utf-8") for v in values] for name, values in outputs.items()}
    if form == "columnar":
        return {"outputs": columns}
    names = sorted(columns)
    return {"predictions": [dict(zip(names, row)) for row in zip(*(columns[n] for n in names))]}


def rest_predict(signatures, request):
    """Answers a REST predict body with the signatures of a loaded SavedModel
    (``tf.saved_model.load(dir).signatures``), as POST /v1/models/NAME:predict would."""
    signature_name, sentences, form = rest_inputs(request)
    if signature_name not in signatures:
        raise ValueError(f"no signature {signature_name!r}; the export has {sorted(signatures)}")
    outputs = signatures[signature_name](**{INPUT_KEY: tf.constant(sentences, tf.string, shape=[len(sentences)])})
    return rest_response({name: value.numpy().tolist() for name, value in outputs.items()}, form)
