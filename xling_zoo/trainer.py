"""The one training loop, for every model and every tf.distribute strategy.

``train_and_evaluate(config, workdir)`` owns the strategy scope and the ``InputContext``: the input
pipeline is built per worker by ``strategy.distribute_datasets_from_function``, each step runs the
model's own ``training_step`` under ``strategy.run``, and checkpoints go through
``tf.train.CheckpointManager`` (step-exact resume). A custom loop rather than ``model.fit``: Keras
3.15's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585) and BackupAndRestore
replays the interrupted epoch.
"""

import dataclasses
import math
import shutil
import signal
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from xling_zoo import checkpoints
from xling_zoo import config as config_lib
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus, mixing, pipeline
from xling_zoo.data.tokenizer import SubwordTokenizer, Tokenizers, small_corpus_vocab_size
from xling_zoo.errors import Interrupted, UserError
from xling_zoo.registry import get_model
from xling_zoo.strategy import STRATEGIES, is_chief, make_strategy  # noqa: F401  (STRATEGIES: re-exported)

@keras.saving.register_keras_serializable("xling_zoo")
class WarmupInverseSqrt(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then decay with 1/sqrt(step) (Vaswani et al. 2017)."""

    def __init__(self, peak, warmup_steps):
        self.peak = peak
        self.warmup_steps = max(1, warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warmup = tf.cast(self.warmup_steps, tf.float32)
        return self.peak * tf.minimum(step / warmup, tf.sqrt(warmup / step))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


def make_optimizer(train_config):
    """Adam with warm-up and inverse-sqrt decay, global-norm clipping, loss scaling for float16."""
    optimizer = keras.optimizers.Adam(
        learning_rate=WarmupInverseSqrt(train_config.learning_rate, train_config.warmup_steps),
        beta_2=0.98, epsilon=1e-9, global_clipnorm=train_config.clipnorm or None)
    if train_config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class GroupedOptimizer(tf.Module):
    """Several optimizers, each for its own variables: how transferred weights get a lower learning
    rate than new ones (Adam is scale-invariant, so scaling gradients would not do it)."""

    def __init__(self, optimizers, group_of_variable):
        super().__init__(name="grouped_optimizer")
        self.optimizers = list(optimizers)
        self._group_of_variable = dict(group_of_variable)

    @property
    def iterations(self):
        return self.optimizers[0].iterations

    def _split(self, items, key):
        groups = [[] for _ in self.optimizers]
        for item in items:
            groups[self._group_of_variable.get(key(item).path, 0)].append(item)
        return groups

    def build(self, variables):
        for optimizer, group in zip(self.optimizers, self._split(variables, lambda v: v)):
            optimizer.build(group)

    def apply_gradients(self, grads_and_vars):
        for optimizer, group in zip(self.optimizers, self._split(list(grads_and_vars), lambda gv: gv[1])):
            if group:
                optimizer.apply_gradients(group)


def make_grouped_optimizer(train_config, model, lr_multipliers):
    """One optimizer per distinct learning-rate multiplier ({variable path: multiplier}, default 1)."""
    multipliers = sorted({1.0, *lr_multipliers.values()}, reverse=True)
    optimizers = []
    for multiplier in multipliers:
        scaled = train_config.copy_and_resolve_references()
        scaled.learning_rate = train_config.learning_rate * multiplier
        optimizers.append(make_optimizer(scaled))
    index = {m: i for i, m in enumerate(multipliers)}
    return GroupedOptimizer(optimizers, {v.path: index[lr_multipliers.get(v.path, 1.0)]
                                         for v in model.trainable_variables})


def set_precision(train_config):
    policies = ("", "float32", "mixed_bfloat16", "mixed_float16")
    if train_config.mixed_precision not in policies:
        raise UserError(f"train.mixed_precision={train_config.mixed_precision!r} is not one of "
                        f"{', '.join(repr(p) for p in policies)}")
    keras.mixed_precision.set_dtype_policy(train_config.mixed_precision or "float32")


def _read_step(optimizer):
    # convert_to_numpy also reads a MirroredVariable, on which int() fails.
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _count_batches(dataset):
    return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


def make_train_step(strategy, model, optimizer, jit_compile=False):
    """A tf.function taking a distributed iterator: one ``model.training_step`` per replica, then
    losses averaged and real (non-padding) target tokens summed over replicas.

    ``train_step(iterator, requests)`` also takes this worker's float32 0/1 flags (see
    ``_REQUESTS``) and returns them as ``"requests"``, summed over every replica: a time budget, a
    signal or a checkpoint clock seen by one worker of a multi-worker run is acted on by all of
    them at the same step (saving is a collective operation, stopping must be too).
    """
    loss_scale = 1.0 / strategy.num_replicas_in_sync
    if (jit_compile or isinstance(strategy, tf.distribute.TPUStrategy)) and not model.static_shapes:
        raise ValueError("XLA and TPUs need a model built with static_shapes=True (workdir.build_model)")

    def step_fn(batch):
        losses = model.training_step(batch, optimizer, loss_scale=loss_scale)
        losses = {k: tf.cast(v, tf.float32) for k, v in losses.items()}
        losses["target_tokens"] = model.count_target_tokens(batch)
        return losses

    replica_fn = tf.function(step_fn, jit_compile=True) if jit_compile else step_fn
    @tf.function
    def train_step(iterator, requests=None):
        per_replica = strategy.run(replica_fn, args=(next(iterator),))
        if requests is not None:
            per_replica["requests"] = strategy.run(tf.identity, args=(requests,))
        sums = ("target_tokens", "requests")
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM if k in sums else tf.distribute.ReduceOp.MEAN,
                                   v, axis=None) for k, v in per_replica.items()}

    return train_step


# What a worker asks of all of them before the next step: one flag each (a signal outranks the
# time budget).
_REQUESTS = ("stop_for_signal", "stop_for_time_budget", "save_checkpoint")


class _SignalStop:
    """SIGINT and SIGTERM (what a preempted VM or a scheduler sends) end training cleanly: the loop
    finishes its step (or evaluation), saves a checkpoint and raises ``Interrupted``. A second signal
    acts as usual. Installed only in the main thread, where Python delivers signals."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum
        for sig, handler in self._previous.items():  # The next signal is not caught.
            signal.signal(sig, handler)
        print(f"\n{signal.Signals(signum).name} received: saving a checkpoint after this step",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Checkpoints:
    """Latest and best checkpoints of a run, by structural name (xling_zoo.checkpoints), with the
    loop's bookkeeping inside. On a non-chief worker of a multi-worker run they go to a temporary
    directory (saving is a collective, every worker must take part) that ``close`` removes."""

    def __init__(self, workdir, chief, model, optimizer, keep):
        self.chief = chief
        self.directory = workdir_lib.join(workdir, workdir_lib.CHECKPOINT_DIR)
        self._scratch = None if chief else tempfile.mkdtemp(prefix="xling_zoo_worker_")
        save_dir = self.directory if chief else self._scratch
        self.loop_state = checkpoints.LoopState()
        self.objects = {**checkpoints.training_objects(model, optimizer), "state": self.loop_state.variable}
        self.latest = tf.train.CheckpointManager(tf.train.Checkpoint(**self.objects), save_dir, keep)
        self.best = tf.train.CheckpointManager(tf.train.Checkpoint(model=checkpoints.model_variables(model)),
                                               workdir_lib.join(save_dir, "best"), max_to_keep=1)

    def restore(self):
        """Restores the newest intact checkpoint; returns the loop state saved with it ({} if none)."""
        path = checkpoints.restore_latest(self.directory, self.objects,
                                          describe=lambda line: print(f"warning: {line}", file=sys.stderr))
        if path is None:
            return {}, None
        return self.loop_state.get(), path

    def save(self, step, state):
        self.loop_state.set(state)
        self.latest.save(checkpoint_number=step)

    def save_best(self, step):
        self.best.save(checkpoint_number=step)

    def close(self):
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)


