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
import pathlib
import tempfile

import tensorflow as tf

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


def write_atomically(path, text):
    """Writes ``text`` to ``path`` through a temporary file and a rename: a crash never leaves a
    half-written file in place of a good one."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_json(path, default=None):
    path = pathlib.Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); restore it or use a new --workdir") from e


def update_metrics(workdir, updates):
    """Merges ``updates`` into workdir/metrics.json (training and evaluation both write there)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    metrics = read_json(path, {})
    metrics.update(updates)
    write_atomically(path, json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def prepare(config, workdir):
    """Creates ``workdir`` for ``config``, or checks that an existing one was made by a compatible
    config (then training resumes). Returns True when the directory already held a run."""
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir={workdir} is a file, not a directory")
    existing_path = workdir / CONFIG_FILE
    if existing_path.exists():
        existing = config_lib.from_json(existing_path.read_text(encoding="utf-8"))
        if existing.get("model_name") != config.model_name:
            raise UserError(f"--workdir={workdir} holds a {existing.get('model_name')!r} run, not "
                            f"{config.model_name!r}; choose another --workdir")
        different = config_lib.incompatible_keys(existing, config)
        if different:
            raise UserError(f"--workdir={workdir} was made with a different {', '.join(different)}; "
                            "its checkpoints cannot be reused. Choose a new --workdir (nothing was changed)")
        resumed = True
    else:
        if workdir.exists() and any(workdir.iterdir()):
            raise UserError(f"--workdir={workdir} is not empty and holds no {CONFIG_FILE}: "
                            "it is not a run directory; choose another --workdir")
        resumed = False
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomically(existing_path, config_lib.to_json(config))
    return resumed


def vocab_info(tokenizers, pair):
    return VocabInfo(source_vocab_size=tokenizers.source.vocab_size,
                     target_vocab_size=tokenizers.target.vocab_size,
                     joint=tokenizers.joint,
                     num_source_languages=len(pair.source_languages))


def build_model(config, tokenizers):
    """Builds the registered model for ``config`` with every weight created."""
    pair = Pair.parse(config.pair)
    model_cls = get_model(config.model_name)
    vocab = vocab_info(tokenizers, pair)
    model_cls.validate_config(config.model, vocab, pair)
    model = model_cls.from_config(config.model, vocab)
    model(model.dummy_inputs())
    return model


@dataclasses.dataclass
class Run:
    """A trained run loaded back from its directory."""

    workdir: pathlib.Path
    config: object
    tokenizers: Tokenizers
    model: object
    checkpoint: str

    @property
    def pair(self):
        return Pair.parse(self.config.pair)


def load_config(workdir):
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise UserError(f"--workdir={workdir} does not exist or is not a directory")
    path = workdir / CONFIG_FILE
    if not path.exists():
        raise UserError(f"--workdir={workdir} has no {CONFIG_FILE}: it is not a run directory "
                        "(train one with python -m xling_zoo.train)")
    return config_lib.from_json(path.read_text(encoding="utf-8"))


def latest_checkpoint(workdir, which="best"):
    """Path prefix of the best (or latest) checkpoint, falling back to latest when no best exists."""
    workdir = pathlib.Path(workdir)
    best = tf.train.latest_checkpoint(str(workdir / BEST_DIR))
    latest = tf.train.latest_checkpoint(str(workdir / CHECKPOINT_DIR))
    return (best or latest) if which == "best" else latest


def checkpointed(model):
    """What checkpoints hold of ``model``: every weight, by its position in ``model.weights`` (fixed by
    the config). ``tf.train.Checkpoint(model=model)`` would silently miss the weights of Keras 3 layers
    kept in Python lists (``self.encoder_layers = [...]``): TF's object graph does not see into them."""
    return list(model.weights)


def restore_model(model, checkpoint_path):
    """Restores model weights only; a shape or structure mismatch is a UserError naming the file."""
    try:
        status = tf.train.Checkpoint(model=checkpointed(model)).restore(checkpoint_path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as e:
        raise UserError(f"checkpoint {checkpoint_path} does not fit the model built from its config and "
                        f"tokenizer ({str(e).splitlines()[0][:300]})") from e


def load_run(workdir, which="best"):
    """Loads config, tokenizers and the best (or latest) weights of a run directory."""
    workdir = pathlib.Path(workdir)
    config = load_config(workdir)
    tokenizers = Tokenizers.load(workdir / TOKENIZER_DIR)
    checkpoint = latest_checkpoint(workdir, which)
    if checkpoint is None:
        raise UserError(f"--workdir={workdir} has no checkpoint under {workdir / CHECKPOINT_DIR}: "
                        "training has not saved one yet")
    model = build_model(config, tokenizers)
    restore_model(model, checkpoint)
    return Run(workdir=workdir, config=config, tokenizers=tokenizers, model=model, checkpoint=checkpoint)
