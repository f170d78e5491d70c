"""Cross-lingual transfer: start a child run on a low-resource pair from a trained parent run.

``python -m xling_zoo.transfer --parent=runs/lstm_seq2seq-en-de --pair=en-nl --workdir=runs/child``
loads the parent's config, best weights and tokenizer, builds the child config (the parent's, with
the pair, corpus and overrides changed; the ``model`` section stays the parent's, or with ``--model``
another type takes it as that type declares: ``Task.model_config_from_parent``), writes the
child's tokenizer, and trains with the one training loop, ``trainer.train_and_evaluate``, passing it
a ``Transfer`` object as its ``transfer`` hook. The child directory is an ordinary run directory;
rerunning the same command resumes it.

Vocabulary (``vocab``):
  auto    (the default) the child's own from 2,000 training pairs on (``CHILD_VOCAB_MIN_PAIRS``), or
          where the parent's spells over half of the child's text as UTF-8 byte pieces (Greek or
          Japanese from an en-de parent); the parent's otherwise (``choose_vocab``).
  parent  keep the parent's subword vocabulary ("trivial transfer", Kocmi & Bojar 2018); a missing
          language tag (``<2nl>``) is appended with ``SubwordTokenizer.add_pieces``.
  extend  the parent's, plus the pieces of a vocabulary trained on the child's data that the
          parent's can only spell as UTF-8 bytes (``SubwordTokenizer.extend_with``): Czech from an
          en-de parent gets pieces for ř, ě, ů and the words holding them, text the parent covers is
          tokenized as before (``tokenizer.*`` configure the vocabulary trained on the child's data).
  child   train a new SentencePiece model on the child's training data (the parent's tokenizer
          settings unless overridden with ``--set=tokenizer.vocab_size=...``).
Either way every weight that ``Task.vocab_axes()`` indexes by a vocabulary is remapped piece by
piece: a piece the parent knows keeps the parent's row; a new language tag starts as the mean of the
tags of the languages the parent wrote (its one target's tag, or all of a multi-target parent's
``--pair=en-de,nl,fr``); any other new piece starts as the mean of the parent rows of the pieces
the parent tokenizer splits it into (the mean of all rows when that gives nothing). Every other
weight is copied. Weights are matched by name (``weight_keys``): a child weight the parent lacks
keeps its own initialisation (an adversarial child's discriminator), a parent weight the child lacks
is left behind, and a name whose shapes differ is an error. Optimizer state is fresh.
``CHILD/transfer.json`` lists every weight as copied, remapped, new or frozen.

Schedule: the child's comes from its own data, not the parent's (``child_schedule``): validation
every max(100 updates, one child epoch), no early stopping before 5 such intervals, then patience of
3 intervals counted in updates, a warm-up of its own, and the best checkpoint by validation BLEU.
``--set=train.KEY=...`` overrides any of it; the values used are in ``transfer.json`` (``child``).

Data: half of each pass is the parent's own training pairs (mixed fine-tuning, ``data/mixing.py``;
``mix_parent_data``), where the parent's corpus can be read, with the pairs of a language related to
the child's from the same corpus (similar-language regularisation, Neubig & Hu 2018; ``mix_related``):
on the side where the child's language is new, so an en-cs child of an en-de parent mixes en-de,sk,pl
and a cs-en child of a de-en parent mixes de,sk,pl-en (``related_mix_pair``). By default (``auto``)
they are the child language's two closest relatives with enough pairs there (``auto_related``), for
a child of fewer than 2,000 pairs; none where the table of ``data/related_languages.py`` knows none.
"""

import dataclasses
import json
import re

import numpy as np
import tensorflow as tf
from absl import logging

from xling_zoo import config as config_lib
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus, mixing, related_languages
from xling_zoo.data.tokenizer import Tokenizers, language_tag, train_tokenizers
from xling_zoo.errors import UserError
from xling_zoo.registry import get_model

VOCAB_MODES = ("parent", "extend", "child", "auto")
TRANSFER_FILE = "transfer.json"
# transfer.json keys that must not change when a child run is resumed: they fix its tokenizer and
# the structure of its optimizer checkpoint.
RESUME_KEYS = ("parent", "vocab", "freeze", "transferred_lr_multiplier", "encoder_lm")
# New pieces listed by name in transfer.json (the counts are always complete).
LISTED_NEW_PIECES = 50

_LANGUAGE_TAG = re.compile(r"^<2[^<>\s]+>$")
# Keras makes auto-generated layer names unique per process ("forward_lstm" -> "forward_lstm_1"),
# so two builds of one model differ in these suffixes only.
_UNIQUE_SUFFIX = re.compile(r"_\d+$")


# === Vocabulary remapping ===

@dataclasses.dataclass
class VocabRemap:
    """Where each row of a child vocabulary comes from.

    parent_ids: int64 [child_size]: the parent id of each child piece, -1 for a new piece.
    sources: {child id: [parent ids]} for new pieces: their row is the mean of these parent rows
      (the mean of all parent rows when the list is empty).
    kinds: {child id: "language_tag" | "pieces" | "mean"}: how each new row is initialised.
    """

    parent_size: int
    child_size: int
    parent_ids: np.ndarray
    sources: dict
    kinds: dict
    new_pieces: list

    @property
    def kept(self):
        return int(np.sum(self.parent_ids >= 0))

    @property
    def identity(self):
        return self.parent_size == self.child_size and bool(np.all(self.parent_ids == np.arange(self.child_size)))

    def summary(self):
        counts = {kind: 0 for kind in ("language_tag", "pieces", "mean")}
        for kind in self.kinds.values():
            counts[kind] += 1
        return {"parent_size": self.parent_size, "child_size": self.child_size, "kept": self.kept,
                "new": self.child_size - self.kept, "new_initialised_from": counts,
                "new_pieces": self.new_pieces[:LISTED_NEW_PIECES]}


def _surface(piece):
    # The tokenizer adds the word-initial "▁" itself (SentencePiece's dummy prefix).
    return piece.replace("▁", " ").lstrip(" ")


def remap_vocabulary(parent_tokenizer, child_tokenizer, parent_tags=()):
    """The ``VocabRemap`` from ``parent_tokenizer``'s ids to ``child_tokenizer``'s.

    parent_tags: language tags whose parent rows initialise a new language tag (the tags the parent
      was trained with); when none of them exists, every tag of the parent vocabulary is used.
    """
    parent_pieces = parent_tokenizer.pieces()
    parent_index = {piece: i for i, piece in enumerate(parent_pieces)}
    child_pieces = child_tokenizer.pieces()
    parent_ids = np.array([parent_index.get(p, -1) for p in child_pieces], np.int64)
    tag_rows = [parent_index[t] for t in parent_tags if t in parent_index] or [
        i for i, p in enumerate(parent_pieces) if _LANGUAGE_TAG.match(p)]

    new_ids = [i for i in range(len(child_pieces)) if parent_ids[i] < 0]
    sources, kinds = {}, {}
    word_ids = [i for i in new_ids if not _LANGUAGE_TAG.match(child_pieces[i])]
    if word_ids:
        # One batched call: the in-graph tokenizer is slow per string.
        split = parent_tokenizer.tokenize([_surface(child_pieces[i]) for i in word_ids]).to_list()
    for i in new_ids:
        if _LANGUAGE_TAG.match(child_pieces[i]):
            sources[i], kinds[i] = list(tag_rows), "language_tag" if tag_rows else "mean"
    for i, ids in zip(word_ids, split if word_ids else []):
        # A word-internal piece is tokenized as a word: drop the lone "▁" the dummy prefix adds.
        if ids and parent_pieces[ids[0]] == "▁" and not child_pieces[i].startswith("▁"):
            ids = ids[1:]
        ids = [j for j in ids if j != 1]  # <unk> carries no meaning (byte fallback makes it rare)
        sources[i], kinds[i] = ids, "pieces" if ids else "mean"
    return VocabRemap(parent_size=len(parent_pieces), child_size=len(child_pieces), parent_ids=parent_ids,
                      sources=sources, kinds=kinds, new_pieces=[child_pieces[i] for i in new_ids])