@dataclasses.dataclass
class Splits:
    """A run's training and validation examples, each split read from its corpus once: lists of dicts
    of text (``corpus.read_split``); None where not read yet."""

    train: list = None
    validation: list = None


def read_splits(config, splits=None, validation=True):
    """``splits`` with the run's train split (max_train_examples applied) and, with ``validation``,
    its validation split read where they are None. An empty train split is a UserError."""
    splits = Splits() if splits is None else splits
    pair = corpus.Pair.parse(config.pair)
    options = dict(data_dir=config.data_dir or None, skip_bad_lines=config.skip_bad_lines)
    read = {"validation": splits.validation}

    def read_split(split):
        if read.get(split) is None:
            read[split] = corpus.read_split(config.corpus, pair, split, **options)
        return read[split]

    train = splits.train
    if train is None:
        train = corpus.read_split(config.corpus, pair, "train", max_train_examples=config.max_train_examples,
                                  **options)
        train = get_model(config.model_name).training_examples(config, train, read_split)
    if not train:
        raise UserError(f"the train split of {config.corpus} {pair} is empty")
    return Splits(train, read_split("validation") if validation else read["validation"])


def columns(examples):
    """A split read into memory (``corpus.read_split``) as one tf.string tensor per key, made once:
    every dataset ``in_memory`` makes of them shares them instead of copying the text again."""
    return {key: tf.constant([example[key] for example in examples], tf.string) for key in examples[0]} \
        if examples else None


