"""Mixed fine-tuning (Chu et al. 2017): a run's training passes hold examples of a second pair.

With ``mix.pair`` set and ``mix.ratio`` = r, one pass over the training data is the run's own
examples (all of them, once) plus round(n * r / (1 - r)) examples of ``mix.pair``, drawn afresh each
pass from its shuffled training split and interleaved at random, so r of each pass is the mixed-in
pair. At r = 0.5 a child of 1,000 pairs sees 1,000 parent pairs per pass: the child is oversampled
against the parent's full corpus, and the parent's data keeps it from overfitting 1,000 pairs and
from forgetting what the parent knew. Every example carries its target language, so each gets its
own target-language tag (``<2de>`` on the parent's, ``<2sv>`` on the child's).

Validation, test and early stopping use the run's own pair only.
"""

import dataclasses

import tensorflow as tf

from xling_zoo.data import corpus
from xling_zoo.errors import UserError

# Shuffle buffer of the mixed-in pair's examples (they are drawn from anywhere in its split).
_MIX_SHUFFLE_BUFFER = 20000


@dataclasses.dataclass(frozen=True)
class Languages:
    """Every source and target language of a run's training examples, the run's own pair first."""

    source: tuple
    target: tuple


def mix_pair(config):
    """The mixed-in ``corpus.Pair``, or None when the config mixes nothing."""
    mix = config.get("mix")
    if not mix or not mix.pair or not mix.ratio:
        return None
    return corpus.Pair.parse(mix.pair)


def languages(config):
    """The ``Languages`` of ``config``'s training examples (its pair, then the mixed-in pair's)."""
    own = corpus.Pair.parse(config.pair)
    source, target = list(own.source_languages), list(own.target_languages)
    other = mix_pair(config)
    if other is not None:
        source += [lang for lang in other.source_languages if lang not in source]
        target += [lang for lang in other.target_languages if lang not in target]
    return Languages(tuple(source), tuple(target))


def mixed_count(own_count, ratio):
    """Examples of the mixed-in pair in a pass holding ``own_count`` examples of the run's own pair."""
    return int(round(own_count * ratio / (1.0 - ratio)))


def _with_target(examples, pair):
    """The examples, each with its target language (a multi-target pair's carry theirs already)."""
    if pair.is_multi_target:
        return examples
    return examples.map(lambda example: {**example, "target_language": tf.constant(pair.target_language)})


def _load_train(config, pair, corpus_spec, own):
    # A pass reads the shuffle buffer's worth of the mixed-in split: all of one pair of the built-in
    # corpus (at most 18k pairs), but only part of several pairs' (en-de,sk,pl: 45k), whose in-memory
    # cache TFDS would fill and drop, with a warning, at every pass.
    parsed = corpus.Pair.parse(str(pair))
    several = not own and (parsed.is_multi_source or parsed.is_multi_target)
    try:
        return corpus.load_split(corpus_spec, pair, "train", data_dir=config.data_dir or None,
                                 max_train_examples=config.max_train_examples if own else 0,
                                 skip_bad_lines=config.skip_bad_lines, read_whole=not several)
    except UserError as error:
        if own:
            raise
        raise UserError(f"mix.pair={pair} (corpus {corpus_spec}): {error}") from None


def training_examples(config, own_count, seed, own=None):
    """One pass of ``config``'s training examples: the run's own, plus the mixed-in pair's.

    own_count: how many examples the run's own train split holds (max_train_examples applied).
    own: that split as a dataset (the trainer's, read once into memory); None reads it from the
    corpus. Without mixing the pass is that split unchanged.
    """
    if own is None:
        own = _load_train(config, config.pair, config.corpus, own=True)
    other_pair = mix_pair(config)
    if other_pair is None:
        return own
    own_pair = corpus.Pair.parse(config.pair)
    count = mixed_count(own_count, config.mix.ratio)
    other = _load_train(config, str(other_pair), config.mix.corpus or config.corpus, own=False)
    # A pass draws `count` examples from anywhere in the other split, a different sample each pass.
    other = other.shuffle(_MIX_SHUFFLE_BUFFER, seed=seed + 1, reshuffle_each_iteration=True).repeat().take(count)
    own = _with_target(own, own_pair)
    other = _with_target(other, other_pair)
    weights = [1.0 - config.mix.ratio, config.mix.ratio]
    return tf.data.Dataset.sample_from_datasets([own, other], weights=weights, seed=seed,
                                                stop_on_empty_dataset=False)


def check_mix(config, model_class):
    """Refuses, before anything is written, a mix the model cannot train on or whose pair has no
    training data."""
    other_pair = mix_pair(config)
    if other_pair is None:
        return
    own = corpus.Pair.parse(config.pair)
    new_sources = [lang for lang in other_pair.source_languages if lang not in own.source_languages]
    if new_sources and getattr(model_class, "reads_source_language_id", False):
        raise UserError(f"mix.pair={other_pair} brings source language(s) {', '.join(new_sources)} that "
                        f"{config.model_name} cannot classify (its source languages are those of --pair={own}); "
                        "mix a pair with the same source languages")
    other = _load_train(config, str(other_pair), config.mix.corpus or config.corpus, own=False)
    if int(other.take(1).reduce(0, lambda count, _: count + 1)) == 0:
        raise UserError(f"mix.pair={other_pair}: the train split of {config.mix.corpus or config.corpus} is empty")