def remap_array(value, axis, remap):
    """``value`` (a parent weight indexed by the parent vocabulary along ``axis``) re-indexed by the
    child vocabulary: kept pieces keep their slice, new pieces get the mean of their sources'."""
    value = np.asarray(value)
    if value.shape[axis] != remap.parent_size:
        raise UserError(f"a weight of shape {value.shape} has {value.shape[axis]} vocabulary entries along "
                        f"axis {axis}, but the parent tokenizer has {remap.parent_size} pieces")
    rows = np.moveaxis(value, axis, 0)
    out = np.empty((remap.child_size,) + rows.shape[1:], rows.dtype)
    kept = remap.parent_ids >= 0
    out[kept] = rows[remap.parent_ids[kept]]
    mean = rows.mean(axis=0)
    for i, parents in remap.sources.items():
        out[i] = rows[parents].mean(axis=0) if parents else mean
    return np.moveaxis(out, 0, axis)


# === Child tokenizers ===

def child_tokenizers(parent_tokenizers, languages, vocab, tokenizer_config, train_examples=None, seed=1):
    """The child's tokenizers: the parent's plus missing language tags (vocab="parent"); those plus
    the pieces of a vocabulary trained on ``train_examples`` that the parent's can only spell as
    UTF-8 bytes (vocab="extend", ``SubwordTokenizer.extend_with``); or new ones trained on
    ``train_examples`` with ``tokenizer_config`` (vocab="child").

    languages: a ``corpus.Pair``, or every language of the child's training examples
      (``mixing.languages``): each gets a tag.
    """
    if isinstance(languages, corpus.Pair):
        languages = mixing.Languages(languages.source_languages, languages.target_languages)
    languages = sorted(set(languages.source) | set(languages.target))
    if vocab == "child":
        return train_tokenizers(train_examples, tokenizer_config, languages, seed=seed)
    tags = [language_tag(lang) for lang in languages]
    source = parent_tokenizers.source.add_pieces(tags)
    target = None if parent_tokenizers.joint else parent_tokenizers.target.add_pieces(tags)
    if vocab == "extend":
        donor = train_tokenizers(train_examples, tokenizer_config, languages, seed=seed)
        source = source.extend_with(donor.source)[0]
        if target is not None:
            target = target.extend_with(donor.target)[0]
    return Tokenizers(source, target)


# === The trainer's transfer hook ===

def weight_keys(model):
    """Each weight's name inside ``model``, for matching a parent's weights to a child's: its path
    without the model's own name (``transformer/encoder_layer_0/...`` and ``adversarial/encoder_layer_0/...``
    are one weight) and without Keras's per-process unique suffixes, numbered ``#k`` from the second
    weight that shares one (the suffixes of ``encoder_layer_0`` and ``encoder_layer_1`` are dropped
    too, so layers of one kind pair up in build order)."""
    keys, seen = [], {}
    for variable in model.weights:
        inside = variable.path.split("/", 1)[-1]
        key = "/".join(_UNIQUE_SUFFIX.sub("", part) for part in inside.split("/"))
        count = seen.get(key, 0)
        seen[key] = count + 1
        keys.append(f"{key}#{count}" if count else key)
    return keys


# Weights named in a shape error or a console listing (the counts are always complete).
LISTED_WEIGHTS = 10


