"""How much does an en-de parent help en-nl with 1k, 2k, 5k or all training pairs?

    python experiments/transfer_de_nl/run.py            # the whole experiment, resumable
    python experiments/transfer_de_nl/run.py --report   # only rewrite results.md / the plot

For each model and child size, three children get the same number of updates and are scored on
the en-nl test set with greedy decoding:
  scratch          python -m xling_zoo.train --pair=en-nl (its own vocabulary)
  transfer_parent  python -m xling_zoo.transfer --vocab=parent (the parent's vocabulary + <2nl>)
  transfer_child   python -m xling_zoo.transfer --vocab=child  (a new vocabulary, rows remapped)
Run directories go under --runs_dir; a finished (evaluated) run is reused on a rerun.
"""

import json
import os
import pathlib
import platform
import sys
import time

from absl import flags

HERE = pathlib.Path(__file__).resolve().parent

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lstm_seq2seq"], "Registered single-source seq2seq models to compare.")
flags.DEFINE_list("configs", ["transformer=configs/transformer_tiny.py"],
                  "MODEL=CONFIG_FILE: the config of that model's parent and scratch children (default: "
                  "configs/<model>.py). The CPU-sized transformer by default.")
flags.DEFINE_string("parents", "runs", "Parent runs are <parents>/<model>-en-de (trained with the default "
                    "config when missing).")
flags.DEFINE_string("runs_dir", "runs/transfer_de_nl", "Where the child runs go.")
flags.DEFINE_list("sizes", ["1000", "2000", "5000", "0"], "Child training pairs (0 = all).")
flags.DEFINE_integer("steps", 300, "Updates per child run (the same for every condition and size).")
flags.DEFINE_float("budget_minutes", 0.0, "If > 0, train every child to convergence instead of --steps updates: "
                   "validation every --eval_every updates, early stopping (the config's patience), at most "
                   "this many minutes of training.")
flags.DEFINE_integer("eval_every", 100, "Updates between validations when --budget_minutes > 0.")
flags.DEFINE_list("conditions", ["scratch", "transfer_parent", "transfer_child"], "Which children to train.")
flags.DEFINE_float("transferred_lr_multiplier", 1.0, "Learning-rate factor of the transferred weights.")
flags.DEFINE_multi_string("set", [], "Extra config overrides for every child run (key=value).")
flags.DEFINE_string("tag", "", "Suffix of the run directories and result files (for side experiments).")
flags.DEFINE_bool("report", False, "Only rewrite results.md and the plot from results.json.")

CORPUS, PARENT_PAIR, CHILD_PAIR = "builtin", "en-de", "en-nl"
LABELS = {"scratch": "scratch", "transfer_parent": "transfer, parent vocab",
          "transfer_child": "transfer, child vocab"}


def child_vocab_size(size, parent_vocab_size):
    """A vocabulary the child's own data can fill: SentencePiece cannot make 4k pieces out of 1k
    short UI strings, and small data wants small vocabularies anyway."""
    return parent_vocab_size if size == 0 or size >= 5000 else min(parent_vocab_size, size)


def child_overrides(steps):
    if FLAGS.budget_minutes:
        # To convergence: the same validation interval for every size (an epoch of 1k pairs is 8
        # updates), the config's early-stopping patience, a clock, and epochs enough never to bind.
        return ["train.steps=0", "train.epochs=1000", f"train.eval_every_steps={FLAGS.eval_every}",
                f"train.max_minutes={FLAGS.budget_minutes}", "eval.validation_bleu_examples=200", *FLAGS.set]
    # Two evaluations per run (the better is kept), no early stop and no clock: the same number
    # of updates for every child. 200 validation sentences keep evaluation cheap.
    return [f"train.steps={steps}", f"train.eval_every_steps={steps // 2}", "train.early_stopping_patience=0",
            "train.max_minutes=0.0", "eval.validation_bleu_examples=200", *FLAGS.set]


