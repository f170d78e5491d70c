"""The one training loop, for every model and every tf.distribute strategy.

``train_and_evaluate(config, workdir)`` owns the strategy scope and the ``InputContext``: the input
pipeline is built per worker by ``strategy.distribute_datasets_from_function``, each step runs the
model's own ``training_step`` under ``strategy.run``, and checkpoints go through
``tf.train.CheckpointManager`` (step-exact resume). A custom loop rather than ``model.fit``: Keras
3.15's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585) and BackupAndRestore
replays the interrupted epoch.
"""

import math
import pathlib
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus, pipeline
from xling_zoo.data.tokenizer import Tokenizers, train_tokenizers
from xling_zoo.decode import Translator
from xling_zoo.errors import UserError
from xling_zoo.evaluate import score

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(train_config):
    """The tf.distribute strategy named by ``train.strategy``."""
    name = train_config.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All local GPUs; on a machine without any, all (logical) CPU devices — how tests run it.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        # Reads the cluster from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=train_config.tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"train.strategy={name!r} is not one of {', '.join(STRATEGIES)}")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


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


def load_or_train_tokenizers(config, workdir, pair, train_examples):
    """The run's tokenizers: loaded from the run dir (resume, transfer) or trained and saved."""
    directory = pathlib.Path(workdir) / workdir_lib.TOKENIZER_DIR
    if directory.exists():
        return Tokenizers.load(directory)
    logging.info("Training SentencePiece (%s, %d pieces) on %d pairs", config.tokenizer.model_type,
                 config.tokenizer.vocab_size, len(train_examples))
    languages = sorted(set(pair.source_languages) | {pair.target_language})
    tokenizers = train_tokenizers(train_examples, config.tokenizer, languages, seed=config.train.seed)
    tokenizers.save(directory)
    return tokenizers


def _read_step(optimizer):
    # convert_to_numpy also reads a MirroredVariable, on which int() fails.
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _never_empty(batch):
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


def _count_batches(dataset):
    return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


class _Evaluator:
    """Validation loss (distributed) and BLEU on a validation subset (decoded with the Translator)."""

    def __init__(self, strategy, model, dataset_fn, config, tokenizers, validation_examples, target_language):
        self.strategy = strategy
        self.model = model
        self.dataset = strategy.distribute_datasets_from_function(dataset_fn)
        self.translator = Translator(model, tokenizers, config, beam_size=1)
        limit = config.eval.validation_bleu_examples or len(validation_examples)
        self.sources = [e["source"] for e in validation_examples[:limit]]
        self.references = [e["target"] for e in validation_examples[:limit]]
        self.target_language = target_language
        self.batch_size = config.eval.batch_size

        @tf.function
        def loss_step(batch):
            def step_fn(batch):
                batch = _never_empty(batch)
                tokens = tf.reduce_sum(tf.cast(tf.not_equal(batch["target_token_ids"], 0), tf.float32))
                losses = self.model.compute_losses(batch, training=False)
                # Translation loss alone where a model adds other terms (the adversarial
                # discriminator), so validation losses compare across models.
                loss = tf.cast(losses.get("translation_loss", losses["loss"]), tf.float32)
                return loss * tokens, tokens

            weighted, tokens = strategy.run(step_fn, args=(batch,))
            sum_ = tf.distribute.ReduceOp.SUM
            return strategy.reduce(sum_, weighted, axis=None), strategy.reduce(sum_, tokens, axis=None)

        self.loss_step = loss_step

    def __call__(self):
        total, tokens = 0.0, 0.0
        for batch in self.dataset:
            weighted, count = self.loss_step(batch)
            total += float(weighted)
            tokens += float(count)
        hypotheses = self.translator.translate_all(self.sources, self.batch_size)
        bleu = score(hypotheses, self.references, self.target_language)
        return {"validation_loss": total / max(tokens, 1.0), "validation_bleu": bleu["bleu"],
                "validation_chrf": bleu["chrf"]}


