"""The contract every registered model fulfils, so that one trainer, one transfer step, one decoder
and one export serve them all.

A ``Task`` is a Keras model plus the few things the rest of xling_zoo asks of it:

* ``from_config(model_config, vocab)``: build from the ``model`` section of a run config.
* ``compute_losses(batch, training)``: a dict of scalar tensors with at least ``"loss"`` (the value
  that is differentiated). Extra entries (``discriminator_accuracy``, ...) are logged as they are.
* ``training_step(batch, optimizer)``: one optimisation step; the default differentiates
  ``compute_losses(...)["loss"]``. Models with several updates per step (the adversarial
  discriminator) override it; the trainer's loop stays the same.
* ``vocab_axes()``: which weights are indexed by which vocabulary, along which axis — the transfer
  step remaps exactly these rows/columns when the child's vocabulary differs.
* ``layer_groups()``: layer-name groups (``embeddings``, ``encoder``, ``decoder``, ``head``...) that
  ``--freeze`` and per-group learning rates address.
* ``owned_optimizers()``: optimizers the model steps itself (checkpointed with the trainer's).
* ``build_inputs(config, tokenizers, examples, training, ...)``: the task's batches (their keys and
  how they are built from a corpus's examples), for training, validation and the training benchmark;
  ``length_report(...)``: what the trainer records about the training examples' lengths.
* ``make_validator(...)``, ``selection_metrics``, ``count_target_tokens(batch)``: what the trainer
  measures at each evaluation, which of those figures may pick the best checkpoint (and which way),
  and the tokens its throughput and validation loss count.
* ``evaluate(run, split, ...)``: what ``python -m xling_zoo.evaluate`` scores and writes.
* ``serving_graph(run, ...)``: what ``python -m xling_zoo.export`` writes: the signature's function,
  its inputs and outputs, the resources it reads, and how to check the written SavedModel.
* ``model_config_from_parent(parent_model_name, parent_model_config, default_model_config)``: the
  child's ``model`` section when a run of another model type is transferred into this one (the
  transfer step then copies the weights whose names both models share), or a UserError.

``Seq2SeqTask`` adds what decoding and export need: ``encode`` and a cached ``decode_step``.
``LanguageModelTask`` (the ``lm``) is a decoder-only model of one language, scored by perplexity; a
later classifier subclasses ``Task`` the same way, with its own ``task_type`` and batch keys.

Batches are dicts produced by ``xling_zoo.data.pipeline``:
  encoder_token_ids  int32 [batch, source_len]  source pieces (+ target-language tag) + eos, 0-padded
  decoder_token_ids  int32 [batch, target_len]  bos + target pieces, 0-padded
  target_token_ids   int32 [batch, target_len]  target pieces + eos, 0-padded (the labels)
  source_language_id int32 [batch]              index into the pair's source languages
"""

import dataclasses

import keras
import tensorflow as tf

from xling_zoo.data import corpus, mixing, pipeline
from xling_zoo.data import tokenizer as tokenizer_lib
from xling_zoo.errors import UserError

PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """What a model needs to know about its tokenizers."""

    source_vocab_size: int
    target_vocab_size: int
    # True when source and target share one SentencePiece model (a prerequisite for tied embeddings).
    joint: bool = True
    # Number of source languages (the adversarial discriminator's classes).
    num_source_languages: int = 1


@dataclasses.dataclass
class Evaluation:
    """What ``Task.evaluate`` returns; ``python -m xling_zoo.evaluate`` writes it into the run."""

    metrics: dict
    # One line per example (translations; later labels, continuations).
    outputs: list
    # The outputs file's name, "{suffix}" standing for the split and ``name`` part, and the key
    # under which the metrics list it ("hypotheses").
    outputs_file: str
    outputs_key: str
    # What tells this evaluation's files apart from the run's own data ("" = the run's own).
    name: str = ""