def training_rule():
    """How long each child trained, in words (report and plot)."""
    if FLAGS.budget_minutes:
        return (f"trained to convergence (validation every {FLAGS.eval_every} updates, early stopping, "
                f"at most {FLAGS.budget_minutes:g} minutes)")
    return f"after {FLAGS.steps} updates per child"


def is_done(metrics):
    """A scored run of this experiment's training rule (else it is trained again)."""
    if "bleu" not in metrics:
        return False
    if FLAGS.budget_minutes:
        return metrics.get("experiment_budget_minutes") == FLAGS.budget_minutes
    return metrics.get("step") == FLAGS.steps


def config_file(model):
    """The config file of this model's parent and scratch children, or None for configs/<model>.py."""
    from xling_zoo.errors import UserError

    if any("=" not in item for item in FLAGS.configs):
        raise UserError(f"--configs takes MODEL=CONFIG_FILE items, got {FLAGS.configs}")
    files = dict(item.split("=", 1) for item in FLAGS.configs)
    return files.get(model)


def config_flag(model):
    return f" --config={config_file(model)}" if config_file(model) else ""


def ensure_parent(model):
    from xling_zoo import config as config_lib
    from xling_zoo import trainer, workdir as workdir_lib

    parent = pathlib.Path(FLAGS.parents) / f"{model}-{PARENT_PAIR}"
    if workdir_lib.latest_checkpoint(parent) is None:
        print(f"== Training the parent {parent} with {config_file(model) or 'the default config'}")
        config = config_lib.load_config(model, config_file(model),
                                        overrides=[f"corpus={CORPUS}", f"pair={PARENT_PAIR}"])
        trainer.train_and_evaluate(config, parent)
    requested = config_lib.load_config(model, config_file(model)).model.to_dict()
    if workdir_lib.load_config(parent).model.to_dict() != requested:
        from xling_zoo.errors import UserError

        raise UserError(f"{parent} was trained with another model config than {config_file(model) or 'the default'}; "
                        "move it away or pass --parents")
    metrics = workdir_lib.read_json(parent / workdir_lib.METRICS_FILE, {})
    if "bleu" not in metrics:
        from xling_zoo.evaluate import evaluate_run

        evaluate_run(parent, split="test", beam_size=1)  # Merged into metrics.json with the step.
        metrics = workdir_lib.read_json(parent / workdir_lib.METRICS_FILE, {})
    return parent, metrics


def check_no_test_leak(parent_config):
    """The parent never saw an English sentence of the child's test set (the hash split promises it)."""
    from xling_zoo.data import corpus

    data_dir = parent_config.data_dir or None
    parent_sources = {e["source"] for e in corpus.read_split(parent_config.corpus, parent_config.pair, "train",
                                                             data_dir=data_dir)}
    test = corpus.read_split(CORPUS, CHILD_PAIR, "test", data_dir=data_dir)
    leaked = [e["source"] for e in test if e["source"] in parent_sources]
    assert not leaked, f"{len(leaked)} child test sources are in the parent's training data, e.g. {leaked[:3]}"
    return {"parent_train_sources": len(parent_sources), "child_test_sentences": len(test), "overlap": 0}


def child_flags(model, condition, size, parent, parent_config, run_dir):
    """The command line that trains this child (recorded in results.json), and its overrides."""
    vocab_size = child_vocab_size(size, parent_config.tokenizer.vocab_size)
    overrides = child_overrides(FLAGS.steps)
    if condition == "scratch" or condition == "transfer_child":
        overrides = [f"tokenizer.vocab_size={vocab_size}", *overrides]
    sets = " ".join(f"--set={o}" for o in overrides)
    if condition == "scratch":
        return (f"python -m xling_zoo.train --model={model}{config_flag(model)} --corpus={CORPUS} --pair={CHILD_PAIR} "
                f"--max_train_examples={size} --workdir={run_dir} {sets}"), overrides
    return (f"python -m xling_zoo.transfer --parent={parent} --corpus={CORPUS} --pair={CHILD_PAIR} "
            f"--max_train_examples={size} --workdir={run_dir} --vocab={condition.split('_')[1]} "
            f"--transferred_lr_multiplier={FLAGS.transferred_lr_multiplier} {sets}"), overrides