def in_memory(examples):
    """The examples of ``corpus.read_split`` (or their ``columns``) as the dataset ``corpus.load_split``
    gives, in the same order: passes, counts and validations read memory, not the corpus again. An
    empty split has the keys every corpus gives (no "target_language": the pipeline then tags rows
    by the pair's first target)."""
    if isinstance(examples, list):
        examples = columns(examples)
    return tf.data.Dataset.from_tensor_slices(examples) if examples else corpus.empty_examples()


class RunInputs:
    """A run's batches, built by its task (``Task.build_inputs``) from splits read once. The
    training passes add the mixed-in pair's examples (data/mixing.py), read from its corpus."""

    def __init__(self, config, tokenizers, splits, static_shapes=False):
        self.config, self.tokenizers, self.splits = config, tokenizers, splits
        self.static_shapes = static_shapes
        self.task = get_model(config.model_name)
        self._train, self._validation = columns(splits.train), columns(splits.validation)

    def train(self, input_context=None):
        """One training pass (the trainer repeats it)."""
        examples = mixing.training_examples(self.config, len(self.splits.train), self.config.train.seed,
                                            own=in_memory(self._train))
        return self.task.build_inputs(self.config, self.tokenizers, examples, training=True,
                                      input_context=input_context, static_shapes=self.static_shapes)

    def validation(self, input_context=None):
        return self.task.build_inputs(self.config, self.tokenizers, in_memory(self._validation),
                                      training=False, input_context=input_context, static_shapes=self.static_shapes)

    def steps_per_epoch(self):
        return max(1, _count_batches(self.train()))

    def length_report(self):
        return self.task.length_report(self.config, self.tokenizers, in_memory(self._train))


def _tokenizers_for(config, workdir, status, chief, pair, train_examples, transfer):
    """The run's tokenizers, in memory: the run's own when resuming (or on a non-chief worker, once
    the chief wrote them), the transfer's for a new child, else trained on the training pairs."""
    directory = workdir_lib.join(workdir, workdir_lib.TOKENIZER_DIR)
    if status == "resume" and tf.io.gfile.exists(directory):
        return Tokenizers.load(directory)
    if transfer is not None:
        # Rebuilt: keras.utils.set_random_seed clears TensorFlow's kernel cache, which frees the
        # SentencePiece op resources of tokenizers made before it (the transfer made these).
        child = transfer.tokenizers
        return Tokenizers(SubwordTokenizer(child.source.model_proto),
                          None if child.joint else SubwordTokenizer(child.target.model_proto))
    vocab_size = small_corpus_vocab_size(config.tokenizer.vocab_size, len(train_examples))
    print(f"Training SentencePiece ({config.tokenizer.model_type}, {vocab_size} pieces) on {len(train_examples)} "
          f"{'sentences' if config.get('language') else 'pairs'}" +
          (f" (tokenizer.vocab_size={config.tokenizer.vocab_size} capped for a small corpus)"
           if vocab_size < config.tokenizer.vocab_size else ""))
    return get_model(config.model_name).train_tokenizers(config, train_examples)