class Transfer:
    """The ``transfer`` hook of ``trainer.train_and_evaluate``: initialize, freeze, lr_multipliers,
    write_report (see its docstring).

    Weights are matched by name (``weight_keys``), so the child may be another model type that takes
    the parent's parts (``Task.model_config_from_parent``): an ``adversarial`` child of a
    ``transformer`` parent gets its translator and a fresh discriminator; a ``transformer`` child of an
    ``adversarial`` parent leaves the discriminator behind. Every child weight is copied, remapped
    (vocabulary rows, see ``remap_vocabulary``) or new (no parent weight of its name: the child's own
    initialisation); a name whose shapes differ is an error.

    Args:
        parent: workdir.Run. The loaded parent run (config, tokenizers, restored model).
        tokenizers: Tokenizers. The child's tokenizers.
        vocab: str. "parent" or "child" (recorded in the report).
        freeze: sequence of str. Layer groups (the child's ``Task.layer_groups()``) left untrained.
        transferred_lr_multiplier: float. Learning-rate factor of the weights copied unchanged from
            the parent; weights with new vocabulary rows train at the full rate.
        child: dict. What the report says about the child (pair, corpus, ...).
        encoder_source: workdir.Run or None. A language model of the child's source language whose
            layers initialise the child's encoder instead of the parent's (Ramachandran et al. 2017):
            the weights the child maps to it (``Seq2SeqTask.encoder_key_in_lm``), its vocabulary
            remapped to the child's source vocabulary.
    """

    def __init__(self, parent, tokenizers, vocab="parent", freeze=(), transferred_lr_multiplier=1.0, child=None,
                 encoder_source=None):
        self.parent = parent
        self.tokenizers = tokenizers
        self.vocab = vocab
        self.freeze_groups = list(dict.fromkeys(freeze))
        self.transferred_lr_multiplier = float(transferred_lr_multiplier)
        self.child = dict(child or {})
        if not self.transferred_lr_multiplier > 0:
            raise UserError(f"--transferred_lr_multiplier must be > 0, got {transferred_lr_multiplier} "
                            "(use --freeze to keep weights fixed)")

        # A new language's tag starts as the mean of the tags of the languages the parent wrote (a
        # language model's: its one language).
        written = [parent.config.language] if parent.config.get("language") else parent.pair.target_languages
        parent_tags = [language_tag(language) for language in written]
        self.remaps = {"source": remap_vocabulary(parent.tokenizers.source, tokenizers.source, parent_tags)}
        self.remaps["target"] = (self.remaps["source"] if parent.tokenizers.joint and tokenizers.joint else
                                 remap_vocabulary(parent.tokenizers.target, tokenizers.target, parent_tags))
        # {weight key: (parent path, the child's value, (side, axis) if remapped else None)}.
        self._parent_weights = self._weights_of(parent.model, self.remaps)
        self.encoder_source, self._encoder_weights = encoder_source, None
        if encoder_source is not None:
            tags = [language_tag(encoder_source.config.language)]
            self.remaps["encoder_lm"] = remap_vocabulary(encoder_source.tokenizers.target, tokenizers.source, tags)
            self._encoder_weights = self._weights_of(encoder_source.model, {"target": self.remaps["encoder_lm"]},
                                                     side="encoder_lm", prefix=f"{encoder_source.workdir}:")

    @staticmethod
    def _weights_of(model, remaps, side=None, prefix=""):
        """{weight key: (path, value with its vocabulary rows remapped, (side, axis) if remapped)}."""
        axes, weights = model.vocab_axes(), {}
        for key, variable in zip(weight_keys(model), model.weights):
            value, how = variable.numpy(), None
            if variable.path in axes and not remaps[axes[variable.path][0]].identity:
                vocabulary, axis = axes[variable.path]
                how = (side or vocabulary, axis)
                value = remap_array(value, axis, remaps[vocabulary])
            weights[key] = (prefix + variable.path, value, how)
        return weights

    # --- Hooks ---------------------------------------------------------------------------------

    def initialize(self, model):
        """Sets every weight of ``model`` (a freshly built child) that the parent has. Returns the report."""
        self._check_freeze_groups(model)
        matched, mismatched = [], []
        for entry, variable in zip(self._sources(model)[0], model.weights):
            if entry is None:
                continue
            parent_path, value, _ = entry
            if tuple(variable.shape) != value.shape:
                mismatched.append(f"{variable.path} {tuple(variable.shape)} <- {parent_path} {value.shape}")
            matched.append((variable, value))
        if mismatched:
            raise UserError(f"{len(mismatched)} of the child's weights do not fit the parent's of the same name "
                            f"(child shape <- parent shape): {'; '.join(mismatched[:LISTED_WEIGHTS])}"
                            + (f" (and {len(mismatched) - LISTED_WEIGHTS} more)" if len(mismatched) > LISTED_WEIGHTS else "") +
                            ". The child's model config must keep the parent's sizes (--set=model.* changed them?)")
        if not matched:
            raise UserError(f"the child {model.name} shares no weight with the parent {self.parent.model.name} "
                            f"({self.parent.workdir}): nothing to transfer")
        for variable, value in matched:
            variable.assign(value)
        return self._report(model)

    def freeze(self, model):
        self._check_freeze_groups(model)
        for name in self._frozen_layers(model):
            model.get_layer(name).trainable = False

    def lr_multipliers(self, model):
        """{variable path: multiplier} for the variables copied unchanged from the parent."""
        if self.transferred_lr_multiplier == 1.0:
            return {}
        return {v.path: self.transferred_lr_multiplier for v in self._matched(model, "copied")}

    def write_report(self, workdir, report):
        workdir_lib.write_atomically(workdir_lib.join(workdir, TRANSFER_FILE), json.dumps(report, indent=2) + "\n")
        print(format_report(report))

    # --- Report --------------------------------------------------------------------------------

    def settings(self):
        """What a resumed child run must be started with again (see RESUME_KEYS)."""
        return {"parent": workdir_lib.absolute(self.parent.workdir), "vocab": self.vocab, "freeze": self.freeze_groups,
                "transferred_lr_multiplier": self.transferred_lr_multiplier,
                "encoder_lm": workdir_lib.absolute(self.encoder_source.workdir) if self.encoder_source else None}

    def _sources(self, model):
        """Where each of the child's weights comes from: a list (in ``model.weights``' order) of
        (source path, value, how it was remapped) or None (new), and the keys of the parent's weights
        used. A weight takes the parent's of its own key (``weight_keys``), or of the key the child
        declares for a parent of another task (``Task.parent_weight_key``: a tied translator's
        ``shared_embedding`` is a language model's ``target_embedding``); with an encoder source,
        the weights the child maps to that language model take its (``encoder_key_in_lm``)."""
        parent_task = self.parent.model.task_type
        entries, used = [], set()
        for key in weight_keys(model):
            lm_key = model.encoder_key_in_lm(key) if self._encoder_weights is not None else None
            if lm_key is not None:
                entries.append(self._encoder_weights.get(lm_key))
                continue
            parent_key = model.parent_weight_key(key, parent_task)
            entries.append(self._parent_weights.get(parent_key))
            used.add(parent_key)
        return entries, used

    def _check_freeze_groups(self, model):
        """Known groups, holding no weight the parent does not give (frozen at its random start)."""
        groups = model.layer_groups()
        unknown = [g for g in self.freeze_groups if g not in groups]
        if unknown:
            raise UserError(f"--freeze: unknown layer group {', '.join(unknown)}; {model.name} has "
                            f"{', '.join(groups) or 'no groups'}")
        fresh = {id(v) for v, entry in zip(model.weights, self._sources(model)[0]) if entry is None}
        untrained = [v.path for name in self._frozen_layers(model) for v in model.get_layer(name).weights
                     if id(v) in fresh]
        if untrained:
            raise UserError(f"--freeze={','.join(self.freeze_groups)} would keep {len(untrained)} weights that the "
                            f"parent does not give at their random start (e.g. {untrained[0]}): freeze other "
                            "groups, or none")

    def _frozen_layers(self, model):
        groups = model.layer_groups()
        return [name for group in self.freeze_groups for name in groups[group]]

    def _matched(self, model, kind):
        """The child's variables that the parent ``copied`` unchanged, ``remapped``, or did not have (``new``)."""
        result = []
        for entry, variable in zip(self._sources(model)[0], model.weights):
            found = "new" if entry is None else "copied" if entry[2] is None else "remapped"
            if found == kind:
                result.append(variable)
        return result

    def _report(self, model):
        remapped = {}
        entries, used = self._sources(model)
        for entry, variable in zip(entries, model.weights):
            if entry is not None and entry[2] is not None:
                side, axis = entry[2]
                remap = self.remaps[side]
                remapped[variable.path] = {"vocabulary": side, "axis": axis, "rows_kept": remap.kept,
                                           "rows_new": remap.child_size - remap.kept}
        frozen = [v.path for name in self._frozen_layers(model) for v in model.get_layer(name).weights]
        vocabularies = ({"joint": self.remaps["source"].summary()} if self.remaps["source"] is self.remaps["target"]
                        else {side: remap.summary() for side, remap in self.remaps.items() if side != "encoder_lm"})
        if "encoder_lm" in self.remaps:
            vocabularies["encoder_lm"] = self.remaps["encoder_lm"].summary()
        copied = self._matched(model, "copied")
        multipliers = {v.path: self.transferred_lr_multiplier for v in copied
                       if v.path not in frozen and self.transferred_lr_multiplier != 1.0}
        encoder = {}
        if self._encoder_weights is not None:
            taken = {entry[0] for entry in entries if entry is not None}
            encoder = {"encoder_from": {"checkpoint": str(self.encoder_source.checkpoint),
                                        "language": self.encoder_source.config.language,
                                        "not_used": [path for path, _, _ in self._encoder_weights.values()
                                                     if path not in taken]}}
        return {
            **self.settings(),
            "parent_checkpoint": str(self.parent.checkpoint),
            "parent_pair": self.parent.config.pair,
            "parent_model_name": self.parent.config.model_name,
            "model_name": model.registered_name,
            "child": self.child,
            "vocabularies": vocabularies,
            "copied": [v.path for v in copied],
            "remapped": remapped,
            # The child's own initialisation: weights the parent does not have.
            "new": [v.path for v in self._matched(model, "new")],
            # The parent's weights that the child has no place for (an adversarial parent's discriminator).
            "parent_not_used": [path for key, (path, _, _) in self._parent_weights.items() if key not in used],
            **encoder,
            "frozen": {"groups": self.freeze_groups, "variables": frozen},
            "lr_multipliers": multipliers,
        }


