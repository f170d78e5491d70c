"""SentencePiece subword tokenizers: training, in-graph tokenization (tensorflow-text), save/load.

Every model is trained with the same conventions, so that any piece of text round-trips exactly
(``detokenize(tokenize(s)) == s`` for every Unicode string ``s`` that does not start with spaces:
tensorflow-text's SentencePiece decoder drops leading whitespace):

* ``byte_fallback`` and ``character_coverage=1.0``: a character outside the vocabulary (CJK, emoji
  in a Latin-script corpus) becomes its UTF-8 bytes (``<0xE4>`` pieces) instead of ``<unk>``.
* ``normalization_rule_name="identity"`` and ``remove_extra_whitespaces=False``: SentencePiece
  changes nothing (no NFKC, no whitespace collapsing). Whitespace is normalised by one rule right
  before tokenization (``pipeline.normalize_whitespace``, in-graph, also in the export), and the same
  rule in Python here (``hash_split.normalize_whitespace``) for the sentences SentencePiece learns from.
* ``split_digits``: numbers are spelled digit by digit, so the model can copy any number.
* Ids 0..3 are pad, unk, bos, eos. Language tags (``<2de>``) follow from id 4, as *control*
  symbols: they are only ever inserted by id (the pipeline prepends them), text that happens to
  contain "<2de>" is tokenized as ordinary characters, and detokenization drops them.
"""

import io
import json
import os
import random
import re

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from sentencepiece import sentencepiece_model_pb2

from xling_zoo.data import local_files
from xling_zoo.data.hash_split import normalize_whitespace
from xling_zoo.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

MODEL_TYPES = ("unigram", "bpe")
# What Tokenizers.save writes next to the .model file(s).
TOKENIZERS_JSON = "tokenizers.json"

_LANGUAGE_TAG = re.compile(r"^<2[^<>\s]+>$")


def language_tag(lang):
    """The piece that asks for a translation into ``lang``: ``"de"`` -> ``"<2de>"``."""
    return f"<2{lang}>"


def _surface_text(piece):
    """The text a piece stands for ("▁word" -> " word")."""
    return piece.replace("\u2581", " ")


def _text(value):
    # Examples read with tfds.as_numpy() carry bytes; the trainer accepts both.
    return value.decode("utf-8") if isinstance(value, bytes) else value


