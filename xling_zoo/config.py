"""Run configs: loading ``configs/<model>.py``, command-line overrides, and the copy in a run dir.

A config is an ``ml_collections.ConfigDict`` returned by ``get_config()`` in a Python file. The
resolved config is written to ``<workdir>/config.json``; that copy is what evaluate, translate,
transfer and export read back.
"""

import ast
import importlib.util
import json
import pathlib
import sys

import ml_collections

from xling_zoo.errors import UserError

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"

# Sections whose change makes existing checkpoints or tokenizers unusable: a run dir made with
# other values here is refused rather than silently overwritten or mixed.
ARCHITECTURE_KEYS = ("model_name", "model", "tokenizer", "pair", "language", "data.target_language_tag")


def config_path_for(model_name):
    return CONFIG_DIR / f"{model_name}.py"


def load_config_file(path, function="get_config"):
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"xling_zoo_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    # Config files share `configs/common.py` through a plain `import common`.
    sys.path.insert(0, str(CONFIG_DIR))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(CONFIG_DIR))
    if not hasattr(module, function):
        raise UserError(f"config file {path} has no {function}() function")
    return getattr(module, function)()


def parse_value(text):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, '(8, 16)' -> (8, 16), anything else -> the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(config, assignment):
    """Applies one ``dotted.key=value`` override in place, with the type of the existing field."""
    if "=" not in assignment:
        raise UserError(f"override {assignment!r} is not of the form key=value (e.g. train.steps=100)")
    key, text = assignment.split("=", 1)
    key = key.strip()
    *parents, leaf = key.split(".")
    node = config
    for depth, part in enumerate(parents):
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            where = ".".join(parents[:depth]) or "the config"
            raise UserError(f"override {assignment!r}: {where} has no section {part!r}; "
                            f"sections: {', '.join(sorted(k for k, v in node.items() if isinstance(v, ml_collections.ConfigDict)))}")
        node = node[part]
    if leaf not in node:
        raise UserError(f"override {assignment!r}: unknown key {key!r}; valid keys here: {', '.join(sorted(node.keys()))}")
    old = node[leaf]
    value = parse_value(text)
    if isinstance(old, bool):
        if not isinstance(value, bool):
            raise UserError(f"override {assignment!r}: {key} takes true or false, got {text!r}")
    elif isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(old, tuple) and isinstance(value, (list, tuple)):
        value = tuple(value)
    elif isinstance(old, str):
        value = text
    elif old is not None and type(value) is not type(old):
        raise UserError(f"override {assignment!r}: {key} takes a {type(old).__name__} (now {old!r}), got {text!r}")
    node[leaf] = value


def load_config(model_name, config_file=None, overrides=()):
    """The config for ``model_name``: its file under configs/ (or ``config_file``), then overrides."""
    from xling_zoo.registry import get_model

    get_model(model_name)  # An unknown name is an error listing the registered ones.
    path = config_file or config_path_for(model_name)
    config = load_config_file(path)
    if config.get("model_name") and config.model_name != model_name:
        raise UserError(f"--config={path} is a {config.model_name} config, not a {model_name} one: give "
                        f"--model={config.model_name}, or a config of {model_name} (configs/{model_name}*.py)")
    config.model_name = model_name
    for assignment in overrides:
        apply_override(config, assignment)
    if config.get("language"):
        config.language = config.language.strip().lower()
    if config.get("language") and not config.pair and config.language != "en":
        # The built-in corpus and most others pair every language with English.
        config.pair = f"en-{config.language}"
    return config