def _a(name):
    """'a transformer', 'an adversarial', 'an lm' (said letter by letter)."""
    return f"{'an' if name[0] in 'aeiou' or name == 'lm' else 'a'} {name}"


def format_report(report):
    """A few lines for the console."""
    child_info = report["child"]
    auto = ""
    if child_info.get("vocab_requested") == "auto" and not child_info["parent_vocab_byte_piece_share"]:
        auto = " (auto: a language model parent's vocabulary holds its one language only)"
    elif child_info.get("vocab_requested") == "auto":
        worst = max(child_info["parent_vocab_byte_piece_share"].values())
        auto = (f" (auto: {child_info['train_pairs']} training pairs, " +
                (f"from {CHILD_VOCAB_MIN_PAIRS} on the child's own vocabulary; " if report["vocab"] == "child" and
                 child_info["train_pairs"] >= CHILD_VOCAB_MIN_PAIRS else "") +
                f"the parent's vocabulary spells {worst:.0%} of the child's text as byte pieces)")
    lines = [f"Transfer from {report['parent']} ({report['parent_pair']}) with --vocab={report['vocab']}{auto}:"]
    for side, v in report["vocabularies"].items():
        lines.append(f"  {side} vocabulary: {v['parent_size']} -> {v['child_size']} pieces, {v['kept']} kept, "
                     f"{v['new']} new (initialised from: " +
                     ", ".join(f"{k} {n}" for k, n in v["new_initialised_from"].items()) + ")")
    mix = child_info.get("mix") or {}
    if mix.get("ratio"):
        lines.append(f"  mixed fine-tuning: {mix['ratio']:.0%} of each pass is {mix['pair']} from {mix['corpus']}" +
                     (f" ({child_info['mix_related_note']})" if child_info.get("mix_related_note") else ""))
    elif child_info.get("mix_related_note"):
        lines.append(f"  {child_info['mix_related_note']}")
    if report["model_name"] != report["parent_model_name"]:
        lines.append(f"  {_a(report['parent_model_name'])} parent -> {_a(report['model_name'])} child, "
                     "weights matched by name")
    lines.append(f"  copied {len(report['copied'])} weights; remapped {len(report['remapped'])}:")
    for path, r in report["remapped"].items():
        lines.append(f"    {path}: {r['rows_kept']} rows kept, {r['rows_new']} new ({r['vocabulary']}, axis {r['axis']})")
    for kind, what in (("new", "new (the child's own initialisation; the parent has no such weight)"),
                       ("parent_not_used", "of the parent's weights not used (the child has no such weight)")):
        if report[kind]:
            listed = report[kind][:LISTED_WEIGHTS]
            lines.append(f"  {len(report[kind])} {what}: {', '.join(listed)}" +
                         (" ..." if len(report[kind]) > len(listed) else ""))
    schedule = report["child"].get("schedule")
    if schedule:
        overridden = report["child"].get("schedule_overridden") or []
        lines.append(f"  child schedule ({report['child']['steps_per_epoch']} updates per epoch): " +
                     ", ".join(f"{k}={v}" for k, v in schedule.items()) +
                     (f"; set with --set: {', '.join(overridden)}" if overridden else ""))
    if report["frozen"]["groups"]:
        lines.append(f"  frozen: {', '.join(report['frozen']['groups'])} ({len(report['frozen']['variables'])} weights)")
    if report["lr_multipliers"]:
        lines.append(f"  learning rate x{report['transferred_lr_multiplier']} for {len(report['lr_multipliers'])} "
                     "transferred weights")
    return "\n".join(lines)


# === The child config and run ===

# The child's schedule, in updates, from the length of its own epoch (not the parent's): an epoch
# of 1,000 pairs is ~13 updates, so per-epoch validation with a patience of 3 evaluations stopped
# a child after ~52 updates and kept one that still wrote the parent's language.
CHILD_MIN_EVAL_EVERY = 100
# Early stopping waits this many evaluation intervals, and then that many without a gain.
CHILD_MIN_EVALUATIONS = 5
CHILD_PATIENCE_EVALUATIONS = 3
# At most this many evaluation intervals (early stopping ends a child long before).
CHILD_MAX_EVALUATIONS = 50
# Fresh Adam moments take large first steps: warm up again so they do not wreck the parent's weights.
CHILD_WARMUP_STEPS = 100
# Measured (experiments/child_defaults, en-da, 1k pairs): with the schedule above, validation BLEU
# kept the checkpoint after 900 updates (test BLEU 25.8), chrF after 500 (24.9) and the loss after
# 200 (20.1, below copying the source: the loss rises while the translations still improve).
CHILD_SELECTION_METRIC = "bleu"
# Mixed fine-tuning by default: half of each pass is the parent's own pairs. Measured at 1k pairs
# (experiments/child_languages, lstm, one seed), test BLEU against the child's pairs alone: +0.4
# en-sv, +1.3 sv-en, +1.5 en-cs, +1.9 cs-en, +0.3 fi-en, -1.4 en-fi; without it en-cs stays below
# copying the source.
CHILD_MIX_PARENT_DATA = 0.5


def child_schedule(steps_per_epoch):
    """The child's train.* settings for an epoch of ``steps_per_epoch`` updates."""
    eval_every = max(CHILD_MIN_EVAL_EVERY, steps_per_epoch)
    return {"eval_every_steps": eval_every, "min_steps_before_early_stopping": CHILD_MIN_EVALUATIONS * eval_every,
            "early_stopping_patience_steps": CHILD_PATIENCE_EVALUATIONS * eval_every,
            "steps": CHILD_MAX_EVALUATIONS * eval_every, "warmup_steps": CHILD_WARMUP_STEPS,
            "selection_metric": CHILD_SELECTION_METRIC}


def _overridden(overrides):
    return {assignment.split("=", 1)[0].strip() for assignment in overrides}