def train_and_evaluate(config, workdir, transfer=None, splits=None):
    """Trains ``config`` in ``workdir`` (resuming if it holds a compatible run). Returns metrics.

    Everything a user can get wrong (config values, pair, corpus, model config, run directory) is
    checked before anything is written, so a failed start never leaves a directory that refuses
    the corrected command. Only the chief worker writes to ``workdir``.

    ``transfer`` (used by xling_zoo.transfer) has ``tokenizers`` (the child's), ``initialize(model) ->
    report`` (called only when the run has no checkpoint yet: copies and remaps parent weights),
    ``freeze(model)``, ``lr_multipliers(model) -> {variable path: multiplier}`` and
    ``write_report(workdir, report)``. ``splits``: a ``Splits`` whose lists were read already (the
    transfer step reads the child's training pairs); the others are read here, once each.
    """
    workdir = workdir_lib.path_str(workdir)
    config_lib.validate(config)
    set_precision(config.train)
    pair = corpus.Pair.parse(config.pair)
    status = workdir_lib.check(config, workdir)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.train)
    chief = is_chief(strategy)
    if chief:
        workdir_lib.check_writable(workdir)
    else:
        # The chief prepares the corpus and writes the run directory; the others read what it wrote.
        workdir_lib.wait_for_chief(workdir, config)
        status = workdir_lib.check(config, workdir)
    splits = read_splits(config, splits)
    mixing.check_mix(config, get_model(config.model_name))
    # Seeded after the corpus is read: preparing a corpus on first use draws op seeds, and a run that
    # prepared it would otherwise train to other weights than the same command rerun.
    keras.utils.set_random_seed(config.train.seed)
    tokenizers = _tokenizers_for(config, workdir, status, chief, pair, splits.train, transfer)

    # XLA and TPUs compile once per input shape: every batch of a bucket gets the bucket's shape.
    static_shapes = config.train.jit_compile or isinstance(strategy, tf.distribute.TPUStrategy)
    inputs = RunInputs(config, tokenizers, splits, static_shapes)
    schedule = make_schedule(config, inputs)
    if chief:
        _check_then_commit(config, workdir, status, tokenizers, transfer)
    model, optimizer = build_model_and_optimizer(config, tokenizers, strategy, static_shapes, transfer)
    saver = _Checkpoints(workdir, chief, model, optimizer, config.train.keep_checkpoints)
    try:
        with strategy.scope():
            state, restored = saver.restore()
            # The parent's weights, unless the child run already saved its own (a rerun resumes).
            transfer_report = transfer.initialize(model) if transfer is not None and restored is None else None
        if restored:
            print(f"Resumed from {restored} at step {_read_step(optimizer)}")
        if chief and transfer_report is not None:
            transfer.write_report(workdir, transfer_report)
        return _train_loop(config, workdir, strategy, chief, model, optimizer, saver, state, tokenizers,
                           inputs, pair, schedule)
    finally:
        saver.close()


def make_schedule(config, inputs):
    """{total_steps, eval_every, steps_per_epoch, length_report} of a run, from its training data; a
    small corpus gets the child's schedule (``small_corpus_schedule``), written into ``config``."""
    length_report = inputs.length_report()
    logging.info("Training examples: %s (data.max_length=%d)", length_report, config.data.max_length)
    steps_per_epoch = inputs.steps_per_epoch()
    small_corpus = small_corpus_schedule(config.train, steps_per_epoch)
    if small_corpus:
        print(f"A small corpus ({steps_per_epoch} updates per epoch): " +
              ", ".join(f"train.{key}={value}" for key, value in small_corpus.items()) +
              " (set train.eval_every_steps to keep your own schedule)")
        config.train.update(small_corpus)  # config.json records the schedule the run used.
    return {"total_steps": config.train.steps or steps_per_epoch * config.train.epochs,
            "eval_every": config.train.eval_every_steps or steps_per_epoch,
            "steps_per_epoch": steps_per_epoch, "length_report": length_report}


def _check_then_commit(config, workdir, status, tokenizers, transfer):
    """The chief writes the run directory (config, tokenizers), a new run only once a throwaway
    model has checked the model config (and the transfer's weight structure). Outside the strategy
    scope: building there is a collective that the other workers join only once the chief has
    written the run directory."""
    if status != "resume":
        probe = workdir_lib.build_model(config, tokenizers)
        if transfer is not None:
            transfer.initialize(probe)
        del probe
    workdir_lib.commit(config, workdir, status, tokenizers)