class Task(keras.Model):
    """Base class of every registered model."""

    # Set by @register_model.
    registered_name = None
    # What the batches look like and what decoding/export offer: "seq2seq" or "lm" ("classifier"
    # is planned next).
    task_type = None
    # Whether the model learns from batch["source_language_id"] (a language discriminator does): then
    # every training example's source language must be one of the run's pair (see data/mixing.py).
    reads_source_language_id = False

    def __init__(self, *args, label_smoothing=0.0, static_shapes=False, **kwargs):
        """label_smoothing: of the training loss (``train.label_smoothing``: a training choice, not
        an architecture one). static_shapes: the model runs under XLA or on a TPU, so every tensor of
        its training step must keep a static shape. Both come from the run config through
        ``workdir.build_model``; nothing sets them after the model is built."""
        super().__init__(*args, **kwargs)
        self.label_smoothing = label_smoothing
        self.static_shapes = static_shapes

    @classmethod
    def from_config(cls, model_config, vocab, **options):
        """Builds the model from the ``model`` section of a run config (a ConfigDict); ``options``
        (label_smoothing, static_shapes) go to ``Task.__init__``."""
        raise NotImplementedError

    @classmethod
    def validate_config(cls, model_config, vocab, pair):
        """Raises UserError for a config that cannot build, or a corpus this model cannot use."""

    @classmethod
    def model_config_from_parent(cls, parent_model_name, parent_model_config, default_model_config):
        """The ``model`` section of a child of this type whose parent is a ``parent_model_name`` run
        of another type (``parent_model_config`` its model section, ``default_model_config`` this
        type's default one). The base class takes no other type."""
        raise UserError(f"a {cls.registered_name} child cannot take a {parent_model_name} parent's weights; "
                        f"transfer it into a {parent_model_name} child (--model={parent_model_name} or no --model)")

    def encoder_key_in_lm(self, key):
        """The key of a language model's weight that initialises this model's weight ``key`` when the
        transfer takes the encoder from a language model (``--encoder_from``), or None (not an encoder
        weight that can). A model whose encoder cannot take one raises a UserError."""
        raise UserError(f"a {self.registered_name} child's encoder cannot take a language model's weights")

    def parent_weight_key(self, key, parent_task_type):
        """The key (``transfer.weight_keys``) of the parent's weight that this model's weight ``key``
        takes when a run of ``parent_task_type`` is transferred into it: the same key by default."""
        return key

    @classmethod
    def build_inputs(cls, config, tokenizers, examples, *, training, input_context=None, static_shapes=False):
        """The batches this task trains (``training``: shuffled, seeded by train.seed) or validates on,
        from ``examples`` (a tf.data.Dataset of the corpus's dicts of text, see ``corpus.load_split``):
        one pass, never repeated. ``input_context``: this input pipeline's shard under tf.distribute;
        ``static_shapes``: every batch of a length bucket has one shape (XLA, TPUs)."""
        raise NotImplementedError(f"{cls.__name__} builds no batches: a Task subclass defines build_inputs "
                                  "(Seq2SeqTask's are a translator's)")

    @classmethod
    def train_tokenizers(cls, config, train_examples):
        """The run's ``Tokenizers``, trained on its training ``examples`` (``corpus.read_split``'s list)."""
        raise NotImplementedError

    @classmethod
    def training_examples(cls, config, train_examples, read_split):
        """The examples the run trains on, from its train split as read (``read_split(name)``: another
        split of the run's corpus, read once). All of them, unless a task holds some out."""
        return train_examples

    @classmethod
    def length_report(cls, config, tokenizers, examples):
        """What the trainer records about the training ``examples``' lengths: at least {"examples": n}."""
        return {"examples": int(examples.reduce(0, lambda count, _: count + 1))}

    # {name: "max" | "min"}: the figures the validator reports (as ``validation_<name>``) that
    # train.selection_metric may name to pick the best checkpoint and stop early, and which way is better.
    selection_metrics = {}

    def make_validator(self, strategy, dataset_fn, config, tokenizers, validation_examples, pair):
        """A callable (should_stop=None) -> {"validation_<name>": float} that the trainer runs at every
        evaluation (``dataset_fn(input_context)``: the validation batches; ``validation_examples``: the
        split as dicts of text). It reports at least every name of ``selection_metrics``, or returns
        None as soon as ``should_stop()`` (asked between batches) is True: a signal arrived. It may have
        ``floor`` ({"validation_<name>": float}: what a trivial system scores on the same examples,
        e.g. copying the source) and ``floor_description``; the trainer records them and warns when
        the best checkpoint does not beat them."""
        raise NotImplementedError

    def evaluate(self, run, split, max_examples=0, **options):
        """``python -m xling_zoo.evaluate`` for a run of this task: scores ``run`` (a workdir.Run
        holding this model) on ``split`` (``options``: the task's own, e.g. a translator's beam size).
        Returns an ``Evaluation``."""
        raise NotImplementedError

    def serving_graph(self, run, *, max_input_bytes=4096, **options):
        """``python -m xling_zoo.export`` for a run of this task: an object with ``serve`` (the
        signature's function), ``input_signature``, ``trackables()`` (the resources ``serve`` reads
        besides the weights, e.g. tokenizers), ``check(saved_model_dir, run, count)`` (runs the
        written SavedModel in TF Serving's loader on up to ``count`` validation inputs against the
        in-process model, raising RuntimeError on any difference; returns the inputs checked) and
        ``metadata()`` (a JSON-able dict: the signature's inputs and outputs, its settings).
        ``options``: the task's own (a translator's beam size, target language...)."""
        raise UserError(f"{self.registered_name} runs have no export yet")

    def count_target_tokens(self, batch):
        """float32 scalar: the tokens of ``batch`` that the loss is over (for tokens/s and for
        weighting validation losses): its non-padding ``target_token_ids``."""
        return tf.reduce_sum(tf.cast(tf.not_equal(batch["target_token_ids"], PAD_ID), tf.float32))

    @property
    def loss_on_real_positions(self):
        """Apply the output layer at the non-padding target positions only ([tokens, vocab] logits
        instead of [batch, length, vocab]): 1.11-1.12x training tokens/s for the default lstm_seq2seq
        on a CPU, whose bucketed batches are 25 % padding (benchmarks/). The gather has a
        data-dependent shape, so not with ``static_shapes`` (XLA, TPUs)."""
        return not self.static_shapes

    def output_logits(self, features, training=False):
        """The output layer: features [..., width] -> float32 logits [..., target vocab]."""
        raise NotImplementedError

    def sequence_loss(self, labels, features, training=False):
        """Mean label-smoothed cross-entropy of the output layer on ``features`` [batch, length,
        width] over the non-padding ``labels`` [batch, length]."""
        if not self.loss_on_real_positions:
            return sequence_cross_entropy(labels, self.output_logits(features, training), self.label_smoothing)
        real = tf.where(tf.not_equal(labels, PAD_ID))
        logits = self.output_logits(tf.gather_nd(features, real), training)
        return token_cross_entropy(tf.gather_nd(labels, real), logits, self.label_smoothing)

    def compute_losses(self, batch, training=False):
        raise NotImplementedError

    def training_step(self, batch, optimizer, loss_scale=1.0):
        """One gradient step. ``loss_scale`` divides the loss (1 / replicas under tf.distribute)."""
        with tf.GradientTape() as tape:
            losses = self.compute_losses(batch, training=True)
            scaled = tf.cast(losses["loss"], tf.float32) * loss_scale
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = optimizer.scale_loss(scaled)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return losses

    def vocab_axes(self):
        """{variable.path: (vocab side "source"|"target", axis)} for weights indexed by a vocabulary."""
        return {}

    def layer_groups(self):
        """{group name: [layer names]} for freezing and per-group learning rates."""
        return {}

    def dummy_inputs(self):
        """A tiny batch that builds every weight (used before restoring checkpoints)."""
        raise NotImplementedError

    # Decoding (decode.py's searches), for the tasks that decode: a translator, a language model.

    def decoding_state_shapes(self, state):
        """The static shape each entry of ``state`` keeps at every decoding step (tf.while_loop's
        shape invariants): its own with the batch left open. Models whose caches grow open that axis."""
        return tf.nest.map_structure(lambda t: tf.TensorShape([None]).concatenate(t.shape[1:]), state)

    def decoding_weights(self):
        """Weights rearranged for ``decode_step`` (a transposed output matrix, ...), or None.
        decode.py computes them once per decoding call, outside its step loop, and passes them to
        every step as ``weights``: rearranging them inside the step would repeat it per token."""
        return None  # noqa: RET501  (AutoGraph cannot convert a function whose body is a docstring)

    def owned_optimizers(self):
        """{name: optimizer} for optimizers the model updates itself in ``training_step`` (beside
        the trainer's): checkpoints save and restore their state with the trainer's."""
        return {}