def make_child_config(parent_config, pair, corpus_spec=None, data_dir=None, max_train_examples=None,
                      overrides=(), model_name=None, steps_per_epoch=None, config_file=None):
    """The parent's config with the child's pair, corpus and overrides.

    model_name: the child's model type (default: the parent's). Another type takes its ``model``
    section from the parent's as that type declares (``Task.model_config_from_parent``), or refuses.
    steps_per_epoch: updates in one epoch of the child's data; when given, the child's schedule
    (``child_schedule``) replaces the parent's, key by key unless ``overrides`` set the key.
    config_file: the config file of a child of another type (default configs/<model_name>.py): its
    defaults, and for a child of another task everything but the parent's part of the model.
    """
    parent_model = parent_config.model_name
    child_model = model_name or parent_model
    config = config_lib.from_json(config_lib.to_json(parent_config))
    if config_file is not None and child_model == parent_model:
        raise UserError(f"--config={config_file} is for a child of another model type (--model=...); a "
                        f"{child_model} child of a {parent_model} parent is the parent's config, changed with --set")
    if child_model != parent_model:
        child_class = get_model(child_model)
        default = config_lib.load_config(child_model, config_file)
        model_section = child_class.model_config_from_parent(parent_model, config.model, default.model)
        if get_model(parent_model).task_type != child_class.task_type:
            # Another task's training settings are not the child's (a language model's schedule and
            # selection by perplexity): the child's defaults, with the parent's corpus and tokenizer.
            default.corpus, default.data_dir, default.tokenizer = config.corpus, config.data_dir, config.tokenizer
            default.skip_bad_lines = config.skip_bad_lines
            config = default
        config.model = model_section
        config.model_name = child_model
    config.pair = str(corpus.Pair.parse(pair))
    config.mix = config_lib.common_defaults().mix  # What the parent mixed in is not the child's.
    if corpus_spec is not None:
        config.corpus = corpus_spec
    if data_dir is not None:
        config.data_dir = data_dir
    # The child uses all of its data unless told otherwise, whatever the parent used.
    config.max_train_examples = max_train_examples or 0
    if steps_per_epoch is not None:
        for key, value in child_schedule(steps_per_epoch).items():
            config.train[key] = value
        if "train.epochs" in _overridden(overrides):
            config.train.steps = 0  # --epochs asks for epochs; the schedule's update count would win.
    for assignment in overrides:
        config_lib.apply_override(config, assignment)
    if config.model_name != child_model:
        raise UserError(f"--set=model_name={config.model_name}: choose the child's model type with "
                        f"--model={config.model_name} instead")
    return config


# The parent's vocabulary cannot carry a language it writes mostly as UTF-8 byte pieces (say Greek
# or Japanese from a Latin-script parent: 89% and 95% of the pieces of 1,000 child sentences, which
# also grow 3x longer than data.max_length allows). Czech from the en-de parent is 22% byte pieces,
# Hungarian 13%, Swedish and Finnish under 1%: those transfer, with a warning above 10% (en-cs at 1k
# pairs: test BLEU 20.77 with the parent's vocabulary, 20.64 with the child's; experiments/child_languages).
MAX_BYTE_PIECE_SHARE = 0.5
WARN_BYTE_PIECE_SHARE = 0.1
# From this many training pairs on, --vocab=auto trains the child's own vocabulary: it then has the
# data for one, and the parent's spells the child's language in more, rarer pieces (Czech in the
# en-de vocabulary: 2.75x as many pieces as English, 11% of the pairs over data.max_length). Measured
# in experiments/transfer_de_nl (en-nl: the child's vocabulary +1.4 to +8.7 BLEU at 2k, 5k and 16k
# pairs, equal at 1k) and experiments/child_languages (transformer cs-en at 5k pairs; lstm en-cs at 1k:
# the parent's vocabulary 21.49, the child's 20.67).
CHILD_VOCAB_MIN_PAIRS = 2000
_COVERAGE_SAMPLE = 1000
_BYTE_PIECE = re.compile(r"^<0x[0-9A-F]{2}>$")


def byte_piece_share(tokenizer, texts):
    """The share of ``tokenizer``'s pieces for ``texts`` that are byte-fallback pieces."""
    byte_ids = tf.constant([i for i, p in enumerate(tokenizer.pieces()) if _BYTE_PIECE.match(p)] or [-1])
    ids = tokenizer.tokenize(list(texts)).flat_values
    total = int(tf.size(ids))
    if not total:
        return 0.0
    return int(tf.reduce_sum(tf.cast(tf.reduce_any(tf.equal(ids[:, None], byte_ids[None, :]), -1), tf.int32))) / total


def parent_vocabulary_shares(parent_tokenizers, child_pair, train_examples):
    """{side: (languages, share of the child's pieces that the parent's vocabulary spells as bytes)}
    on the first 1,000 of the child's ``train_examples`` (lists of dicts of text)."""
    examples = train_examples[:_COVERAGE_SAMPLE]
    sides = (("source", parent_tokenizers.source, ", ".join(child_pair.source_languages)),
             ("target", parent_tokenizers.target, ", ".join(child_pair.target_languages)))
    return {side: (language, byte_piece_share(tokenizer, [example[side] for example in examples]), len(examples))
            for side, tokenizer, language in sides}


def choose_vocab(vocab, shares, train_pairs):
    """The vocabulary a child with ``train_pairs`` training pairs gets: --vocab=auto trains the child's
    own from CHILD_VOCAB_MIN_PAIRS pairs on, or where the parent's cannot carry the child's text (over
    50% byte pieces), and keeps the parent's otherwise; --vocab=parent is refused where it cannot carry
    the text and warned about above 10%."""
    if vocab in ("child", "extend"):
        return vocab
    worst = max(share for _, share, _ in shares.values())
    if vocab == "auto":
        return "child" if worst > MAX_BYTE_PIECE_SHARE or train_pairs >= CHILD_VOCAB_MIN_PAIRS else "parent"
    for side, (language, share, examples) in shares.items():
        if share > MAX_BYTE_PIECE_SHARE:
            raise UserError(
                f"the parent's vocabulary spells {share:.0%} of the child's {side} text ({language}, "
                f"{examples} training sentences) as UTF-8 byte pieces: it cannot carry {language}. "
                "Use --vocab=extend (the parent's vocabulary plus pieces for the letters it lacks), --vocab=child "
                "(a new vocabulary trained on the child's data, its rows initialised from the parent's pieces) or "
                f"--vocab=auto, or a parent whose training data covers {language}'s script")
        if share > WARN_BYTE_PIECE_SHARE:
            logging.warning("The parent's vocabulary spells %.0f%% of the child's %s text (%s) as UTF-8 byte "
                            "pieces; --vocab=extend may transfer better", 100 * share, side, language)
    return vocab


def _check_child_workdir(workdir, parent_workdir, settings):
    """Refuses a child workdir that is the parent, or a run this transfer cannot resume. Returns the
    existing transfer.json settings (None for a new child)."""
    if workdir_lib.absolute(workdir) == workdir_lib.absolute(parent_workdir):
        raise UserError(f"--workdir={workdir} is the parent run itself; choose a new directory for the child")
    if not tf.io.gfile.exists(workdir_lib.join(workdir, workdir_lib.CONFIG_FILE)):
        return None
    previous = workdir_lib.read_json(workdir_lib.join(workdir, TRANSFER_FILE))
    if previous is None:
        if workdir_lib.latest_checkpoint(workdir, "latest"):
            raise UserError(f"--workdir={workdir} holds a run that was not made by transfer (no {TRANSFER_FILE}); "
                            "choose another --workdir")
        return None
    different = [k for k in RESUME_KEYS if previous.get(k) != settings[k]]
    if different:
        was = ", ".join(f"{k}={previous.get(k)!r}" for k in different)
        raise UserError(f"--workdir={workdir} is a child run made with {was}; rerun with those settings to "
                        "resume it, or choose another --workdir")
    return previous