def make_train_step(strategy, model, optimizer, jit_compile=False):
    """A tf.function taking a distributed iterator: one ``model.training_step`` per replica, then
    losses averaged and real (non-padding) target tokens summed over replicas."""
    loss_scale = 1.0 / strategy.num_replicas_in_sync
    # XLA and TPUs need static shapes: the loss then reads the output layer at every position.
    static_shapes = jit_compile or isinstance(strategy, tf.distribute.TPUStrategy)
    if hasattr(model, "loss_on_real_positions"):
        model.loss_on_real_positions = not static_shapes

    def step_fn(batch):
        losses = model.training_step(batch, optimizer, loss_scale=loss_scale)
        losses = {k: tf.cast(v, tf.float32) for k, v in losses.items()}
        losses["target_tokens"] = tf.reduce_sum(tf.cast(tf.not_equal(batch["target_token_ids"], 0), tf.float32))
        return losses

    replica_fn = tf.function(step_fn, jit_compile=True) if jit_compile else step_fn

    @tf.function
    def train_step(iterator):
        per_replica = strategy.run(replica_fn, args=(next(iterator),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM if k == "target_tokens" else
                                   tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return train_step


def train_and_evaluate(config, workdir, transfer=None):
    """Trains ``config`` in ``workdir`` (resuming if it holds a compatible run). Returns metrics.

    ``transfer`` (used by xling_zoo.transfer) has ``initialize(model) -> report`` (called only when
    the run has no checkpoint yet: copies and remaps parent weights), ``freeze(model)``,
    ``lr_multipliers(model) -> {variable path: multiplier}`` and ``write_report(workdir, report)``.
    """
    workdir = pathlib.Path(workdir)
    resumed = workdir_lib.prepare(config, workdir)
    keras.utils.set_random_seed(config.train.seed)
    set_precision(config.train)
    strategy = make_strategy(config.train)
    chief = is_chief(strategy)
    pair = corpus.Pair.parse(config.pair)
    data_dir = config.data_dir or None

    def load(split, **kwargs):
        return corpus.load_split(config.corpus, pair, split, data_dir=data_dir, **kwargs)

    train_examples = corpus.read_split(config.corpus, pair, "train", data_dir=data_dir,
                                       max_train_examples=config.max_train_examples)
    validation_examples = corpus.read_split(config.corpus, pair, "validation", data_dir=data_dir)
    if not train_examples:
        raise UserError(f"the train split of {config.corpus} {pair} is empty")
    tokenizers = load_or_train_tokenizers(config, workdir, pair, train_examples)

    common = dict(target_language=pair.target_language, source_languages=pair.source_languages)
    length_report = pipeline.length_report(load("train", max_train_examples=config.max_train_examples),
                                           tokenizers, config.data, target_language=pair.target_language)
    logging.info("Training pairs: %d; longer than data.max_length=%d: %d (%s)", length_report["examples"],
                 config.data.max_length, length_report["overlength"], length_report["action"])

    def train_dataset_fn(input_context=None):
        return pipeline.make_dataset(load("train", max_train_examples=config.max_train_examples), tokenizers,
                                     config.data, training=True, input_context=input_context,
                                     seed=config.train.seed, **common)

    def validation_dataset_fn(input_context=None):
        return pipeline.make_dataset(load("validation"), tokenizers, config.data, training=False,
                                     input_context=input_context, **common)

    steps_per_epoch = max(1, _count_batches(train_dataset_fn()))
    total_steps = config.train.steps or steps_per_epoch * config.train.epochs
    eval_every = config.train.eval_every_steps or steps_per_epoch

    with strategy.scope():
        model = workdir_lib.build_model(config, tokenizers)
        model.label_smoothing = config.train.label_smoothing
        checkpoint_dir = workdir / workdir_lib.CHECKPOINT_DIR
        latest = tf.train.latest_checkpoint(str(checkpoint_dir))
        # Multi-worker: every worker saves (saving is a collective op), only the chief where it counts.
        save_dir = checkpoint_dir if chief else pathlib.Path(tempfile.mkdtemp(prefix="xling_zoo_worker_"))
        transfer_report = None
        if latest is None and transfer is not None:
            transfer_report = transfer.initialize(model)
        if transfer is not None:
            transfer.freeze(model)
        lr_multipliers = transfer.lr_multipliers(model) if transfer is not None else {}
        if lr_multipliers:
            optimizer = make_grouped_optimizer(config.train, model, lr_multipliers)
        else:
            optimizer = make_optimizer(config.train)
        optimizer.build(model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=workdir_lib.checkpointed(model), optimizer=optimizer)
        manager = tf.train.CheckpointManager(checkpoint, str(save_dir), config.train.keep_checkpoints)
        best_manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=workdir_lib.checkpointed(model)),
                                                  str(save_dir / "best"), max_to_keep=1)
        if latest is not None:
            checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("Resumed from %s at step %d", latest, _read_step(optimizer))
    if transfer_report is not None and chief:
        transfer.write_report(workdir, transfer_report)

    train_iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: train_dataset_fn(ctx).repeat()))
    evaluator = _Evaluator(strategy, model, validation_dataset_fn, config, tokenizers, validation_examples,
                           pair.target_language)
    train_step = make_train_step(strategy, model, optimizer, config.train.jit_compile)

    previous = workdir_lib.read_json(workdir / workdir_lib.METRICS_FILE, {}) if resumed else {}
    history = previous.get("history", [])
    best_bleu = max((h["validation_bleu"] for h in history), default=-1.0)
    since_best = previous.get("evaluations_since_best", 0)
    writers = {name: tf.summary.create_file_writer(str(workdir / "logs" / name)) for name in ("train", "validation")}
    if chief:
        workdir_lib.update_metrics(workdir, {"data": {"train": length_report, "steps_per_epoch": steps_per_epoch},
                                             "total_steps": total_steps})

    start_time = time.time()
    # Workers of a multi-worker run must agree on every step, so they only stop at evaluations.
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def out_of_time():
        return bool(config.train.max_minutes) and time.time() - start_time > 60 * config.train.max_minutes

    step = _read_step(optimizer)
    stop_reason = "finished" if step >= total_steps else None
    while stop_reason is None:
        epoch = step // eval_every + 1
        progress = keras.utils.Progbar(min(eval_every, total_steps - (epoch - 1) * eval_every),
                                       stateful_metrics=["tokens/s"], verbose=1 if chief else 0)
        print(f"Epoch {epoch}/{math.ceil(total_steps / eval_every)} (steps {step}/{total_steps})")
        sums, tokens, epoch_start = {}, 0.0, time.time()
        segment_start, segment_end = step, min(epoch * eval_every, total_steps)
        while step < segment_end:
            if out_of_time() and not multi_worker:
                break  # The budget ends mid-epoch: evaluate and save what was trained so far.
            logs = train_step(train_iterator)
            step += 1
            tokens += float(logs.pop("target_tokens"))
            values = {k: float(v) for k, v in logs.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"non-finite loss at step {step}: {values}; "
                                         "lower train.learning_rate or raise train.warmup_steps")
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            progress.update(step - (epoch - 1) * eval_every,
                            list(values.items()) + [("tokens/s", tokens / (time.time() - epoch_start))])
        train_seconds = time.time() - epoch_start
        manager.save(checkpoint_number=step)
        evaluation = evaluator()
        record = {"step": step, "epoch": epoch, "seconds": round(train_seconds, 1),
                  "target_tokens_per_second": round(tokens / max(train_seconds, 1e-9), 1),
                  **{f"train_{k}" if not k.startswith("train") else k: round(v / max(1, step - segment_start), 4)
                     for k, v in sums.items()},
                  **{k: round(v, 4) for k, v in evaluation.items()}}
        history.append(record)
        print("  " + ", ".join(f"{k}={v}" for k, v in record.items()))
        with writers["train"].as_default():
            for k, v in record.items():
                if k.startswith("train_"):
                    tf.summary.scalar(k[len("train_"):], v, step=step)
            tf.summary.scalar("target_tokens_per_second", record["target_tokens_per_second"], step=step)
        with writers["validation"].as_default():
            for k, v in evaluation.items():
                tf.summary.scalar(k.replace("validation_", ""), v, step=step)
        if evaluation["validation_bleu"] > best_bleu:
            best_bleu, since_best = evaluation["validation_bleu"], 0
            best_manager.save(checkpoint_number=step)
        else:
            since_best += 1
        patience = config.train.early_stopping_patience
        if step >= total_steps:
            stop_reason = "finished"
        elif patience and since_best >= patience:
            stop_reason = f"early stopping: no validation BLEU gain in {patience} evaluations"
        elif out_of_time():
            stop_reason = f"time budget of {config.train.max_minutes} minutes reached"
        if chief:
            workdir_lib.update_metrics(workdir, {"history": history, "best_validation_bleu": best_bleu,
                                                 "evaluations_since_best": since_best, "stop_reason": stop_reason,
                                                 "step": step})
    print(f"Stopped at step {step}: {stop_reason}. Best validation BLEU {best_bleu}.")
    return workdir_lib.read_json(workdir / workdir_lib.METRICS_FILE, {})
