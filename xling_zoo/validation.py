"""Validation during training, per task: what ``Task.make_validator`` returns.

The trainer calls the validator at every evaluation and ranks its figures by the task's
``selection_metrics``; what is measured, and how, is the task's.
"""

import tensorflow as tf

from xling_zoo.decode import Translator
from xling_zoo.errors import UserError
from xling_zoo.evaluate import perplexity, score


def never_empty(batch):
    """Multi-worker evaluation hands a worker without data left an empty [0, 0] batch (every worker
    must join each step). Layers cannot run on zero rows or steps, so add one all-padding row and
    position: padding carries no loss and no tokens."""

    def pad(v):
        shape = tf.shape(v)
        rows = tf.maximum(0, 1 - shape[0])
        if v.shape.rank == 2:
            return tf.pad(v, [[0, rows], [0, tf.maximum(0, 1 - shape[1])]])
        return tf.pad(v, [[0, rows]])

    return {k: pad(v) for k, v in batch.items()}


class LossSums:
    """Sums (weighted loss, tokens) of ``weighted_loss(batch)`` over a distributed validation dataset.

    Its step is traced once for all batch shapes (the signature leaves them open): validation
    batches come in one shape per length bucket, and each new shape traced the loss graph again.
    Called with ``should_stop`` (asked between batches), it returns None once that is True.
    """

    def __init__(self, strategy, dataset, weighted_loss):
        self.dataset = dataset

        @tf.function(input_signature=[dataset.element_spec])
        def step(batch):
            weighted, tokens = strategy.run(lambda b: weighted_loss(never_empty(b)), args=(batch,))
            sum_ = tf.distribute.ReduceOp.SUM
            return strategy.reduce(sum_, weighted, axis=None), strategy.reduce(sum_, tokens, axis=None)

        self.step = step

    def __call__(self, should_stop=None):
        total, tokens = 0.0, 0.0
        for batch in self.dataset:
            if should_stop is not None and should_stop():
                return None
            weighted, count = self.step(batch)
            total += float(weighted)
            tokens += float(count)
        return total, tokens


class PerplexityValidator:
    """A language model's validation (``LanguageModelTask.make_validator``): the mean negative
    log-likelihood per token of the whole validation split (distributed) and its perplexity."""

    def __init__(self, strategy, model, dataset_fn):
        def nll_sums(batch):
            return tf.reduce_sum(model.token_losses(batch)), model.count_target_tokens(batch)

        self.loss_sums = LossSums(strategy, strategy.distribute_datasets_from_function(dataset_fn), nll_sums)

    def __call__(self, should_stop=None):
        sums = self.loss_sums(should_stop)
        if sums is None:
            return None
        if not sums[1]:
            raise UserError("the validation split has no sentence within data.max_length: there is nothing to "
                            "measure perplexity on (raise data.max_length, or set data.overlength=truncate)")
        mean = sums[0] / sums[1]
        return {"validation_loss": mean, "validation_perplexity": perplexity(mean)}


class TranslationValidator:
    """A translation run's validation (``Seq2SeqTask.make_validator``): the loss over the whole
    validation split (distributed), and BLEU/chrF of a subset decoded greedily with the Translator.

    A multi-target run's subset holds every target (its validation splits interleave): each is
    translated with its own tag, and BLEU/chrF are scored over all of them together.
    """

    def __init__(self, strategy, model, dataset_fn, config, tokenizers, validation_examples, pair):
        self.strategy = strategy
        self.model = model
        self.dataset = strategy.distribute_datasets_from_function(dataset_fn)
        self.translators = {target: Translator(model, tokenizers, config, beam_size=1, target_language=target)
                            for target in pair.target_languages}
        limit = config.eval.validation_bleu_examples or len(validation_examples)
        self.examples = validation_examples[:limit]
        self.references = [e["target"] for e in self.examples]
        self.target_language = pair.target_languages[0]  # Picks sacreBLEU's tokenizer (zh, ja, ko).
        self.batch_size = config.eval.batch_size
        # What copying the source scores on the same sentences: UI strings share placeholders, names
        # and numbers with their translations, so a useless model can look like a translator.
        copy = score([e["source"] for e in self.examples], self.references, self.target_language)
        self.floor = {"validation_bleu": copy["bleu"], "validation_chrf": copy["chrf"]}
        self.floor_description = "copying the source"

        def weighted_loss(batch):
            tokens = self.model.count_target_tokens(batch)
            losses = self.model.compute_losses(batch, training=False)
            # Translation loss alone where a model adds other terms (the adversarial discriminator),
            # so validation losses compare across models.
            return tf.cast(losses.get("translation_loss", losses["loss"]), tf.float32) * tokens, tokens

        self.loss_sums = LossSums(strategy, self.dataset, weighted_loss)

    def __call__(self, should_stop=None):
        sums = self.loss_sums(should_stop)
        if sums is None:
            return None
        total, tokens = sums
        hypotheses = [None] * len(self.examples)
        for target, translator in self.translators.items():
            index = [i for i, e in enumerate(self.examples) if e.get("target_language", target) == target]
            translations = translator.translate_all([self.examples[i]["source"] for i in index], self.batch_size,
                                                    should_stop)
            if translations is None:
                return None
            for i, hypothesis in zip(index, translations):
                hypotheses[i] = hypothesis
        bleu = score(hypotheses, self.references, self.target_language)
        return {"validation_loss": total / max(tokens, 1.0), "validation_bleu": bleu["bleu"],
                "validation_chrf": bleu["chrf"]}