class SubwordTokenizer(tf.Module):
    """One SentencePiece model, usable eagerly, inside tf.data and inside exported tf.functions.

    The tensorflow-text op holds the model as a trackable resource, so a tf.Module that references
    this tokenizer saves it into its SavedModel.
    """

    def __init__(self, model_proto):
        super().__init__(name="subword_tokenizer")
        self.model_proto = bytes(model_proto)
        self._processor = spm.SentencePieceProcessor()
        try:
            self._processor.LoadFromSerializedProto(self.model_proto)
        except (RuntimeError, OSError) as error:
            raise UserError(f"not a valid SentencePiece model: {error}") from error
        self.vocab_size = self._processor.GetPieceSize()
        self._sentencepiece = tf_text.SentencepieceTokenizer(
            model=self.model_proto, out_type=tf.int32, add_bos=False, add_eos=False)
        # Ids that detokenize drops besides everything from the first eos on: pad, bos, language tags.
        dropped = [False] * self.vocab_size
        for i in (PAD_ID, BOS_ID):
            dropped[i] = True
        for i in range(self.vocab_size):
            if _LANGUAGE_TAG.match(self._processor.IdToPiece(i)):
                dropped[i] = True
        self._dropped_ids = tf.constant(dropped, tf.bool)

    # === Training ===

    @classmethod
    def train(cls, sentences, *, vocab_size, model_type="unigram", language_tags=(), seed=1, hard_vocab_limit=True):
        """Trains a model on an iterable of sentences (python str); deterministic for a given seed.

        ``language_tags`` are pieces such as ``"<2de>"``, given ids 4, 5, ... in the order given.
        ``hard_vocab_limit=False`` makes ``vocab_size`` an upper bound: data too small for it gets
        the largest vocabulary SentencePiece can make of it instead of an error.
        """
        if model_type not in MODEL_TYPES:
            raise UserError(f"tokenizer.model_type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
        writer = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.Train(
                sentence_iterator=(_text(s) for s in sentences),
                model_writer=writer,
                vocab_size=vocab_size,
                hard_vocab_limit=hard_vocab_limit,
                model_type=model_type,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                control_symbols=list(language_tags),
                byte_fallback=True,
                character_coverage=1.0,
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                split_digits=True,
                # Callers sample the sentences themselves; SentencePiece must use all it is given.
                input_sentence_size=0,
                shuffle_input_sentence=False,
                # Longer lines would be skipped silently (default 4192 bytes).
                max_sentence_length=1 << 16,
                # The result does not depend on the thread count; 2 leaves CPU for others.
                num_threads=min(2, os.cpu_count() or 1),
                minloglevel=2,
            )
        except RuntimeError as error:
            message = str(error)
            if "Vocabulary size too high" in message:
                raise UserError(
                    f"the training data is too small for tokenizer.vocab_size={vocab_size}: lower "
                    f"tokenizer.vocab_size (SentencePiece says: {message.split('] ')[-1]})") from error
            if "Vocabulary size is smaller than required_chars" in message:
                raise UserError(
                    f"tokenizer.vocab_size={vocab_size} cannot hold the 256 byte pieces, the special "
                    f"pieces and every character of the data: raise tokenizer.vocab_size "
                    f"(SentencePiece says: {message.split('] ')[-1]})") from error
            if "Sentence iterator" in message or "empty" in message.lower():
                raise UserError(f"no sentences to train a tokenizer on ({message})") from error
            raise
        return cls(writer.getvalue())

    # === Files: local, or anywhere tf.io.gfile reaches (gs://, ram://) ===

    @classmethod
    def load(cls, path):
        path = local_files.fspath(path)
        if not tf.io.gfile.exists(path):
            raise UserError(f"tokenizer model {path} does not exist")
        data = local_files.read_bytes(path)
        try:
            return cls(data)
        except UserError as error:
            raise UserError(f"tokenizer model {path} is corrupt: {error}") from error

    def save(self, path):
        """Written aside, then renamed: an interrupted save never leaves a half-written model."""
        local_files.write_atomically(path, self.model_proto)

    # === Vocabulary ===

    def id_to_piece(self, i):
        return self._processor.IdToPiece(int(i))

    def piece_to_id(self, piece):
        """The id of ``piece``, UNK_ID when it is not in the vocabulary."""
        return self._processor.PieceToId(piece)

    def pieces(self):
        return [self._processor.IdToPiece(i) for i in range(self.vocab_size)]

    def language_tag_id(self, lang):
        tag = language_tag(lang)
        i = self.piece_to_id(tag)
        if i == UNK_ID:
            tags = [p for p in self.pieces() if _LANGUAGE_TAG.match(p)]
            raise UserError(
                f"the tokenizer has no language tag {tag} (it has {', '.join(tags) or 'none'}); "
                f"a new language's tag is added with SubwordTokenizer.add_pieces")
        return i

    def add_pieces(self, pieces):
        """A new tokenizer with ``pieces`` appended at the end of the vocabulary (ids vocab_size,
        vocab_size + 1, ...); every existing id keeps its piece. Pieces already present are skipped.

        Language tags are added as control symbols, like the trained ones; other pieces as
        user-defined symbols (always kept whole when they occur in text).
        """
        model = sentencepiece_model_pb2.ModelProto()
        model.ParseFromString(self.model_proto)
        existing = {p.piece for p in model.pieces}
        for piece in pieces:
            if piece in existing:
                continue
            existing.add(piece)
            new = model.pieces.add()
            new.piece = piece
            new.score = 0.0
            if _LANGUAGE_TAG.match(piece):
                new.type = sentencepiece_model_pb2.ModelProto.SentencePiece.CONTROL
                model.trainer_spec.control_symbols.append(piece)
            else:
                new.type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
                model.trainer_spec.user_defined_symbols.append(piece)
        model.trainer_spec.vocab_size = len(model.pieces)
        return SubwordTokenizer(model.SerializeToString())

    def extend_with(self, other):
        """A new tokenizer: this one's vocabulary (every id keeps its piece) plus the pieces of
        ``other`` (a unigram model trained on a new language's text) that this one can only spell
        with UTF-8 byte pieces, i.e. pieces holding a character this vocabulary lacks. Text this
        vocabulary already covers is tokenized as before; words of the new language's own letters
        (Czech ř, ě, ů from an en-de vocabulary) get whole pieces instead of two bytes per letter.

        The new pieces keep ``other``'s scores (unigram log-probabilities), appended in ``other``'s
        order. Returns (tokenizer, the pieces added).
        """
        model = sentencepiece_model_pb2.ModelProto()
        model.ParseFromString(self.model_proto)
        if model.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
            raise UserError("extending a vocabulary needs a unigram SentencePiece model (tokenizer.model_type="
                            "unigram); this one is not: use --vocab=child")
        donor = sentencepiece_model_pb2.ModelProto()
        donor.ParseFromString(other.model_proto)
        existing = {piece.piece for piece in model.pieces}
        normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
        candidates = [piece for piece in donor.pieces if piece.type == normal and piece.piece not in existing]
        byte_ids = {i for i, piece in enumerate(model.pieces)
                    if piece.type == sentencepiece_model_pb2.ModelProto.SentencePiece.BYTE}
        spelled = self._processor.EncodeAsIds([_surface_text(piece.piece) for piece in candidates]) if candidates else []
        added = []
        for piece, ids in zip(candidates, spelled):
            if any(i in byte_ids for i in ids):
                new = model.pieces.add()
                new.piece, new.score, new.type = piece.piece, piece.score, normal
                added.append(piece.piece)
        model.trainer_spec.vocab_size = len(model.pieces)
        return SubwordTokenizer(model.SerializeToString()), added

    # === In-graph ops ===

    def tokenize(self, strings):
        """tf.string [B] -> int32 RaggedTensor [B, None] of piece ids (no bos/eos)."""
        return self._sentencepiece.tokenize(tf.convert_to_tensor(strings, tf.string))

    def detokenize(self, ids):
        """int ids [B, T] (dense and padded, or ragged) -> tf.string [B].

        Each row is cut at its first eos; pad, bos and language tags are dropped.
        """
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_tensor(default_value=PAD_ID)
        ids = tf.cast(ids, tf.int32)
        before_eos = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=1), 0)
        keep = tf.logical_and(before_eos, tf.logical_not(tf.gather(self._dropped_ids, ids)))
        return self._sentencepiece.detokenize(tf.ragged.boolean_mask(ids, keep))


