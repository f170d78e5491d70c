"""The run directory: one folder per training run, readable by every later step.

  config.json            the resolved config (what evaluate/translate/transfer/export rebuild from)
  tokenizer/             the SentencePiece model(s)
  checkpoints/           latest checkpoints (model + optimizer + step), for resuming
  checkpoints/best/      the weights with the best validation BLEU
  logs/                  TensorBoard (train/, validation/)
  metrics.json           training history, data report, and test metrics written by evaluate
  transfer.json          (child runs) what the transfer step copied, remapped, initialised, froze
"""

import dataclasses
import json
import os
import time
import uuid

import tensorflow as tf

from xling_zoo import checkpoints
from xling_zoo import config as config_lib
from xling_zoo.data.corpus import Pair
from xling_zoo.data.tokenizer import Tokenizers
from xling_zoo.errors import UserError
from xling_zoo.models.base import VocabInfo
from xling_zoo.registry import get_model

CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "checkpoints/best"
METRICS_FILE = "metrics.json"
# Nothing of a run is lost when these are replaced: a directory holding only them (a start that
# failed before its first checkpoint) may be taken over by a corrected command.
_RESTARTABLE = {CONFIG_FILE, TOKENIZER_DIR, "logs"}


# === Paths: local or any TensorFlow filesystem (gs://, ram://) ===

def path_str(path):
    """A path as a string. pathlib would collapse the "//" of "gs://bucket", so run directories are
    handled as strings and joined with os.path.join, which keeps it."""
    return os.fspath(path)


def absolute(path):
    """An absolute local path; URLs (gs://, ram://) unchanged."""
    path = path_str(path)
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def join(*parts):
    return os.path.join(*(path_str(p) for p in parts))


def write_atomically(path, text):
    """Writes ``text`` to ``path`` through a temporary file in the same directory and a rename: a
    crash never leaves a half-written file in place of a good one (on any tf.io.gfile filesystem)."""
    path = path_str(path)
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with tf.io.gfile.GFile(temporary, "w") as f:
            f.write(text)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except tf.errors.PermissionDeniedError as error:
        raise UserError(f"cannot write {path}: permission denied ({error.message.splitlines()[0][:200]})") from None
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)


def read_text(path):
    with tf.io.gfile.GFile(path_str(path), "r") as f:
        return f.read()


def read_json(path, default=None):
    path = path_str(path)
    if not tf.io.gfile.exists(path):
        return default
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); restore it or use a new --workdir") from e


def update_metrics(workdir, updates):
    """Merges ``updates`` into workdir/metrics.json (training and evaluation both write there)."""
    path = join(workdir, METRICS_FILE)
    metrics = read_json(path, {})
    metrics.update(updates)
    write_atomically(path, json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def has_checkpoint(workdir):
    return bool(checkpoints.checkpoint_paths(join(workdir, CHECKPOINT_DIR)))


def check(config, workdir):
    """Checks, without writing anything, that ``workdir`` can hold a run of ``config``. Returns
    "new" (empty or absent), "resume" (a compatible run) or "restart" (a start that failed before
    its first checkpoint, with another config: nothing in it is worth keeping)."""
    workdir = path_str(workdir)
    if tf.io.gfile.exists(workdir) and not tf.io.gfile.isdir(workdir):
        raise UserError(f"--workdir={workdir} is a file, not a directory")
    config_path = join(workdir, CONFIG_FILE)
    if tf.io.gfile.exists(config_path):
        existing = config_lib.from_json(read_text(config_path))
        different = config_lib.incompatible_keys(existing, config)
        if existing.get("model_name") != config.model_name:
            different = ["model_name"]
        if not different:
            return "resume"
        if not has_checkpoint(workdir) and set(tf.io.gfile.listdir(workdir)) <= _RESTARTABLE | {f"{n}/" for n in _RESTARTABLE}:
            return "restart"
        if "model_name" in different:
            raise UserError(f"--workdir={workdir} holds a {existing.get('model_name')!r} run, not "
                            f"{config.model_name!r}; choose another --workdir")
        raise UserError(f"--workdir={workdir} was made with a different {', '.join(different)}; "
                        "its checkpoints cannot be reused. Choose a new --workdir (nothing was changed)")
    if tf.io.gfile.isdir(workdir):
        leftover = {name.rstrip("/") for name in tf.io.gfile.listdir(workdir)}
        if leftover - {TOKENIZER_DIR, "logs"}:
            raise UserError(f"--workdir={workdir} is not empty and holds no {CONFIG_FILE}: "
                            "it is not a run directory; choose another --workdir")
        if leftover:
            return "restart"  # A start that failed before writing its config.
    return "new"


def check_writable(workdir):
    """One clear error for a run directory this process cannot write, before training starts. Writes
    and removes a probe file in ``workdir``, or in its deepest existing parent: nothing is created."""
    workdir = path_str(workdir)
    target = workdir
    if "://" not in workdir:  # Buckets have no directories to create.
        while not tf.io.gfile.exists(target) and os.path.dirname(target) != target:
            target = os.path.dirname(target)
    probe = join(target, f".xling_zoo-write-check-{uuid.uuid4().hex[:12]}")
    try:
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0][:200]
        raise UserError(f"cannot write to --workdir={workdir} ({message}); choose a writable directory") from None