def related_mix_pair(parent_pair, child_pair, related):
    """The pair mixed into a child's passes: the parent's, plus the ``related`` languages on the side
    where the child's language is new to the parent (its targets for en->X, its sources for X->en)."""
    parent, child = corpus.Pair.parse(str(parent_pair)), corpus.Pair.parse(str(child_pair))
    related = tuple(dict.fromkeys(language.strip().lower() for language in related))
    if not related:
        return parent
    side, why_not = _new_languages(parent, child)
    if side is None:
        raise UserError(f"--mix_related is for a child language the parent lacks, on one side: {why_not}")
    own = child.target_languages if side == "target" else child.source_languages
    for language in related:
        if language in own:
            raise UserError(f"--mix_related={language} is the child's own {side} language; name languages "
                            "related to it")
    try:
        if side == "target":
            return corpus.Pair(parent.source_languages, parent.target_languages + related)
        return corpus.Pair(parent.source_languages + related, parent.target_languages)
    except UserError as error:
        raise UserError(f"--mix_related={','.join(related)} with the parent's pair {parent}: {error}") from None


# --mix_related=auto mixes in the child's closest relatives (data/related_languages.py), at most
# RELATED_MAX of them, that the parent's corpus holds with at least RELATED_MIN_PAIRS training pairs
# each: fewer would be a sliver of the mixed pairs (the built-in corpus has 195 en-et pairs beside
# 18,021 en-de). Measured on the lstm's en-cs child of an en-de parent at 1k pairs
# (experiments/child_languages, 2 seeds, test BLEU; copying the source 22.12): the parent's pair
# alone 21.00, with Slovak 20.99, Slovak and Polish 22.51, Polish alone 22.67. Only for a child of
# fewer than RELATED_MAX_CHILD_PAIRS pairs: at 1k the two relatives changed test BLEU by -0.4 to
# +1.5 on 8 model x pair cells (mean +0.8), at 5k by -2.7 to +0.5 on 4 (mean -1.2, one seed each).
RELATED_MIN_PAIRS = 1000
RELATED_MAX = 2
RELATED_MAX_CHILD_PAIRS = 2000
# How much of a corpus error auto's note quotes for a relative it passes over.
REASON_CHARS = 80


def _new_languages(parent_pair, child_pair):
    """(side, languages): the child's languages the parent lacks, all on one side ("target" for
    en->X, "source" for X->en); (None, why not) when both sides or neither have one."""
    new_targets = [lang for lang in child_pair.target_languages if lang not in parent_pair.target_languages]
    new_sources = [lang for lang in child_pair.source_languages if lang not in parent_pair.source_languages]
    if new_targets and new_sources:
        return None, f"--pair={child_pair} has new languages on both sides of the parent's {parent_pair}"
    if not new_targets and not new_sources:
        return None, f"--pair={child_pair} has no language the parent's {parent_pair} lacks"
    return ("target", tuple(new_targets)) if new_targets else ("source", tuple(new_sources))


def _new_language(parent_pair, child_pair):
    """(side, language): the child's one language the parent lacks, or (None, why not)."""
    side, new = _new_languages(parent_pair, child_pair)
    if side is not None and len(new) > 1:
        return None, f"--pair={child_pair} has several languages the parent's {parent_pair} lacks"
    return (side, new[0]) if side is not None else (None, new)


def auto_related(parent_config, child_pair, data_dir=None, train_pairs=0, skip_bad_lines=False):
    """(languages, note): what --mix_related=auto mixes in, and why. For a child of fewer than
    RELATED_MAX_CHILD_PAIRS ``train_pairs``, the RELATED_MAX closest relatives of its new language
    (``related_languages.closest_relatives``) that are on neither side of the parent's or the
    child's pair, and of which the parent's corpus holds RELATED_MIN_PAIRS training pairs with the
    parent's other side; () where there are none."""
    if train_pairs >= RELATED_MAX_CHILD_PAIRS:
        return (), (f"no related language mixed in: the child has {train_pairs} training pairs; from "
                    f"{RELATED_MAX_CHILD_PAIRS} on, mixing relatives in did not help (README: transfer)")
    parent, child = corpus.Pair.parse(str(parent_config.pair)), corpus.Pair.parse(str(child_pair))
    side, language = _new_language(parent, child)
    if side is None:
        return (), f"no related language mixed in: {language}"
    if corpus.CorpusSpec.parse(parent_config.corpus).scheme == "tsv":
        return (), f"no related language mixed in: the parent's corpus {parent_config.corpus} holds one pair"
    relatives = related_languages.closest_relatives(language)
    if not relatives:
        return (), f"no language related to {language} is known (xling_zoo/data/related_languages.py)"
    taken = set(parent.source_languages + parent.target_languages + child.source_languages + child.target_languages)
    passed, chosen = [], []
    for relative in relatives:
        if len(chosen) == RELATED_MAX:
            break
        if relative in taken:
            passed.append(f"{relative} (in the pairs already)")
            continue
        pair = (corpus.Pair(parent.source_languages, (relative,)) if side == "target"
                else corpus.Pair((relative,), parent.target_languages))
        try:
            examples = corpus.load_split(parent_config.corpus, pair, "train", data_dir=data_dir or None,
                                         max_train_examples=RELATED_MIN_PAIRS, skip_bad_lines=skip_bad_lines)
            count = int(examples.reduce(np.int64(0), lambda count, _: count + 1))
        except UserError as error:  # Shortened: the built-in corpus's error lists its ~80 languages.
            reason = str(error).splitlines()[0]
            reason = reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 3] + "..."
            passed.append(f"{relative} (not in {parent_config.corpus}: {reason})")
            continue
        if count < RELATED_MIN_PAIRS:
            passed.append(f"{relative} ({count} {pair} training pairs, under {RELATED_MIN_PAIRS})")
            continue
        chosen.append(relative)
    if not chosen:
        return (), f"no relative of {language} to mix in: {', '.join(passed)}"
    return tuple(chosen), (f"{', '.join(chosen)}: the closest relatives of {language} with {RELATED_MIN_PAIRS}+ "
                           f"training pairs in {parent_config.corpus}" +
                           (f"; passed over {', '.join(passed)}" if passed else ""))