def train_child(model, condition, size, parent, parent_config, run_dir):
    from xling_zoo import config as config_lib
    from xling_zoo import trainer, transfer

    _, overrides = child_flags(model, condition, size, parent, parent_config, run_dir)
    if condition == "scratch":
        config = config_lib.load_config(model, config_file(model), overrides=[
            f"corpus={CORPUS}", f"pair={CHILD_PAIR}", f"max_train_examples={size}", *overrides])
        trainer.train_and_evaluate(config, run_dir)
    else:
        transfer.transfer(parent, run_dir, CHILD_PAIR, corpus_spec=CORPUS, max_train_examples=size,
                          vocab=condition.split("_")[1],
                          transferred_lr_multiplier=FLAGS.transferred_lr_multiplier, overrides=overrides)


def run_child(model, condition, size, parent, parent_config):
    from xling_zoo import workdir as workdir_lib
    from xling_zoo.evaluate import evaluate_run

    name = f"{condition}-{size or 'all'}{FLAGS.tag}"
    run_dir = pathlib.Path(FLAGS.runs_dir) / model / name
    metrics = workdir_lib.read_json(run_dir / workdir_lib.METRICS_FILE, {})
    command, _ = child_flags(model, condition, size, parent, parent_config, run_dir)
    if not is_done(metrics):
        print(f"== {model} {name}")
        start = time.time()
        train_child(model, condition, size, parent, parent_config, run_dir)
        train_seconds = time.time() - start
        evaluate_run(run_dir, split="test", beam_size=1)
        metrics = workdir_lib.update_metrics(run_dir, {"experiment_seconds": round(train_seconds, 1),
                                                       "experiment_budget_minutes": FLAGS.budget_minutes})
    tokenizers = json.loads((run_dir / "tokenizer" / "tokenizers.json").read_text())
    return {"model": model, "condition": condition, "size": size,
            "train_examples": metrics["data"]["train"]["examples"], "steps": metrics["step"],
            "vocab_size": tokenizers["vocab_size"]["target"], "bleu": metrics["bleu"], "chrf": metrics["chrf"],
            "best_validation_bleu": metrics["best_validation_bleu"], "test_examples": metrics["examples"],
            "copy_source_bleu": metrics["copy_source"]["bleu"], "copy_source_chrf": metrics["copy_source"]["chrf"],
            "train_seconds": metrics.get("experiment_seconds"), "run_dir": str(run_dir), "command": command}


