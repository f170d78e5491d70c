"""Train a registered model: ``python -m xling_zoo.train --model=lstm_seq2seq``.

With no other flag it trains on the built-in corpus (en-de) into runs/<model>-<pair>/; rerunning the
same command resumes from the latest checkpoint. A language model reads one language:
``python -m xling_zoo.train --model=lm --language=nl`` (runs/lm-nl/). The loop itself is ``trainer.train_and_evaluate``.
"""

from absl import flags

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)
from xling_zoo import config as config_lib
from xling_zoo.registry import list_models

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lstm_seq2seq", "Registered model name (see --list_models).")
flags.DEFINE_bool("list_models", False, "List the registered models and exit.")
flags.DEFINE_string("config", None, "Config file (default: configs/<model>.py).")
flags.DEFINE_multi_string("set", [], "Config override key=value, repeatable: --set=train.steps=100.")
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<model>-<pair>).")
flags.DEFINE_string("corpus", None, "Corpus spec: builtin | tfds:NAME/CONFIG | tsv:PATH | text:PREFIX.")
flags.DEFINE_string("pair", None, "Language pair SRC-TGT (or SRC1,SRC2-TGT).")
flags.DEFINE_string("language", None, "A language model's (--model=lm) one language: it reads that side of "
                    "--pair's corpus (default en-LANGUAGE).")
flags.DEFINE_string("data_dir", None, "Prepared-data directory (default $XLING_ZOO_DATA_DIR or ~/.cache/xling_zoo).")
flags.DEFINE_integer("max_train_examples", None, "Train on this many pairs only (deterministic subsample).")
flags.DEFINE_integer("steps", None, "Total training steps (overrides epochs).")
flags.DEFINE_integer("epochs", None, "Passes over the training data.")
flags.DEFINE_float("max_minutes", None, "Wall-clock training budget in minutes (0 = none).")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_enum("strategy", None, ["default", "mirrored", "multi_worker", "tpu"], "tf.distribute strategy.")
flags.DEFINE_enum("mixed_precision", None, ["float32", "mixed_bfloat16", "mixed_float16"], "Precision policy.")
flags.DEFINE_bool("jit_compile", None, "XLA-compile the training step.")
flags.DEFINE_bool("deterministic", None, "Deterministic ops: the same command gives the same weights, "
                  "and a killed run resumes to the weights of an uninterrupted one.")
flags.DEFINE_bool("skip_bad_lines", None, "Skip (and count) malformed lines of tsv:/text: corpora.")
cli.define_thread_flags()

# Flags that are shortcuts for config fields.
FLAG_TO_CONFIG = {
    "corpus": "corpus", "pair": "pair", "language": "language", "data_dir": "data_dir", "max_train_examples": "max_train_examples",
    "steps": "train.steps", "epochs": "train.epochs", "max_minutes": "train.max_minutes", "seed": "train.seed",
    "strategy": "train.strategy", "mixed_precision": "train.mixed_precision", "jit_compile": "train.jit_compile",
    "deterministic": "train.deterministic", "skip_bad_lines": "skip_bad_lines",
}


def config_from_flags():
    overrides = [f"{key}={getattr(FLAGS, name)}" for name, key in FLAG_TO_CONFIG.items()
                 if getattr(FLAGS, name) is not None]
    return config_lib.load_config(FLAGS.model, FLAGS.config, overrides + list(FLAGS.set))


def default_workdir(config):
    """runs/<model>-<pair> (runs/lm-<language> for a language model of en-<language>'s side)."""
    language = config.get("language")
    if language and config.pair == f"en-{language}":
        return f"runs/{config.model_name}-{language}"
    name = f"{language}-" if language else ""
    return f"runs/{config.model_name}-{name}{config.pair.replace(',', '+')}"


def main(argv):
    if FLAGS.list_models:
        print("\n".join(list_models()))
        return
    config = config_from_flags()
    workdir = FLAGS.workdir or default_workdir(config)
    from xling_zoo import trainer  # Imported late: --list_models and flag errors stay fast.

    trainer.train_and_evaluate(config, workdir)
    print(f"Run directory: {workdir}\nNext: python -m xling_zoo.evaluate --workdir={workdir}")


if __name__ == "__main__":
    cli.run(main)