# (dotted key, test, what it must be): the values a run cannot start with.
_RANGES = (
    ("train.learning_rate", lambda v: v > 0, "> 0"),
    ("train.steps", lambda v: v >= 0, ">= 0 (0 = train for train.epochs)"),
    ("train.epochs", lambda v: v >= 1, ">= 1"),
    ("train.warmup_steps", lambda v: v >= 0, ">= 0"),
    ("train.max_minutes", lambda v: v >= 0, ">= 0 (0 = no time budget)"),
    ("train.clipnorm", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("train.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.eval_every_steps", lambda v: v >= 0, ">= 0 (0 = once per epoch)"),
    ("train.early_stopping_patience", lambda v: v >= 0, ">= 0 (0 = never stop early)"),
    ("train.early_stopping_patience_steps", lambda v: v >= 0, ">= 0 (0 = count evaluations)"),
    ("train.min_steps_before_early_stopping", lambda v: v >= 0, ">= 0"),
    ("train.keep_checkpoints", lambda v: v >= 1, ">= 1"),
    ("train.checkpoint_every_steps", lambda v: v >= 0, ">= 0 (0 = only at evaluations)"),
    ("train.checkpoint_every_minutes", lambda v: v >= 0, ">= 0 (0 = only at evaluations)"),
    ("max_train_examples", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("tokenizer.vocab_size", lambda v: v >= 16, ">= 16"),
    ("data.tokens_per_batch", lambda v: v >= 1, ">= 1"),
    ("data.shuffle_buffer", lambda v: v >= 1, ">= 1"),
    ("eval.beam_size", lambda v: v >= 1, ">= 1 (1 = greedy)"),
    ("eval.max_decode_length", lambda v: v >= 1, ">= 1"),
    ("eval.decode_length_ratio", lambda v: v >= 0, ">= 0 (0 = max_decode_length for every sentence)"),
    ("eval.decode_length_offset", lambda v: v >= 0, ">= 0"),
    ("eval.batch_size", lambda v: v >= 1, ">= 1"),
    ("eval.validation_bleu_examples", lambda v: v >= 0, ">= 0 (0 = all)"),
)


def validate(config):
    """Raises one UserError naming the first value a run cannot start with. Checked before anything
    is written, so that a bad flag never leaves a run directory behind."""
    problems = []
    for key, test, expected in _RANGES:
        value = _lookup(config, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not test(value):
            problems.append(f"{key}={value!r} must be {expected}")
    metric = _lookup(config, "train.selection_metric")
    allowed = _selection_metrics(config)
    if metric is not None and metric not in allowed:
        problems.append(f"train.selection_metric={metric!r} must be one of {', '.join(allowed)}")
    problems += _language_problems(config) or (_pair_problems(config) + _mix_problems(config))
    # Every dropout rate of the model section and its sections (dropout, attention_dropout,
    # discriminator_dropout, transformer.dropout...).
    for key, value in _leaves(config.get("model") or {}, "model."):
        if "dropout" in key.rsplit(".", 1)[-1] and isinstance(value, (int, float)) and not 0 <= value < 1:
            problems.append(f"{key}={value!r} must be in [0, 1)")
    if problems:
        raise UserError("; ".join(problems) + " (set with --set=KEY=VALUE)")


def _leaves(section, prefix):
    """(dotted key, value) of every field of a config section and of its sections."""
    for key, value in section.items():
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _selection_metrics(config):
    """The validation figures that can pick the model's best checkpoint (``Task.selection_metrics``)."""
    from xling_zoo.registry import get_model

    try:
        return list(get_model(config.model_name).selection_metrics)
    except (UserError, AttributeError):
        return []  # An unknown model is reported where the model is built.


def _language_problems(config):
    """A monolingual model needs ``language`` (one side of ``pair``); a translator must not have one."""
    from xling_zoo.registry import get_model

    language = config.get("language", "")
    try:
        monolingual = get_model(config.model_name).task_type == "lm"
    except UserError:
        return []  # An unknown model is reported where the model is built.
    if not monolingual:
        if language:
            return [f"language={language!r} is the one language of a language model (--model=lm), but "
                    f"{config.model_name} translates: give it a pair (--pair=SRC-TGT) and no --language"]
        return []
    if not language:
        return [f"{config.model_name} models one language: name it (--language=nl reads the Dutch side of the "
                f"corpus's en-nl pair; --pair picks another pair{', now ' + config.pair if config.pair else ''})"]
    if not config.pair:
        return [f"language={language!r}: name the pair whose {language} side to read, e.g. --pair={language}-de"]
    from xling_zoo.data.corpus import Pair  # Late: corpus imports TFDS.

    try:
        pair = Pair.parse(config.pair)
    except UserError as error:
        return [f"pair={config.pair!r}: {error}"]
    if pair.is_multi_source or pair.is_multi_target:
        return [f"pair={pair}: a language model reads one side of a single pair (e.g. en-{language})"]
    if language not in pair.source_languages + pair.target_languages:
        return [f"language={language!r} is not a side of pair={pair}: a language model reads one side of the "
                f"pair's corpus (e.g. --pair={pair.source_languages[0]}-{language})"]
    if config.mix.pair and config.mix.ratio:
        return ["mix.pair: mixed fine-tuning mixes translation pairs; a language model takes none"]
    return []


def _pair_problems(config):
    from xling_zoo.data.corpus import Pair  # Late: corpus imports TFDS.

    try:
        pair = Pair.parse(config.pair)
    except UserError as error:
        return [f"pair={config.pair!r}: {error}"]
    if pair.is_multi_target and not config.data.target_language_tag:
        return [f"pair={pair} has several target languages: it needs data.target_language_tag=True (the tag "
                "tells the model which language to write)"]
    return []


def _mix_problems(config):
    mix = config.get("mix")
    if not mix:
        return []
    ratio, mix_pair = mix.get("ratio", 0.0), mix.get("pair", "")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        return [f"mix.ratio={ratio!r} must be in [0, 1): the share of each pass taken from mix.pair "
                "(1 would leave no example of the run's own pair)"]
    if ratio > 0 and not mix_pair:
        return [f"mix.ratio={ratio} needs mix.pair, the pair whose examples are mixed in (e.g. --set=mix.pair=en-de)"]
    if mix_pair:
        from xling_zoo.data.corpus import Pair  # Late: corpus imports TFDS.

        try:
            mixed, own = Pair.parse(mix_pair), Pair.parse(config.pair)
        except UserError as error:
            return [f"mix.pair={mix_pair!r}: {error}"]
        if mixed == own and (mix.get("corpus") or config.corpus) == config.corpus:
            return [f"mix.pair={mix_pair} is the run's own pair and corpus: there is nothing to mix in"]
        if set(mixed.target_languages) != set(own.target_languages) and not config.data.target_language_tag:
            return [f"mix.pair={mix_pair} translates into {', '.join(mixed.target_languages)}, the run into "
                    f"{', '.join(own.target_languages)}: mixing target languages needs data.target_language_tag=True"]
    return []


def with_defaults(config):
    """``config`` (e.g. read from an older run's config.json) with every field of configs/common.py
    that it lacks, at its default: a run made before a field existed still loads, resumes and
    transfers."""

    def fill(node, default):
        for key, value in default.items():
            if key not in node:
                node[key] = value
            elif isinstance(value, ml_collections.ConfigDict) and isinstance(node[key], ml_collections.ConfigDict):
                fill(node[key], value)

    fill(config, common_defaults())
    return config


def common_defaults():
    """configs/common.py's config: every field shared by the models, at its default."""
    return load_config_file(CONFIG_DIR / "common.py", function="get_common_config")


def to_json(config):
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def _tuplify(value):
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuplify(v) for k, v in value.items()}
    return value


def from_json(text):
    return ml_collections.ConfigDict(_tuplify(json.loads(text)))


def _lookup(config, dotted):
    node = config
    for part in dotted.split("."):
        if part not in node:
            return None
        node = node[part]
    return node.to_dict() if isinstance(node, ml_collections.ConfigDict) else node


def incompatible_keys(existing, new):
    """Keys in ARCHITECTURE_KEYS whose values differ between two configs (a key one of them lacks,
    from before it existed, counts at its default)."""
    defaults = common_defaults()

    def value(config, key):
        found = _lookup(config, key)
        return _tuplify(_lookup(defaults, key) if found is None else found)

    return [k for k in ARCHITECTURE_KEYS if value(existing, k) != value(new, k)]