def build_model_and_optimizer(config, tokenizers, strategy, static_shapes=False, transfer=None):
    """The run's model and optimizer under ``strategy``, every weight and slot built: a transfer's
    frozen groups stay out of training, and its transferred weights get their learning rate."""
    with strategy.scope():
        model = workdir_lib.build_model(config, tokenizers, static_shapes=static_shapes)
        if transfer is not None:
            transfer.freeze(model)
        lr_multipliers = transfer.lr_multipliers(model) if transfer is not None else {}
        if lr_multipliers:
            optimizer = make_grouped_optimizer(config.train, model, lr_multipliers)
        else:
            optimizer = make_optimizer(config.train)
        optimizer.build(model.trainable_variables)
    return model, optimizer


def small_corpus_schedule(train_config, steps_per_epoch):
    """The train.* values that replace a per-epoch schedule on a corpus of under 100 updates an epoch.

    Validation once per epoch (train.eval_every_steps=0) and a patience counted in evaluations stop
    a run on 1,000 pairs (13 updates an epoch) after a few dozen updates, on the noise of its first
    evaluations: such a run gets the child's schedule instead (``transfer.child_schedule``:
    validation every 100 updates, no early stopping before 500, patience 300 updates), except for
    the values the config sets itself. Returns {} when the schedule stays as configured.
    """
    from xling_zoo import transfer as transfer_lib  # Late: the schedule is the child's, defined there.

    if train_config.eval_every_steps or steps_per_epoch >= transfer_lib.CHILD_MIN_EVAL_EVERY:
        return {}
    child = transfer_lib.child_schedule(steps_per_epoch)
    changes = {"eval_every_steps": child["eval_every_steps"]}
    for key in ("min_steps_before_early_stopping", "early_stopping_patience_steps"):
        if not train_config[key]:
            changes[key] = child[key]
    return changes


_METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF"}


def selection_score(evaluation, metric, model):
    """The figure of an evaluation that train.selection_metric ranks by, signed so that higher is
    better (``model.selection_metrics`` says which way each of its metrics goes)."""
    value = evaluation[f"validation_{metric}"]
    return value if model.selection_metrics[metric] == "max" else -value


def _floor_report(evaluator, best, metric, model):
    """The validator's floor (what a trivial system scores, e.g. copying the source) and, when the
    best checkpoint's selection figure does not beat it, a sentence saying so ("not_beaten")."""
    floor = dict(getattr(evaluator, "floor", None) or {})
    if not floor:
        return {}
    report = {"description": evaluator.floor_description, **{k: round(v, 4) for k, v in floor.items()}}
    key = f"validation_{metric}"
    if key in floor and key in best and model.selection_metrics[metric] == "max" and best[key] <= floor[key]:
        name = _METRIC_NAMES.get(metric, metric)
        report["not_beaten"] = (
            f"the best checkpoint's validation {name} ({best[key]}) is not above {evaluator.floor_description} "
            f"({floor[key]:.2f}) on the same sentences: this model is no more useful than its input yet. "
            "Train longer, on more pairs, or (for a transfer child) from a parent that knows languages "
            "related to the child's (README: transfer)")
    return report


def _patience_reached(train_config, evaluations_since_best, steps_since_best):
    """'N evaluations' / 'N updates' when early stopping's patience has run out, else None."""
    if train_config.early_stopping_patience_steps:
        if steps_since_best >= train_config.early_stopping_patience_steps:
            return f"{steps_since_best} updates"
        return None
    patience = train_config.early_stopping_patience
    if patience and evaluations_since_best >= patience:
        return f"{patience} evaluations"
    return None


