"""Checkpoints keyed by each variable's structural name, and a resume that survives a bad file.

A training checkpoint holds, each under a name that does not depend on creation order or on how many
models the process built before (Keras appends ``_1``, ``_2`` to auto-generated names):

  model/<variable.path>          every model variable: weights by path, plus the dropout RNG states
                                 (``seed_generator`` counters, so a resumed run draws the same masks)
  optimizer/<slot name>          the trainer's optimizer (each group of a GroupedOptimizer)
  owned/<name>/<slot name>       optimizers a model owns (the adversarial discriminator's)
  state                          the loop's own bookkeeping (history, best score, ...) as JSON

A dependency upgrade that reorders two same-shaped weights therefore cannot swap them, and a
checkpoint whose names differ from the model's is refused with the names that differ.
``restore_latest`` tries the newest checkpoint first and falls back to older ones when a file is
truncated, garbled or missing. Checkpoints of runs made before names were used (keys
``model/0/...``, by position in ``model.weights``) are still read, model weights only.
"""

import json
import os
import re

import tensorflow as tf
from absl import logging

from xling_zoo.errors import UserError

# Keras makes auto-generated names unique per process ("seed_generator_17", "adam_1").
_UID_SUFFIX = re.compile(r"_\d+$")
_POSITIONAL_KEY = re.compile(r"^model/\d+/\.ATTRIBUTES/VARIABLE_VALUE$")
# What TensorFlow raises on a truncated ("Read less bytes": IndexError), garbled or missing checkpoint
# file. A checkpoint that reads but does not fit the model raises ValueError or AssertionError.
_DAMAGE_ERRORS = (tf.errors.OpError, IndexError, UnicodeDecodeError)
_MISMATCH_ERRORS = (ValueError, AssertionError)


def _without_uids(path, components):
    """``path`` with the uid suffix stripped from the components at the indices ``components`` and
    from every ``seed_generator_N`` component."""
    parts = path.split("/")
    return "/".join(_UID_SUFFIX.sub("", part) if i in components or part.startswith("seed_generator") else part
                    for i, part in enumerate(parts))


def _unique(named):
    """[(name, variable)] -> {name: variable}; a repeated name gets #1, #2... in order of creation
    (only RNG states repeat: several seed generators in one layer)."""
    out, seen = {}, {}
    for name, variable in named:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out[name if count == 0 else f"{name}#{count}"] = variable
    return out


def model_variables(model):
    """{structural name: variable} for every variable of ``model`` (weights and RNG states)."""
    weights = {id(v) for v in model.weights}
    paths = [v.path for v in model.weights]
    if len(set(paths)) != len(paths):
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"{model.name} has several weights named {repeated}: name its layers")
    named = [(v.path, v) for v in model.weights]
    named += [(_without_uids(v.path, ()), v) for v in model.variables if id(v) not in weights]
    return _unique(named)


def optimizer_variables(optimizer):
    """{structural name: variable} of a Keras optimizer, a LossScaleOptimizer or a GroupedOptimizer."""
    groups = getattr(optimizer, "optimizers", None)
    if groups is not None:
        return {f"group{i}/{name}": v for i, group in enumerate(groups)
                for name, v in optimizer_variables(group).items()}
    # Slot names derive from the variable's path ("adam/lstm_seq2seq_logits_kernel_momentum"); only
    # the optimizer's own name ("adam_1") carries a uid.
    return _unique([(_without_uids(v.path, (0,)), v) for v in optimizer.variables])


def training_objects(model, optimizer):
    """The trackable dict of everything a training checkpoint restores, by structural name."""
    objects = {"model": model_variables(model), "optimizer": optimizer_variables(optimizer)}
    owned = model.owned_optimizers()
    if owned:
        objects["owned"] = {name: optimizer_variables(o) for name, o in owned.items()}
    return objects


def _saved_names(path):
    # The reader directly: tf.train.list_variables first asks whether ``path`` is a directory, which
    # ram:// answers yes for a checkpoint prefix.
    return set(tf.compat.v1.train.NewCheckpointReader(path).get_variable_to_shape_map())


def _expected_names(objects, prefix=""):
    names = set()
    for key, value in objects.items():
        if isinstance(value, dict):
            names |= _expected_names(value, f"{prefix}{key}/")
        else:
            names.add(f"{prefix}{_escape(key)}/.ATTRIBUTES/VARIABLE_VALUE")
    return names


def _check_names(path, objects):
    """One clear error when the checkpoint's names are not the model's (a different model, or a
    dependency that renamed weights); lists a few of the names on each side."""
    saved = {n for n in _saved_names(path) if not n.startswith("_CHECKPOINTABLE") and n != "save_counter/.ATTRIBUTES/VARIABLE_VALUE"}
    expected = _expected_names(objects)
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        def show(names):
            return ", ".join(n.replace("/.ATTRIBUTES/VARIABLE_VALUE", "").replace(".S", "/") for n in names[:5])
        raise UserError(f"checkpoint {path} does not match the model by name: "
                        f"{len(missing)} variables missing from it ({show(missing)}), "
                        f"{len(unexpected)} it has that the model lacks ({show(unexpected)})")