class Seq2SeqTask(Task):
    """An encoder-decoder translator. ``call`` is teacher-forced; ``encode``/``decode_step`` decode.

    A model supplies ``decoder_features`` (teacher-forced, everything before the output layer) and
    ``output_logits`` (the output layer); ``call`` chains them. The training loss applies the output
    layer only at the non-padding target positions (see ``translation_loss``).
    """

    task_type = "seq2seq"
    # The name of this translator's section in the config of a model that wraps it
    # (adversarial's ``model.<encoder_type>``): a run of such a model transfers into this one.
    translator_section = None

    # A language model parent (``lm``) whose network is this ``decoder_type`` gives its decoder:
    # {this translator's model key: the lm section's key} sizes the child's decoder as the lm.
    lm_decoder_type = None
    lm_decoder_keys = {}

    @classmethod
    def model_config_from_parent(cls, parent_model_name, parent_model_config, default_model_config):
        """A parent that wraps this translator (an adversarial run with ``encoder_type`` this
        translator's section) gives its translator's section; the weights outside it stay behind. A
        language model gives its decoder (``lm_decoder_keys``): the child is this type's default
        config with the decoder sized as the language model."""
        from xling_zoo.registry import get_model

        if get_model(parent_model_name).task_type == "lm":
            return cls._model_config_from_language_model(parent_model_config, default_model_config)
        wrapped = parent_model_config.get("encoder_type")
        if cls.translator_section is not None and wrapped == cls.translator_section:
            return parent_model_config[wrapped]
        if wrapped is not None:
            raise UserError(f"the {parent_model_name} parent's translator is a {wrapped} "
                            f"(model.encoder_type={wrapped}), which a {cls.registered_name} child cannot take")
        return super().model_config_from_parent(parent_model_name, parent_model_config, default_model_config)

    @classmethod
    def _model_config_from_language_model(cls, lm_config, default_model_config):
        network = lm_config.get("decoder_type")
        if cls.lm_decoder_type is None:
            raise UserError(f"a {cls.registered_name} child has no decoder that takes a language model's weights")
        if network != cls.lm_decoder_type:
            takers = sorted(t.registered_name for t in _registered_translators() if t.lm_decoder_type == network)
            raise UserError(f"the lm parent is a {network} (model.decoder_type={network}), and a "
                            f"{cls.registered_name} child's decoder is a {cls.lm_decoder_type}: transfer it into "
                            + (" or ".join(f"--model={name}" for name in takers) or "another model") +
                            f", or train the lm with --set=model.decoder_type={cls.lm_decoder_type}")
        config = default_model_config.copy_and_resolve_references()
        for key, lm_key in cls.lm_decoder_keys.items():
            config[key] = lm_config[network][lm_key]
        return config

    selection_metrics = {"bleu": "max", "chrf": "max", "loss": "min"}

    @classmethod
    def build_inputs(cls, config, tokenizers, examples, *, training, input_context=None, static_shapes=False):
        """Length-bucketed batches of ``encoder_token_ids`` (target-language tag, source pieces, eos),
        ``decoder_token_ids``, ``target_token_ids`` and ``source_language_id`` (pipeline.make_dataset);
        every language of the run's training examples, the mixed-in pair's included, gets its tag."""
        pair, languages = corpus.Pair.parse(config.pair), mixing.languages(config)
        return pipeline.make_dataset(examples, tokenizers, config.data, target_language=pair.target_languages[0],
                                     source_languages=languages.source, target_languages=languages.target,
                                     training=training, input_context=input_context, seed=config.train.seed,
                                     static_shapes=static_shapes)

    @classmethod
    def train_tokenizers(cls, config, train_examples):
        """SentencePiece on both sides (joint, or one per side), with a tag for every language of the
        training examples, the mixed-in pair's included."""
        run_languages = mixing.languages(config)
        languages = sorted(set(run_languages.source) | set(run_languages.target))
        return tokenizer_lib.train_tokenizers(train_examples, config.tokenizer, languages, seed=config.train.seed)

    @classmethod
    def length_report(cls, config, tokenizers, examples):
        """How many pairs exceed data.max_length, and whether they are dropped or truncated."""
        return pipeline.length_report(examples, tokenizers, config.data,
                                      target_language=corpus.Pair.parse(config.pair).target_languages[0])

    def make_validator(self, strategy, dataset_fn, config, tokenizers, validation_examples, pair):
        from xling_zoo.validation import TranslationValidator  # Late: it imports the decoder.

        return TranslationValidator(strategy, self, dataset_fn, config, tokenizers, validation_examples, pair)

    def evaluate(self, run, split, max_examples=0, **options):
        from xling_zoo.evaluate import evaluate_translations  # Late: it imports the decoder.

        return evaluate_translations(run, split, max_examples=max_examples, **options)

    def serving_graph(self, run, *, max_input_bytes=4096, beam_size=None, target_language=None,
                      split_long_sentences=False):
        from xling_zoo.decode import Translator, target_language_of  # Late: the decoder imports models.
        from xling_zoo.serving import ServingGraph

        translator = Translator(self, run.tokenizers, run.config, beam_size=beam_size,
                                target_language=target_language_of(run.pair, target_language))
        return ServingGraph(translator, max_input_bytes, split_long_sentences)

    def decoder_features(self, inputs, training=False):
        """Teacher-forced decoder output before the output layer: [batch, target_len, width]."""
        raise NotImplementedError

    def call(self, inputs, training=False):
        return self.output_logits(self.decoder_features(inputs, training), training)

    def translation_loss(self, labels, features, training=False):
        """The translation's ``sequence_loss`` (the adversarial model adds its own terms to it)."""
        return self.sequence_loss(labels, features, training)

    def encode(self, encoder_token_ids, max_decode_length, static_shapes=True):
        """Runs the encoder once. Returns the decoder's initial state: a nest of tensors whose
        first dimension is the batch (decode.py tiles and gathers it along that axis for beam
        search). With ``static_shapes`` caches are pre-allocated for ``max_decode_length`` steps
        (what XLA needs); without, they may start empty and grow by one position per step, which
        copies less per step (see ``decoding_state_shapes``)."""
        raise NotImplementedError

    def decode_step(self, token_ids, state, index, weights=None):
        """One decoder step. token_ids: int32 [batch], the previous output token; index: scalar
        int32 position; weights: what ``decoding_weights()`` returned (None works too, slower).
        Returns (logits float32 [batch, vocab], new state of the same structure)."""
        raise NotImplementedError

    def compute_losses(self, batch, training=False):
        features = self.decoder_features(batch, training)
        return {"loss": self.translation_loss(batch["target_token_ids"], features, training)}

    def dummy_inputs(self):
        ids = tf.constant([[5, 6, 3]], tf.int32)
        return {"encoder_token_ids": ids, "decoder_token_ids": ids}