class Tokenizers(tf.Module):
    """The source and target tokenizers of a run (the same object when ``joint``)."""

    def __init__(self, source, target=None):
        super().__init__(name="tokenizers")
        self.source = source
        self.target = source if target is None else target
        self.joint = self.target is self.source

    def save(self, directory):
        """Into ``directory`` (local, gs://..., ram://...): each file written aside and renamed,
        tokenizers.json last, so a directory holding it holds complete models."""
        directory = local_files.fspath(directory)
        tf.io.gfile.makedirs(directory)
        files = {"source": "spm.model", "target": "spm.model"} if self.joint else {
            "source": "source_spm.model", "target": "target_spm.model"}
        self.source.save(os.path.join(directory, files["source"]))
        if not self.joint:
            self.target.save(os.path.join(directory, files["target"]))
        info = {"joint": self.joint, "files": files,
                "vocab_size": {"source": self.source.vocab_size, "target": self.target.vocab_size}}
        local_files.write_atomically(os.path.join(directory, TOKENIZERS_JSON), json.dumps(info, indent=2) + "\n")

    @classmethod
    def load(cls, directory):
        directory = local_files.fspath(directory)
        info_path = os.path.join(directory, TOKENIZERS_JSON)
        if not tf.io.gfile.exists(info_path):
            raise UserError(f"{directory} holds no tokenizers ({TOKENIZERS_JSON} is missing)")
        try:
            info = json.loads(local_files.read_bytes(info_path))
            files = info["files"]
            source = SubwordTokenizer.load(os.path.join(directory, files["source"]))
            target = source if info["joint"] else SubwordTokenizer.load(os.path.join(directory, files["target"]))
        except (ValueError, KeyError, TypeError, UserError) as error:
            raise UserError(f"the tokenizers in {directory} are corrupt: {error}") from error
        return cls(source, target)