def is_positional(path):
    """Whether ``path`` is a checkpoint of the earlier format (model weights keyed by position)."""
    return any(_POSITIONAL_KEY.match(name) for name in _saved_names(path))


def restore(path, objects):
    """Restores ``objects`` (a nest of dicts of variables / trackables) from ``path``, by name."""
    if is_positional(path):
        raise UserError(f"checkpoint {path} was written by an earlier xling_zoo (weights by position, no "
                        "optimizer names): it can be evaluated, exported and used as a --parent, but not "
                        "resumed; train into a new --workdir or transfer from it")
    _check_names(path, objects)
    tf.train.Checkpoint(**objects).read(path).assert_existing_objects_matched()


def restore_model_weights(model, path):
    """Model weights only (evaluate, translate, export, transfer parents): by name, or by position
    for checkpoints written before names were used. Training and best checkpoints both qualify."""
    if is_positional(path):
        status = tf.train.Checkpoint(model=list(model.weights)).read(path)
    else:
        saved = _saved_names(path)
        weights = {v.path: v for v in model.weights}
        expected = {f"model/{_escape(k)}/.ATTRIBUTES/VARIABLE_VALUE": k for k in weights}
        missing = [k for name, k in expected.items() if name not in saved]
        extra = [n for n in saved if n.startswith("model/") and "seed_generator" not in n and n not in expected]
        if missing or extra:
            raise UserError(f"checkpoint {path} does not fit the model by name: {len(missing)} of its "
                            f"{len(weights)} weights missing ({', '.join(missing[:4])}), {len(extra)} others "
                            f"({', '.join(n.split('/')[1].replace('.S', '/') for n in extra[:4])}): it was written "
                            "by another model or another version of this one")
        status = tf.train.Checkpoint(model=weights).read(path)
    status.expect_partial()
    status.assert_existing_objects_matched()


def _escape(name):
    return name.replace(".", "..").replace("/", ".S")


def checkpoint_paths(directory):
    """Checkpoint prefixes in ``directory``, newest first: from the ``checkpoint`` state file, plus
    any ``ckpt-N.index`` it does not list (the state file itself may be the damaged one)."""
    found = {}
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (*_DAMAGE_ERRORS, ValueError):
        state = None
    if state is not None:
        # By name within ``directory``: the state file may hold paths relative to another working
        # directory, or absolute ones of where the run directory was before it was copied.
        for path in state.all_model_checkpoint_paths:
            found[os.path.join(directory, os.path.basename(path))] = None
    for index in tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index")):
        found[index[: -len(".index")]] = None

    def number(path):
        match = re.search(r"ckpt-(\d+)$", path)
        return int(match.group(1)) if match else -1

    return sorted(found, key=number, reverse=True)


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _newest_that_restores(directory, restore_fn, describe):
    for path in checkpoint_paths(directory):
        try:
            restore_fn(path)
            return path
        except _MISMATCH_ERRORS as error:
            raise UserError(f"checkpoint {path} does not fit the model built from its config and tokenizer "
                            f"({_first_line(error)})") from error
        except _DAMAGE_ERRORS as error:
            describe(f"checkpoint {path} is damaged ({type(error).__name__}: {_first_line(error)[:200]}); "
                     "trying the previous one")
    return None


def restore_latest(directory, objects, describe=logging.warning):
    """Restores the newest intact training checkpoint in ``directory`` into ``objects``. Returns its
    path, or None when the directory holds none. A damaged one is reported in one line and skipped;
    one that is intact but does not fit is a UserError (falling back would hide the mistake)."""
    return _newest_that_restores(directory, lambda path: restore(path, objects), describe)


def newest_intact(directory, model, describe=logging.warning):
    """The newest checkpoint in ``directory`` whose model weights restore into ``model`` (which then
    holds them), or None; damaged ones are reported and skipped, as in ``restore_latest``."""
    return _newest_that_restores(directory, lambda path: restore_model_weights(model, path), describe)


class LoopState:
    """The training loop's bookkeeping, saved inside every checkpoint as one JSON string: the
    history of evaluations, the best validation score so far and evaluations since it. Kept with
    the weights so that a resumed run continues exactly where its checkpoint was written."""

    def __init__(self):
        self.variable = tf.Variable("{}", dtype=tf.string, trainable=False, name="loop_state")

    def get(self):
        return json.loads(self.variable.numpy().decode("utf-8"))

    def set(self, value):
        self.variable.assign(json.dumps(value, sort_keys=True))