def _token_losses(labels, logits, label_smoothing):
    """Label-smoothed cross-entropy per token, float32; labels [...], logits [..., vocab].

    Smoothing toward the uniform distribution is computed in closed form,
    (1 - e) * nll + e * (logsumexp - mean logit), rather than against a one-hot target: same
    value, without materialising (and reading back) a vocabulary-sized tensor.
    """
    logits = tf.cast(logits, tf.float32)
    log_normalizer = tf.reduce_logsumexp(logits, axis=-1)
    nll = log_normalizer - tf.gather(logits, labels, axis=-1, batch_dims=logits.shape.rank - 1)
    if not label_smoothing:
        return nll
    uniform = log_normalizer - tf.reduce_mean(logits, axis=-1)
    return (1.0 - label_smoothing) * nll + label_smoothing * uniform


def token_cross_entropy(labels, logits, label_smoothing=0.0):
    """Mean cross-entropy of real tokens: labels int [tokens], logits [tokens, vocab] (0 if none)."""
    token_loss = _token_losses(labels, logits, label_smoothing)
    count = tf.cast(tf.shape(labels)[0], tf.float32)
    return tf.reduce_sum(token_loss) / tf.maximum(count, 1.0)


def sequence_cross_entropy(labels, logits, label_smoothing=0.0):
    """Mean cross-entropy over non-padding target tokens: labels [batch, length], logits [batch,
    length, vocab], with label smoothing, in float32."""
    token_loss = _token_losses(labels, logits, label_smoothing)
    mask = tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)
    return tf.reduce_sum(token_loss * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _registered_translators():
    from xling_zoo.registry import get_model, list_models

    return [get_model(name) for name in list_models() if get_model(name).task_type == "seq2seq"]


def text_side(config):
    """"source" or "target": the side of ``config.pair``'s corpus that holds ``config.language`` (the
    text a language model reads)."""
    return "source" if config.language in corpus.Pair.parse(config.pair).source_languages else "target"


class LanguageModelTask(Task):
    """A decoder-only language model of one language (``config.language``): next-token loss on the
    sentences of that side of ``config.pair``'s corpus, each read as [bos] + pieces -> pieces + [eos].

    Its batches hold ``decoder_token_ids`` and ``target_token_ids`` only (the keys a translator's
    decoder reads and is scored on, so an LM's decoder transfers into a translator's by name). A model
    supplies ``decoder_features`` and ``output_logits``. Validation and ``evaluate`` report perplexity,
    exp(mean negative log-likelihood per target token, eos included, without label smoothing).
    """

    task_type = "lm"
    selection_metrics = {"perplexity": "min", "loss": "min"}

    @classmethod
    def texts(cls, config, examples):
        """The model's sentences (tf.string scalars) from a split's examples (dicts of a pair's text)."""
        side = text_side(config)
        return examples.map(lambda example: example[side])

    @classmethod
    def training_examples(cls, config, train_examples, read_split):
        """Without the sentences that are also validation or test sentences of the pair, on either side:
        the built-in corpus translates different English strings into one sentence (29 of en-nl's 558
        Dutch test references are Dutch training sentences too; an English test source, "Log in", is a
        Dutch one), and a language model pretrained for a child must never have read what the child
        is scored on."""
        side = text_side(config)
        held_out = {example[key] for split in ("validation", "test") for example in read_split(split)
                    for key in ("source", "target")}
        kept = [example for example in train_examples if example[side] not in held_out]
        if len(kept) < len(train_examples):
            print(f"Left out {len(train_examples) - len(kept)} training sentences that are also {config.language} "
                  f"validation or test sentences of {config.corpus} {config.pair}")
        return kept

    @classmethod
    def train_tokenizers(cls, config, train_examples):
        """One SentencePiece model on the language's sentences only."""
        return tokenizer_lib.train_tokenizers(train_examples, config.tokenizer, [config.language],
                                              seed=config.train.seed, side=text_side(config))

    @classmethod
    def build_inputs(cls, config, tokenizers, examples, *, training, input_context=None, static_shapes=False):
        return pipeline.make_lm_dataset(cls.texts(config, examples), tokenizers.target, config.data,
                                        training=training, input_context=input_context, seed=config.train.seed,
                                        static_shapes=static_shapes)

    @classmethod
    def length_report(cls, config, tokenizers, examples):
        return pipeline.lm_length_report(cls.texts(config, examples), tokenizers.target, config.data)

    def make_validator(self, strategy, dataset_fn, config, tokenizers, validation_examples, pair):
        from xling_zoo.validation import PerplexityValidator

        return PerplexityValidator(strategy, self, dataset_fn)

    def evaluate(self, run, split, max_examples=0, beam_size=None, pair=None, jit_compile=False):
        from xling_zoo.evaluate import evaluate_language_model

        if beam_size is not None or pair:
            raise UserError(f"--{'beam_size' if beam_size is not None else 'pair'} is a translator's option; "
                            f"{run.workdir} holds a language model, which evaluate scores by perplexity")
        return evaluate_language_model(run, split, max_examples=max_examples)

    def serving_graph(self, run, *, max_input_bytes=4096, beam_size=None, target_language=None,
                      split_long_sentences=False):
        """Prompts in, each followed by its greedy (or beam) continuation out (``serving.ContinuationServingGraph``)."""
        from xling_zoo.decode import Continuer  # Late: the decoder imports models.
        from xling_zoo.serving import ContinuationServingGraph

        if target_language or split_long_sentences:
            raise UserError(f"--{'target_language' if target_language else 'split_long_sentences'} is a translator's "
                            f"option; {run.workdir} holds a language model, whose export continues text")
        continuer = Continuer(self, run.tokenizers, run.config, beam_size=beam_size or 1)
        return ContinuationServingGraph(continuer, run.tokenizers, max_input_bytes)

    def decoder_features(self, inputs, training=False):
        """[batch, length, width]: what the output layer reads at every position of
        ``inputs["decoder_token_ids"]``, each seeing itself and the positions before it."""
        raise NotImplementedError

    def call(self, inputs, training=False):
        return self.output_logits(self.decoder_features(inputs, training), training)

    def compute_losses(self, batch, training=False):
        features = self.decoder_features(batch, training)
        return {"loss": self.sequence_loss(batch["target_token_ids"], features, training)}

    def token_losses(self, batch):
        """float32 [batch, length]: each target token's negative log-likelihood, without label
        smoothing (what perplexity is of); 0 at padding."""
        labels = batch["target_token_ids"]
        losses = _token_losses(labels, self(batch, training=False), 0.0)
        return losses * tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)

    def dummy_inputs(self):
        return {"decoder_token_ids": tf.constant([[5, 6, 3]], tf.int32)}

    # --- Continuing a prompt: decode.py's searches, run as over a translator's decoder ---------

    def encode(self, prompt_ids, max_decode_length, static_shapes=True):
        """The decoding state that continues ``prompt_ids`` (int32 [batch, length], each prompt's
        pieces, 0-padded): the network's empty state (``initial_decoding_state``) and the prompt,
        which ``decode_step`` forces as the first outputs. decode.py's greedy and beam searches then
        continue a prompt as they decode a translation, every step cached."""
        if not all(layer.built for layer in self.decoder_layers):
            self(self.dummy_inputs())  # keras-hub creates a layer's sublayers on its first call.
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(prompt_ids, PAD_ID), tf.int32), axis=1)
        state = self.initial_decoding_state(tf.shape(prompt_ids)[0], max_decode_length, static_shapes)
        # One padding column more: an empty prompt still has a column to read (never forced).
        state.update(prompt=tf.pad(tf.cast(prompt_ids, tf.int32), [[0, 0], [0, 1]]), prompt_length=lengths)
        return state

    def decode_step(self, token_ids, state, index, weights=None):
        """One step; the logits of a position still inside a prompt leave only its next piece."""
        logits, new_state = self.next_token_logits(token_ids, state, index, weights)
        prompt = state["prompt"]
        forced = tf.gather(prompt, tf.minimum(index, tf.shape(prompt)[1] - 1), axis=1)
        forced = tf.one_hot(forced, tf.shape(logits)[-1], on_value=0.0, off_value=-1e9, dtype=logits.dtype)
        return tf.where((index < state["prompt_length"])[:, None], forced, logits), new_state

    def initial_decoding_state(self, batch_size, max_decode_length, static_shapes):
        """The network's state before its first token (caches, LSTM states): a dict of batch-first tensors."""
        raise NotImplementedError

    def next_token_logits(self, token_ids, state, index, weights=None):
        """``decode_step`` of the network: (float32 logits [batch, vocab] after ``token_ids`` at position
        ``index``, the new state)."""
        raise NotImplementedError