def _sample(sentences, limit, rng):
    """At most ``limit`` of ``sentences`` (all when limit <= 0), in their original order."""
    if limit <= 0 or len(sentences) <= limit:
        return sentences
    return [sentences[i] for i in sorted(rng.sample(range(len(sentences)), limit))]


# tokenizer.vocab_size is an upper bound: a corpus of fewer pairs gets one piece per pair, at least
# this many (SentencePiece cannot make 4,000 pieces out of 1,000 short UI strings, and small data
# wants a small vocabulary anyway: experiments/transfer_de_nl trained its 1k-pair children so).
MIN_SMALL_CORPUS_VOCAB = 512


def small_corpus_vocab_size(vocab_size, pairs):
    """The vocabulary size trained for a corpus of ``pairs`` pairs: min(vocab_size, max(512, pairs)).
    When that caps vocab_size it is an upper bound: SentencePiece makes fewer pieces if the data
    cannot fill it."""
    return min(vocab_size, max(MIN_SMALL_CORPUS_VOCAB, pairs))


def train_tokenizers(train_examples, tokenizer_config, languages, seed=1, side=None):
    """Trains the run's tokenizers on the training split.

    train_examples: iterable of {"source", "target", ...} dicts of str (or bytes).
    tokenizer_config: the ``tokenizer`` config section (vocab_size, model_type, joint,
      max_training_sentences); vocab_size is capped for small corpora (``small_corpus_vocab_size``).
    languages: every language of the pair; each gets a tag ``<2xx>`` in every tokenizer.
    side: "source" or "target": one tokenizer trained on that side's text only (a language model's
      one language); None: the pair's (joint or one per side, as ``tokenizer_config`` says).
    """
    limit = tokenizer_config.max_training_sentences
    sources, targets = [], []
    for example in train_examples:
        sources.append(normalize_whitespace(_text(example["source"])))
        targets.append(normalize_whitespace(_text(example["target"])))
    if not sources:
        raise UserError("the training split is empty: there is nothing to train a tokenizer on")
    # Sampled per side, so a joint vocabulary is balanced between the two languages.
    sources = _sample(sources, limit, random.Random(seed))
    targets = _sample(targets, limit, random.Random(seed + 1))
    if side is not None:
        sources, targets = (sources, []) if side == "source" else (targets, [])
    tags = [language_tag(lang) for lang in dict.fromkeys(languages)]
    vocab_size = small_corpus_vocab_size(tokenizer_config.vocab_size, len(sources))

    def train(sentences):
        return SubwordTokenizer.train(
            sentences, vocab_size=vocab_size, model_type=tokenizer_config.model_type,
            language_tags=tags, seed=seed, hard_vocab_limit=vocab_size == tokenizer_config.vocab_size)

    if tokenizer_config.joint or side is not None:
        return Tokenizers(train(sources + targets))
    return Tokenizers(train(sources), train(targets))
