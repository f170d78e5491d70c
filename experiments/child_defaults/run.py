"""Does the plain transfer command give a child that translates into its own language at 1k pairs?

    taskset -c 1 python experiments/child_defaults/run.py --parent=runs/lstm_seq2seq-en-de
    python experiments/child_defaults/run.py --report     # only rewrite results.md from results.json

One parent, one child pair no other experiment uses, N training pairs. Three child runs, each scored
on the child's test split with greedy decoding (`python -m xling_zoo.evaluate`), beside the copy floor:
  old       the plain command as it was: the parent's schedule (validation once per epoch, patience 3
            evaluations, the parent's warm-up and update count, best checkpoint by validation BLEU),
            reproduced with --set
  plain     the plain command (the child schedule of xling_zoo/transfer.py)
  selectors the child schedule with early stopping off for --horizon updates and every evaluation's
            checkpoint kept; for each selection metric (bleu, chrf, loss) the checkpoint that metric
            would have kept, and where its early stopping would have ended the run, is scored on test
Run directories go under --runs_dir; a scored run is reused on a rerun.
"""

import json
import os
import pathlib
import subprocess
import sys

from absl import app, flags

HERE = pathlib.Path(__file__).resolve().parent

FLAGS = flags.FLAGS
flags.DEFINE_string("parent", "runs/lstm_seq2seq-en-de", "The parent run (python -m xling_zoo.train).")
flags.DEFINE_string("pair", "en-da", "The child pair (no other experiment uses it).")
flags.DEFINE_integer("size", 1000, "Child training pairs.")
flags.DEFINE_string("runs_dir", "runs/child_defaults", "Where the child runs go.")
flags.DEFINE_integer("horizon", 1500, "Updates of the selectors run (no early stopping).")
flags.DEFINE_list("runs", ["old", "plain", "selectors"], "Which runs to make.")
flags.DEFINE_bool("report", False, "Only rewrite results.md from results.json.")

# The parent's schedule as the plain command inherited it before the child schedule existed.
OLD = ["train.eval_every_steps=0", "train.early_stopping_patience=3", "train.early_stopping_patience_steps=0",
       "train.min_steps_before_early_stopping=0", "train.selection_metric=bleu"]
SELECTORS = ("bleu", "chrf", "loss")


def base_command(workdir):
    return [sys.executable, "-m", "xling_zoo.transfer", f"--parent={FLAGS.parent}", f"--pair={FLAGS.pair}",
            f"--max_train_examples={FLAGS.size}", f"--workdir={workdir}"]


def run(command):
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def scored(workdir):
    from xling_zoo import workdir as workdir_lib

    metrics = workdir_lib.read_json(os.path.join(workdir, workdir_lib.METRICS_FILE), {})
    return metrics if "bleu" in metrics else None


def old_overrides():
    """OLD plus the parent's own warm-up and update count (the child schedule replaces both)."""
    parent = json.loads(pathlib.Path(FLAGS.parent, "config.json").read_text())["train"]
    return OLD + [f"train.warmup_steps={parent['warmup_steps']}", f"train.steps={parent['steps']}",
                  f"train.epochs={parent['epochs']}"]


def train_and_score(name, extra):
    workdir = os.path.join(FLAGS.runs_dir, f"{FLAGS.pair}-{FLAGS.size}-{name}")
    command = base_command(workdir) + [f"--set={o}" for o in extra]
    if scored(workdir) is None:
        run(command)
        run([sys.executable, "-m", "xling_zoo.evaluate", f"--workdir={workdir}"])
    metrics = scored(workdir)
    transfer = json.loads(pathlib.Path(workdir, "transfer.json").read_text())
    return {"command": " ".join(command[2:]), "workdir": workdir, "bleu": metrics["bleu"], "chrf": metrics["chrf"],
            "copy_source": metrics["copy_source"], "step": metrics["step"], "best_step": metrics.get("best_step"),
            "stop_reason": metrics["stop_reason"], "schedule": transfer["child"].get("schedule"),
            "history": metrics["history"]}


def simulated_stop(history, metric, schedule):
    """(stop step, kept step) of early stopping by ``metric`` under ``schedule`` over ``history``."""
    from xling_zoo.trainer import selection_score

    best = best_step = None
    for record in history:
        score = selection_score(record, metric)
        if best is None or score > best:
            best, best_step = score, record["step"]
        if (record["step"] >= schedule["min_steps_before_early_stopping"]
                and record["step"] - best_step >= schedule["early_stopping_patience_steps"]):
            return record["step"], best_step
    return history[-1]["step"], best_step