def _train_loop(config, workdir, strategy, chief, model, optimizer, saver, state, tokenizers, inputs, pair,
                schedule):
    total_steps, eval_every = schedule["total_steps"], schedule["eval_every"]
    step = _read_step(optimizer)

    def train_stream(input_context):
        # The batches a resumed run has already trained on are skipped, so it sees exactly the
        # batches the uninterrupted run saw (the pipeline is deterministic given train.seed).
        per_step = input_context.num_replicas_in_sync // input_context.num_input_pipelines
        return inputs.train(input_context).repeat().skip(step * per_step)

    train_iterator = iter(strategy.distribute_datasets_from_function(train_stream))
    evaluator = model.make_validator(strategy, inputs.validation, config, tokenizers, inputs.splits.validation, pair)
    train_step = make_train_step(strategy, model, optimizer, config.train.jit_compile)

    history = state.get("history", [])
    metric = config.train.selection_metric
    best_bleu = state.get("best_validation_bleu", -1.0)  # The BLEU of the best checkpoint.
    # Checkpoints saved before selection_metric existed selected by BLEU.
    best_score = state.get("best_score", best_bleu if metric == "bleu" and history else None)
    best_step = state.get("best_step", 0)
    since_best = state.get("evaluations_since_best", 0)
    segment = state.get("segment", {})  # Sums of the evaluation interval in progress.
    if chief:
        writers = {name: tf.summary.create_file_writer(workdir_lib.join(workdir, "logs", name))
                   for name in ("train", "validation")}
        workdir_lib.update_metrics(workdir, {"data": {"train": schedule["length_report"],
                                                      "steps_per_epoch": schedule["steps_per_epoch"]},
                                             "total_steps": total_steps})
    else:
        writers = {name: tf.summary.create_noop_writer() for name in ("train", "validation")}

    start_time = last_save = time.time()
    every_steps, every_minutes = config.train.checkpoint_every_steps, config.train.checkpoint_every_minutes

    def out_of_time():
        return bool(config.train.max_minutes) and time.time() - start_time > 60 * config.train.max_minutes

    # A signal during an evaluation abandons it (a preempted VM has seconds left, an evaluation can
    # take minutes): the checkpoint says so, and the resumed run evaluates that step first. Not on
    # several workers, whose validation steps are collectives that all of them must finish.
    pending = state.get("evaluation_pending", False)
    abandons_evaluations = not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def loop_state():
        return {"history": history, "best_validation_bleu": best_bleu, "evaluations_since_best": since_best,
                "best_score": best_score, "best_step": best_step, "segment": segment,
                "evaluation_pending": pending}

    def bleu_of_best():
        # A task without BLEU (a language model) has no such figure to record.
        return {"best_validation_bleu": best_bleu} if "bleu" in model.selection_metrics else {}

    def interrupted(received):
        """Saves a checkpoint and raises Interrupted; every worker got the same request."""
        saver.save(step, loop_state())
        name = signal.Signals(received).name
        if chief:
            workdir_lib.update_metrics(workdir, {"step": step, "stop_reason": f"interrupted by {name}"})
        raise Interrupted(f"{name}: saved a checkpoint at step {step} in {saver.directory}; rerun the same "
                          "command to resume", 128 + received)

    stop_reason = "finished" if step >= total_steps and not pending else None
    with _SignalStop() as signals:
        while stop_reason is None:
            if pending:  # The evaluation at this step was interrupted: it comes first, no training.
                epoch, segment_end = math.ceil(step / eval_every), step
            else:
                epoch = step // eval_every + 1
                segment_end = min(epoch * eval_every, total_steps)
            progress = keras.utils.Progbar(segment_end - (epoch - 1) * eval_every, stateful_metrics=["tokens/s"],
                                           verbose=1 if chief else 0)
            print(f"Epoch {epoch}/{math.ceil(total_steps / eval_every)} (steps {step}/{total_steps})" +
                  (": its evaluation, interrupted before" if pending else ""))
            sums = segment.setdefault("sums", {})
            segment.setdefault("steps", 0)
            segment.setdefault("tokens", 0.0)
            segment.setdefault("seconds", 0.0)
            interval_start, stopped = time.time(), False
            while step < segment_end:
                wants = [signals.received is not None, out_of_time(),
                         bool(every_minutes) and time.time() - last_save > 60 * every_minutes]
                requests = tf.constant(wants, tf.float32)
                logs = train_step(train_iterator, requests)
                step += 1
                agreed = dict(zip(_REQUESTS, (bool(x > 0) for x in logs.pop("requests").numpy())))
                segment["tokens"] += float(logs.pop("target_tokens"))
                segment["steps"] += 1
                values = {k: float(v) for k, v in logs.items()}
                if not all(math.isfinite(v) for v in values.values()):
                    raise FloatingPointError(f"non-finite loss at step {step}: {values}; "
                                             "lower train.learning_rate or raise train.warmup_steps")
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                elapsed = segment["seconds"] + time.time() - interval_start
                progress.update(step - (epoch - 1) * eval_every,
                                list(values.items()) + [("tokens/s", segment["tokens"] / max(elapsed, 1e-9))])
                if agreed["stop_for_signal"] or agreed["stop_for_time_budget"]:
                    stopped = "signal" if agreed["stop_for_signal"] else "time budget"
                    break
                if agreed["save_checkpoint"] or (every_steps and step % every_steps == 0 and step < segment_end):
                    segment["seconds"] += time.time() - interval_start
                    interval_start = time.time()
                    saver.save(step, loop_state())
                    last_save = time.time()
            segment["seconds"] += time.time() - interval_start
            if stopped == "signal":  # No evaluation: a preempted VM has seconds left.
                interrupted(signals.received or signal.SIGTERM)  # SIGTERM: another worker's signal.
            print(f"Validating at step {step}", flush=True)
            evaluation = evaluator(should_stop=(lambda: signals.received is not None) if abandons_evaluations
                                   else None)
            if evaluation is None:
                pending = True
                interrupted(signals.received)
            pending = False
            steps_done = max(1, segment["steps"])
            record = {"step": step, "epoch": epoch, "seconds": round(segment["seconds"], 1),
                      "target_tokens_per_second": round(segment["tokens"] / max(segment["seconds"], 1e-9), 1),
                      **{f"train_{k}" if not k.startswith("train") else k: round(v / steps_done, 4)
                         for k, v in sums.items()},
                      **{k: round(v, 4) for k, v in evaluation.items()}}
            history.append(record)
            segment = {}
            print("  " + ", ".join(f"{k}={v}" for k, v in record.items()))
            with writers["train"].as_default():
                for k, v in record.items():
                    if k.startswith("train_"):
                        tf.summary.scalar(k[len("train_"):], v, step=step)
                tf.summary.scalar("target_tokens_per_second", record["target_tokens_per_second"], step=step)
            with writers["validation"].as_default():
                for k, v in evaluation.items():
                    tf.summary.scalar(k.replace("validation_", ""), v, step=step)
            current = selection_score(evaluation, metric, model)
            if best_score is None or current > best_score:
                best_score, best_step, since_best = current, step, 0
                best_bleu = evaluation.get("validation_bleu", best_bleu)
                saver.save_best(step)  # Before the latest: a crash in between re-evaluates this step.
            else:
                since_best += 1
            patience_reached = (_patience_reached(config.train, since_best, step - best_step)
                                if step >= config.train.min_steps_before_early_stopping else None)
            if step >= total_steps:
                stop_reason = "finished"
            elif patience_reached:
                stop_reason = f"early stopping: no validation {_METRIC_NAMES.get(metric, metric)} gain in {patience_reached}"
            elif stopped or out_of_time():
                stop_reason = f"time budget of {config.train.max_minutes} minutes reached"
            saver.save(step, loop_state())
            last_save = time.time()
            if chief:
                workdir_lib.update_metrics(workdir, {"history": history, **bleu_of_best(),
                                                     "evaluations_since_best": since_best, "stop_reason": stop_reason,
                                                     "best_step": best_step, "selection_metric": metric,
                                                     "step": step})
    best = next((h for h in history if h["step"] == best_step), {})
    print(f"Stopped at step {step}: {stop_reason}. Best checkpoint: step {best_step} by validation "
          f"{_METRIC_NAMES.get(metric, metric)} (" +
          ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in best.items() if k.startswith("validation_")) + ").")
    floor = _floor_report(evaluator, best, metric, model)
    if floor.get("not_beaten"):
        print(f"Warning: {floor['not_beaten']}", file=sys.stderr)
    if chief:
        if floor:
            workdir_lib.update_metrics(workdir, {"validation_floor": floor})
        return workdir_lib.read_json(workdir_lib.join(workdir, workdir_lib.METRICS_FILE), {})
    return {"history": history, **bleu_of_best(), "stop_reason": stop_reason, "step": step,
            "best_step": best_step, "selection_metric": metric}