def commit(config, workdir, status, tokenizers=None):
    """Makes ``workdir`` the run directory of ``config``, once ``check`` and everything else was
    validated: a restart first drops the failed start's files; the tokenizer is written before
    config.json, whose presence tells other workers (and reruns) that the run directory is whole."""
    workdir = path_str(workdir)
    tf.io.gfile.makedirs(workdir)
    if status == "restart":
        for name in (CONFIG_FILE, TOKENIZER_DIR, "logs"):
            path = join(workdir, name)
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            elif tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
    tokenizer_dir = join(workdir, TOKENIZER_DIR)
    if tokenizers is not None and not tf.io.gfile.exists(tokenizer_dir):
        tokenizers.save(tokenizer_dir)
    write_atomically(join(workdir, CONFIG_FILE), config_lib.to_json(config))


def prepare(config, workdir):
    """``check`` then ``commit``: creates ``workdir`` for ``config``, or checks that an existing one
    was made by a compatible config. Returns True when the directory already held a run."""
    status = check(config, workdir)
    check_writable(workdir)
    commit(config, workdir, status)
    return status == "resume"


def wait_for_chief(workdir, config, minutes=30.0, poll_seconds=1.0):
    """A non-chief worker of a multi-worker run waits until the chief has written config.json for
    this config (after the tokenizer) instead of writing the run directory itself."""
    path = join(workdir, CONFIG_FILE)
    deadline = time.time() + 60 * minutes
    while True:
        if tf.io.gfile.exists(path):
            try:
                written = config_lib.from_json(read_text(path))
            except (ValueError, tf.errors.OpError):
                written = None  # Caught mid-rename on a filesystem without atomic rename.
            if written is not None and not config_lib.incompatible_keys(written, config):
                return
        if time.time() > deadline:
            raise UserError(f"waited {minutes} minutes for the chief worker to write {path} for this config; is "
                            "the chief running the same command with the same --workdir?")
        time.sleep(poll_seconds)


def vocab_info(tokenizers, pair):
    return VocabInfo(source_vocab_size=tokenizers.source.vocab_size,
                     target_vocab_size=tokenizers.target.vocab_size,
                     joint=tokenizers.joint,
                     num_source_languages=len(pair.source_languages))


def build_model(config, tokenizers, static_shapes=False):
    """Builds the registered model for ``config`` with every weight created: its ``model`` section,
    ``train.label_smoothing``, and ``static_shapes`` (for a training step under XLA or on a TPU)."""
    pair = Pair.parse(config.pair)
    model_cls = get_model(config.model_name)
    vocab = vocab_info(tokenizers, pair)
    model_cls.validate_config(config.model, vocab, pair)
    model = model_cls.from_config(config.model, vocab, label_smoothing=config.train.label_smoothing,
                                  static_shapes=static_shapes)
    model(model.dummy_inputs())
    return model


@dataclasses.dataclass
class Run:
    """A trained run loaded back from its directory."""

    workdir: str
    config: object
    tokenizers: Tokenizers
    model: object
    checkpoint: str

    @property
    def pair(self):
        return Pair.parse(self.config.pair)


def load_config(workdir):
    workdir = path_str(workdir)
    if not tf.io.gfile.isdir(workdir):
        raise UserError(f"--workdir={workdir} does not exist or is not a directory")
    path = join(workdir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise UserError(f"--workdir={workdir} has no {CONFIG_FILE}: it is not a run directory "
                        "(train one with python -m xling_zoo.train)")
    return config_lib.with_defaults(config_lib.from_json(read_text(path)))


def latest_checkpoint(workdir, which="best"):
    """Path prefix of the best (or latest) checkpoint, falling back to latest when no best exists."""
    best = checkpoints.checkpoint_paths(join(workdir, BEST_DIR))
    latest = checkpoints.checkpoint_paths(join(workdir, CHECKPOINT_DIR))
    candidates = (best or latest) if which == "best" else latest
    return candidates[0] if candidates else None


def restore_model(model, checkpoint_path):
    """Restores model weights only; a shape or name mismatch is a UserError naming the file."""
    try:
        checkpoints.restore_model_weights(model, checkpoint_path)
    except (ValueError, AssertionError, tf.errors.OpError) as e:
        raise UserError(f"checkpoint {checkpoint_path} does not fit the model built from its config and "
                        f"tokenizer ({str(e).splitlines()[0][:300]})") from e


def load_run(workdir, which="best"):
    """Loads config, tokenizers and the best (or latest) weights of a run directory. A damaged
    newest checkpoint is reported and the previous intact one used."""
    workdir = path_str(workdir)
    config = load_config(workdir)
    tokenizers = Tokenizers.load(join(workdir, TOKENIZER_DIR))
    model = build_model(config, tokenizers)
    directories = [join(workdir, BEST_DIR), join(workdir, CHECKPOINT_DIR)] if which == "best" else \
        [join(workdir, CHECKPOINT_DIR)]
    for directory in directories:
        checkpoint = checkpoints.newest_intact(directory, model)
        if checkpoint is not None:
            return Run(workdir=workdir, config=config, tokenizers=tokenizers, model=model, checkpoint=checkpoint)
    raise UserError(f"--workdir={workdir} has no checkpoint under {join(workdir, CHECKPOINT_DIR)} (none that "
                    "is intact): training has not saved one yet")