def score_checkpoints(workdir, steps):
    """Test BLEU / chrF of the latest-checkpoint weights saved at each of ``steps``."""
    from xling_zoo import checkpoints
    from xling_zoo import workdir as workdir_lib
    from xling_zoo.data import corpus
    from xling_zoo.decode import Translator
    from xling_zoo.evaluate import score

    run_ = workdir_lib.load_run(workdir, which="latest")
    examples = corpus.read_split(run_.config.corpus, run_.pair, "test", data_dir=run_.config.data_dir or None)
    sources, references = [e["source"] for e in examples], [e["target"] for e in examples]
    out = {}
    for step in sorted(set(steps)):
        checkpoints.restore_model_weights(run_.model, os.path.join(workdir, workdir_lib.CHECKPOINT_DIR, f"ckpt-{step}"))
        hypotheses = Translator(run_.model, run_.tokenizers, run_.config, beam_size=1).translate_all(sources)
        result = score(hypotheses, references, run_.pair.target_language)
        out[step] = {"bleu": result["bleu"], "chrf": result["chrf"], "example": hypotheses[0]}
        print(f"  step {step}: test BLEU {result['bleu']}, chrF {result['chrf']}", flush=True)
    return out


def selectors_run(plain):
    name = "selectors"
    workdir = os.path.join(FLAGS.runs_dir, f"{FLAGS.pair}-{FLAGS.size}-{name}")
    extra = [f"train.steps={FLAGS.horizon}", "train.early_stopping_patience_steps=0", "train.early_stopping_patience=0",
             "train.keep_checkpoints=1000", "train.checkpoint_every_steps=0", "train.checkpoint_every_minutes=0"]
    command = base_command(workdir) + [f"--set={o}" for o in extra]
    from xling_zoo import workdir as workdir_lib

    metrics = workdir_lib.read_json(os.path.join(workdir, workdir_lib.METRICS_FILE), {})
    if metrics.get("stop_reason") != "finished":
        run(command)
        metrics = workdir_lib.read_json(os.path.join(workdir, workdir_lib.METRICS_FILE), {})
    history, schedule = metrics["history"], plain["schedule"]
    test = score_checkpoints(workdir, [r["step"] for r in history])
    choices = {}
    for metric in SELECTORS:
        stop, kept = simulated_stop(history, metric, schedule)
        choices[metric] = {"stop_step": stop, "kept_step": kept, **test[kept]}
    return {"command": " ".join(command[2:]), "workdir": workdir, "history": history,
            "test_by_step": {str(k): v for k, v in test.items()}, "choices": choices}


def write_report(results):
    lines = [f"# Child defaults: {results['pair']}, {results['size']:,} pairs, parent {results['parent']}", ""]
    floor = results.get("copy_source")
    if floor:
        lines.append(f"Copying the source: BLEU {floor['bleu']} / chrF {floor['chrf']} (test). Greedy decoding.")
        lines.append("")
    lines += ["| run | updates | kept checkpoint | stop reason | test BLEU / chrF |", "|---|---:|---:|---|---:|"]
    for name in ("old", "plain"):
        r = results.get(name)
        if r:
            lines.append(f"| {name} | {r['step']} | {r['best_step']} | {r['stop_reason']} | {r['bleu']} / {r['chrf']} |")
    sel = results.get("selectors")
    if sel:
        lines += ["", f"Selection metrics on one run of {sel['history'][-1]['step']} updates (child schedule, early "
                  "stopping simulated from its evaluations):", "",
                  "| selected by | early stopping would end at | kept checkpoint | test BLEU / chrF |",
                  "|---|---:|---:|---:|"]
        for metric, c in sel["choices"].items():
            lines.append(f"| validation {metric} | {c['stop_step']} | {c['kept_step']} | {c['bleu']} / {c['chrf']} |")
        lines += ["", "| step | validation loss | validation BLEU | validation chrF | test BLEU / chrF |",
                  "|---:|---:|---:|---:|---:|"]
        for record in sel["history"]:
            t = sel["test_by_step"].get(str(record["step"]), {})
            lines.append(f"| {record['step']} | {record['validation_loss']} | {record['validation_bleu']} | "
                         f"{record['validation_chrf']} | {t.get('bleu')} / {t.get('chrf')} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv):
    results_file = HERE / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if not FLAGS.report:
        results.update(pair=FLAGS.pair, size=FLAGS.size, parent=FLAGS.parent)
        if "old" in FLAGS.runs:
            results["old"] = train_and_score("old", old_overrides())
            results["copy_source"] = results["old"]["copy_source"]
        if "plain" in FLAGS.runs:
            results["plain"] = train_and_score("plain", [])
            results["copy_source"] = results["plain"]["copy_source"]
        if "selectors" in FLAGS.runs:
            results["selectors"] = selectors_run(results["plain"])
        results_file.write_text(json.dumps(results, indent=2) + "\n")
    write_report(results)


if __name__ == "__main__":
    app.run(main)