def write_report(results):
    rows = results["runs"]
    lines = ["| model | child pairs | " + " | ".join(LABELS[c] for c in FLAGS.conditions) + " |",
             "|---|---:|" + "---:|" * len(FLAGS.conditions)]
    for model in FLAGS.models:
        for size in [int(s) for s in FLAGS.sizes]:
            cells = []
            for condition in FLAGS.conditions:
                run = next((r for r in rows if (r["model"], r["condition"], r["size"]) == (model, condition, size)),
                           None)
                stopped = f" (stopped at {run['steps']:,})" if run and FLAGS.budget_minutes else ""
                cells.append(f"{run['bleu']:.1f} / {run['chrf']:.1f}{stopped}" if run else "-")
            examples = next((r["train_examples"] for r in rows if (r["model"], r["size"]) == (model, size)), size)
            lines.append(f"| {model} | {examples:,} | " + " | ".join(cells) + " |")
    parents = ", ".join(f"{m}: BLEU {p['test_bleu']:.1f} / chrF {p['test_chrf']:.1f} on en-de test "
                        f"(beam {p['beam_size']}, {p['steps']} updates)"
                        for m, p in results["parents"].items())
    copy = next((f" Copying the English source scores {r['copy_source_bleu']:.1f} / {r['copy_source_chrf']:.1f}."
                 for r in rows if "copy_source_bleu" in r), "")
    text = (f"Test BLEU / chrF (sacreBLEU, greedy) on the {results['child_test_sentences']} en-nl test "
            f"sentences, {training_rule()}.{copy} Parents: {parents}.\n\n" +
            "\n".join(lines) + "\n")
    (HERE / f"results{FLAGS.tag}.md").write_text(text)
    print(text)

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    # One panel per model, same axes: the conditions compare within a panel, the models across.
    figure, axes = pyplot.subplots(1, len(FLAGS.models), figsize=(4.2 * len(FLAGS.models) + 1, 4.2),
                                   sharey=True, squeeze=False)
    styles = {"scratch": ("o--", "C0"), "transfer_parent": ("s-", "C1"), "transfer_child": ("^-", "C2")}
    # The floor every system must clear: many UI strings are names, numbers and placeholders.
    copy = next((r["copy_source_bleu"] for r in rows if "copy_source_bleu" in r), None)
    for axis, model in zip(axes[0], FLAGS.models):
        for condition in FLAGS.conditions:
            points = sorted((r["train_examples"], r["bleu"]) for r in rows
                            if r["model"] == model and r["condition"] == condition)
            if points:
                style, color = styles[condition]
                axis.plot(*zip(*points), style, color=color, label=LABELS[condition])
        if copy is not None:
            axis.axhline(copy, color="gray", linestyle=":", label="copy the English source")
        axis.set_xscale("log")
        axis.set_xlabel("en-nl training pairs")
        axis.set_title(model)
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test BLEU (greedy)")
    axes[0][-1].legend(loc="lower right", fontsize="small")
    figure.suptitle(f"en-de parent -> en-nl child, {training_rule()}", fontsize="medium")
    figure.tight_layout()
    figure.savefig(HERE / f"transfer_bleu{FLAGS.tag}.png", dpi=120)


def main(argv):
    from xling_zoo import workdir as workdir_lib

    from xling_zoo.errors import UserError

    if FLAGS.budget_minutes < 0 or FLAGS.eval_every < 1:
        raise UserError(f"--budget_minutes must be >= 0 (0 = fixed --steps) and --eval_every >= 1, got "
                        f"{FLAGS.budget_minutes} and {FLAGS.eval_every}")
    results_path = HERE / f"results{FLAGS.tag}.json"
    if FLAGS.report:
        write_report(json.loads(results_path.read_text()))
        return
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU; "
                          f"python {platform.python_version()}",
               "command": " ".join([sys.executable.split("/")[-1]] + sys.argv), "steps": FLAGS.steps,
               "budget_minutes": FLAGS.budget_minutes, "eval_every": FLAGS.eval_every,
               "transferred_lr_multiplier": FLAGS.transferred_lr_multiplier, "overrides": FLAGS.set,
               "parents": {}, "runs": []}
    for model in FLAGS.models:
        parent, parent_metrics = ensure_parent(model)
        parent_config = workdir_lib.load_config(parent)
        results.update(check_no_test_leak(parent_config))
        results["parents"][model] = {"run_dir": str(parent),
                                     "config": config_file(model) or f"configs/{model}.py", "test_bleu": parent_metrics["bleu"],
                                     "test_chrf": parent_metrics["chrf"], "steps": parent_metrics.get("step"),
                                     "beam_size": parent_metrics["decoding"]["beam_size"]}
        for size in [int(s) for s in FLAGS.sizes]:
            for condition in FLAGS.conditions:
                results["runs"].append(run_child(model, condition, size, parent, parent_config))
                workdir_lib.write_atomically(results_path, json.dumps(results, indent=2) + "\n")
    workdir_lib.write_atomically(results_path, json.dumps(results, indent=2) + "\n")
    write_report(results)


if __name__ == "__main__":
    from xling_zoo import cli

    cli.run(main)