def transfer(parent, workdir, pair, *, corpus_spec=None, data_dir=None, max_train_examples=None, vocab="auto",
             freeze=(), transferred_lr_multiplier=1.0, overrides=(), model_name=None, mix_parent_data=None,
             mix_related=("auto",), config_file=None, encoder_from=None):
    """Fine-tunes the parent run in ``parent`` on ``pair`` into the run directory ``workdir``.

    mix_parent_data: mixed fine-tuning: this share of each pass is the parent's own training pairs
    (``mix.*`` of the config, see data/mixing.py); 0 trains on the child's pairs alone; None (the
    default) is CHILD_MIX_PARENT_DATA where the parent's corpus can be read here, else 0.
    config_file: the config file of a child of another type (``make_child_config``).
    encoder_from: a language model run of the child's source language that initialises its encoder
    (``Transfer``'s ``encoder_source``).
    mix_related: languages related to the child's whose pairs of the parent's corpus are mixed in
    with the parent's (``related_mix_pair``); they need mixing, so with them the parent's corpus must
    be readable and the ratio above 0. ("auto",) (the default): ``auto_related``'s choice, dropped
    (and said) where it cannot be mixed; () or ("none",): the parent's pair alone.

    Everything that can fail on the user's input (parent run, flags, child workdir, model structure)
    is checked before anything is written to ``workdir``. Returns the trainer's metrics.
    """
    from xling_zoo import trainer  # Late: the trainer imports the decoder, evaluation, TF datasets.

    parent_dir, workdir = workdir_lib.path_str(parent), workdir_lib.path_str(workdir)
    if vocab not in VOCAB_MODES:
        raise UserError(f"--vocab={vocab!r} is not one of {', '.join(VOCAB_MODES)}")
    try:
        parent_run = workdir_lib.load_run(parent_dir)
    except UserError as error:
        raise UserError(f"--parent={parent_dir}: {error}") from error
    encoder_source = _encoder_source(encoder_from, pair) if encoder_from else None
    if parent_run.model.task_type == "lm":
        # A language model has no translation pairs to mix in, and no translator to keep training.
        if model_name in (None, parent_run.config.model_name):
            raise UserError(f"--parent={parent_dir} is a language model: name the translator that takes its "
                            "decoder (--model=transformer for a transformer lm, --model=lstm_seq2seq for an lstm one)")
        if mix_parent_data or tuple(mix_related or ()) not in (("auto",), ("none",), ()):
            raise UserError(f"--parent={parent_dir} is a language model, which has no translation pairs to mix "
                            "in: leave --mix_parent_data and --mix_related out")
        mix_parent_data, mix_related = 0.0, ("none",)
    mix_related = tuple(dict.fromkeys(language.strip().lower() for language in mix_related or ()))
    for word in ("auto", "none"):
        if word in mix_related and len(mix_related) > 1:
            raise UserError(f"--mix_related={','.join(mix_related)}: {word} stands alone; give {word}, or languages")
    related_auto = mix_related == ("auto",)
    if mix_related in (("none",), ("",)):
        mix_related = ()
    mix_by_default = mix_parent_data is None and (related_auto or not mix_related)
    mix_ratio = CHILD_MIX_PARENT_DATA if mix_parent_data is None else mix_parent_data
    if not 0 <= mix_ratio < 1:
        raise UserError(f"--mix_parent_data={mix_ratio}: mix.ratio={mix_ratio} must be in [0, 1)")
    if mix_related and not related_auto:
        if not mix_ratio:
            raise UserError(f"--mix_related={','.join(mix_related)} mixes the related languages' pairs into the "
                            "child's passes: it needs --mix_parent_data above 0")
        related_mix_pair(parent_run.config.pair, pair, mix_related)  # Named languages: checked up front.
    # The child's own training pairs (max_train_examples applied): --mix_related=auto and
    # --vocab=auto depend on how many there are.
    config = make_child_config(parent_run.config, pair, corpus_spec, data_dir, max_train_examples, overrides,
                               model_name, config_file=config_file)
    config_lib.validate(config)
    # Read once: its pairs are counted, measured against the parent's vocabulary, trained on.
    splits = trainer.read_splits(config, validation=False)  # The trainer reads the validation split.
    train_pairs = len(splits.train)
    related_note = None
    started = (workdir_lib.read_json(workdir_lib.join(workdir, TRANSFER_FILE)) or {}).get("child") \
        if tf.io.gfile.exists(workdir_lib.join(workdir, workdir_lib.CONFIG_FILE)) else None
    if related_auto and started is not None:
        # Resuming: the child keeps the languages it started with (none for one made before auto),
        # whatever the table or the corpus offers now: its tokenizer has their tags only.
        mix_related = tuple(started.get("mix_related") or ())
        related_note = started.get("mix_related_note")
    elif related_auto:
        mix_related, related_note = (
            auto_related(parent_run.config, pair, config.data_dir, train_pairs, config.skip_bad_lines)
            if mix_ratio else ((), "no related language mixed in: --mix_parent_data=0"))
    # The mixes to try, in turn: with the related languages; then, where they were auto's choice or
    # none was asked for, the parent's pair alone. A default that cannot be read falls through to the
    # next (at the end: the child's pairs alone); an asked-for mix's errors are the user's.
    candidates = []
    if mix_ratio and mix_related:
        try:
            candidates.append((mix_related, related_mix_pair(parent_run.config.pair, pair, mix_related)))
        except UserError as error:
            if not related_auto:
                raise
            related_note = f"no related language mixed in: {error}"
            print(f"Not mixing in {', '.join(mix_related)}: {error}.")
    if mix_ratio and (related_auto or not mix_related):
        candidates.append(((), corpus.Pair.parse(str(parent_run.config.pair))))
    parent_mix, mix_related = [], ()
    for index, (related, mix_pair) in enumerate(candidates):
        attempt = [f"mix.pair={mix_pair}", f"mix.corpus={parent_run.config.corpus}", f"mix.ratio={mix_ratio}"]
        if index == len(candidates) - 1 and not mix_by_default:
            parent_mix, mix_related = attempt, related
            break
        config = make_child_config(parent_run.config, pair, corpus_spec, data_dir, max_train_examples,
                                   attempt + list(overrides), model_name, config_file=config_file)
        try:
            config_lib.validate(config)
            mixing.check_mix(config, get_model(config.model_name))
        except UserError as error:
            if related:
                related_note = f"no related language mixed in: {error}"
                print(f"Not mixing in {', '.join(related)}: {error}.")
            else:
                print(f"Not mixing in the parent's training data: {error}. The child trains on its own pairs.")
            continue
        parent_mix, mix_related = attempt, related
        break
    config = make_child_config(parent_run.config, pair, corpus_spec, data_dir, max_train_examples,
                               parent_mix + list(overrides), model_name, config_file=config_file)
    overrides = parent_mix + list(overrides)
    config_lib.validate(config)
    if mix_related and not (config.mix.ratio and config.mix.pair == str(related_mix_pair(
            parent_run.config.pair, pair, mix_related))):
        mix_related, related_note = (), "no related language mixed in: --set=mix.* replaced the mix"
    child_pair = corpus.Pair.parse(config.pair)
    requested, shares = vocab, {}
    if vocab == "auto" and parent_run.model.task_type == "lm":
        vocab = "child"  # A language model's vocabulary covers its one language, not the child's other side.
    if vocab != "child":
        shares = parent_vocabulary_shares(parent_run.tokenizers, child_pair, splits.train)
        vocab = choose_vocab(vocab, shares, train_pairs)
    if vocab == "parent" and config.tokenizer.to_dict() != parent_run.config.tokenizer.to_dict():
        raise UserError(f"--vocab={requested} keeps the parent's tokenizer here: tokenizer.* overrides need "
                        "--vocab=child")
    child = {"pair": config.pair, "corpus": config.corpus, "max_train_examples": config.max_train_examples,
             "mix": config.mix.to_dict(), "mix_related": list(mix_related), "mix_related_note": related_note,
             "vocab_requested": requested, "train_pairs": train_pairs,
             "parent_vocab_byte_piece_share": {side: round(share, 4) for side, (_, share, _) in shares.items()}}
    settings = {"parent": workdir_lib.absolute(parent_dir), "vocab": vocab, "freeze": list(dict.fromkeys(freeze)),
                "transferred_lr_multiplier": float(transferred_lr_multiplier),
                "encoder_lm": workdir_lib.absolute(encoder_from) if encoder_from else None}
    previous = _check_child_workdir(workdir, parent_dir, settings)

    tokenizer_dir = workdir_lib.join(workdir, workdir_lib.TOKENIZER_DIR)
    if previous is not None and tf.io.gfile.exists(tokenizer_dir):
        tokenizers = Tokenizers.load(tokenizer_dir)  # Resuming: the child's vocabulary is fixed.
    else:
        examples = splits.train if vocab in ("child", "extend") else None
        tokenizers = child_tokenizers(parent_run.tokenizers, mixing.languages(config), vocab, config.tokenizer,
                                      examples, seed=config.train.seed)
    steps_per_epoch = trainer.RunInputs(config, tokenizers, splits).steps_per_epoch()
    config = make_child_config(parent_run.config, pair, corpus_spec, data_dir, max_train_examples, overrides,
                               model_name, steps_per_epoch=steps_per_epoch, config_file=config_file)
    child["steps_per_epoch"] = steps_per_epoch
    child["schedule"] = {key: config.train[key] for key in child_schedule(steps_per_epoch)}
    child["schedule_overridden"] = sorted(key for key in _overridden(overrides) if key.startswith("train."))
    hook = Transfer(parent_run, tokenizers, vocab, freeze, transferred_lr_multiplier, child=child,
                    encoder_source=encoder_source)
    # The trainer checks everything else (config values, the child workdir, the model built from the
    # child config, the weight structure in hook.initialize) before it writes the child's tokenizer
    # and config.json.
    return trainer.train_and_evaluate(config, workdir, transfer=hook, splits=trainer.Splits(train=splits.train))


def _encoder_source(encoder_from, pair):
    """The language model run of --encoder_from, checked: an lm of the child's source language."""
    try:
        run = workdir_lib.load_run(workdir_lib.path_str(encoder_from))
    except UserError as error:
        raise UserError(f"--encoder_from={encoder_from}: {error}") from error
    source = corpus.Pair.parse(pair).source_languages
    if run.model.task_type != "lm":
        raise UserError(f"--encoder_from={encoder_from} holds a {run.config.model_name} run; it takes a language model "
                        f"of the child's source language (python -m xling_zoo.train --model=lm --language={source[0]})")
    if run.config.language not in source:
        raise UserError(f"--encoder_from={encoder_from} is a language model of {run.config.language}; the child "
                        f"--pair={pair} reads {', '.join(source)}")
    return run


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    shortcuts = {"steps": "train.steps", "epochs": "train.epochs", "max_minutes": "train.max_minutes",
                 "seed": "train.seed", "deterministic": "train.deterministic", "skip_bad_lines": "skip_bad_lines"}
    overrides = [f"{key}={getattr(FLAGS, name)}" for name, key in shortcuts.items()
                 if getattr(FLAGS, name) is not None]
    transfer(FLAGS.parent, FLAGS.workdir, FLAGS.pair, corpus_spec=FLAGS.corpus, data_dir=FLAGS.data_dir,
             max_train_examples=FLAGS.max_train_examples, vocab=FLAGS.vocab, freeze=FLAGS.freeze,
             transferred_lr_multiplier=FLAGS.transferred_lr_multiplier, overrides=overrides + list(FLAGS.set),
             model_name=FLAGS.model, mix_parent_data=FLAGS.mix_parent_data, mix_related=FLAGS.mix_related,
             config_file=FLAGS.config, encoder_from=FLAGS.encoder_from)
    print(f"Child run directory: {FLAGS.workdir} (see {TRANSFER_FILE})\n"
          f"Next: python -m xling_zoo.evaluate --workdir={FLAGS.workdir}")


if __name__ == "__main__":
    from absl import flags

    from xling_zoo import cli

    flags.DEFINE_string("parent", None, "Parent run directory (trained with python -m xling_zoo.train).",
                        required=True)
    flags.DEFINE_string("workdir", None, "Child run directory (rerun the same command to resume it).", required=True)
    flags.DEFINE_string("pair", None, "Child language pair SRC-TGT, e.g. en-nl.", required=True)
    flags.DEFINE_string("corpus", None, "Child corpus spec (default: the parent's).")
    flags.DEFINE_string("data_dir", None, "Prepared-data directory (default: the parent's).")
    flags.DEFINE_integer("max_train_examples", None, "Train the child on this many pairs only (default: all).")
    flags.DEFINE_string("vocab", "auto", "parent: keep the parent's vocabulary (+ missing language tags); "
                        "extend: the parent's plus pieces for the letters of the child's text it can only spell "
                        "as bytes; child: train a new one on the child's data and remap the embeddings; auto: the "
                        f"child's from {CHILD_VOCAB_MIN_PAIRS} training pairs on or where the parent's spells over half "
                        "of the child's text as UTF-8 byte pieces, else the parent's.")
    flags.DEFINE_list("freeze", [], "Layer groups to keep fixed, e.g. embeddings,encoder.")
    flags.DEFINE_float("transferred_lr_multiplier", 1.0,
                       "Learning-rate factor of the weights copied unchanged from the parent.")
    flags.DEFINE_float("mix_parent_data", None,
                       "Mixed fine-tuning: this share of each pass, in [0, 1), is the parent's own training pairs "
                       f"(with their own language tag); 0 = the child's pairs only. Default: {CHILD_MIX_PARENT_DATA} "
                       "where the parent's corpus can be read, else 0.")
    flags.DEFINE_list("mix_related", ["auto"], "Languages related to the child's (e.g. sk for a Czech child) whose "
                      "pairs in the parent's corpus are mixed in with the parent's: the parent's pair with these "
                      "added on the child's new side (en-de,sk,pl for en-cs; de,sk,pl-en for cs-en). "
                      "Similar-language regularisation, measured in experiments/child_languages. auto: the child "
                      f"language's {RELATED_MAX} closest relatives (xling_zoo/data/related_languages.py) with "
                      f"{RELATED_MIN_PAIRS}+ training pairs in the parent's corpus, for a child of fewer than "
                      f"{RELATED_MAX_CHILD_PAIRS} pairs, where there are any; none: the parent's pair only.")
    flags.DEFINE_string("model", None, "The child's model type (default: the parent's). Another type takes the "
                        "parent's weights by name where it declares how: an adversarial child of a transformer or "
                        "lstm_seq2seq parent, a transformer or lstm_seq2seq child of an adversarial parent, and the "
                        "translator whose decoder an lm parent initialises (transformer / lstm_seq2seq, as its "
                        "model.decoder_type).")
    flags.DEFINE_string("config", None, "With --model of another type than the parent's: the child's config file "
                        "(default configs/<model>.py), e.g. configs/transformer_tiny.py for an lm parent's child.")
    flags.DEFINE_string("encoder_from", None, "A language model run of the child's source language (--model=lm "
                        "--language=en) whose layers initialise the child's encoder instead of the parent's.")
    flags.DEFINE_multi_string("set", [], "Config override key=value, repeatable: --set=train.warmup_steps=100.")
    flags.DEFINE_integer("steps", None, "Total training steps (overrides epochs).")
    flags.DEFINE_integer("epochs", None, "Passes over the child's training data.")
    flags.DEFINE_float("max_minutes", None, "Wall-clock training budget in minutes (0 = none).")
    flags.DEFINE_integer("seed", None, "Random seed.")
    flags.DEFINE_bool("deterministic", None, "Deterministic ops (exact resume after a kill).")
    flags.DEFINE_bool("skip_bad_lines", None, "Skip (and count) malformed lines of the child's tsv:/text: corpus.")
    cli.define_thread_flags()
    cli.run(main)
