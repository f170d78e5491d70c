"""Did early stopping cut runs short? Reads the scored runs of this experiment and counts, per pair
size and kind (scratch / transfer), the early-stopped runs whose validation chrF was still at its
highest at their last evaluation (early stopping ranks by validation BLEU, whose noise can end a run
whose chrF is still rising), and those whose best chrF came after the checkpoint BLEU kept.

    python experiments/child_languages/early_stopping.py --runs_dir=R1,R2,...

Writes early_stopping.json here. Reads metrics.json only; trains nothing.
"""

import collections
import json
import pathlib

from absl import app, flags

HERE = pathlib.Path(__file__).resolve().parent
FLAGS = flags.FLAGS
flags.DEFINE_list("runs_dir", ["runs/child_languages"], "Directories holding the experiment's runs.")


def summarize(runs_dirs):
    groups = collections.defaultdict(lambda: collections.Counter())
    for runs_dir in runs_dirs:
        for workdir in sorted(pathlib.Path(runs_dir).glob("*-seed*")):
            path = workdir / "metrics.json"
            metrics = json.loads(path.read_text()) if path.exists() else {}
            history = metrics.get("history") or []
            if not history or not (metrics.get("stop_reason") or "").startswith("early stopping"):
                continue
            size = workdir.name.split("-")[-3]
            kind = "scratch" if "-scratch-" in workdir.name else "transfer"
            best_chrf = max(history, key=lambda h: h["validation_chrf"])
            group = groups[f"{size} pairs, {kind}"]
            group["early_stopped"] += 1
            group["chrf_highest_at_the_last_evaluation"] += best_chrf["step"] == history[-1]["step"]
            group["chrf_best_after_the_kept_checkpoint"] += best_chrf["step"] > metrics["best_step"]
    return {name: dict(counts) for name, counts in sorted(groups.items())}


def main(argv):
    del argv
    summary = summarize(FLAGS.runs_dir)
    for name, counts in summary.items():
        print(f"{name}: {counts['chrf_highest_at_the_last_evaluation']} of {counts['early_stopped']} early-stopped "
              f"runs had their highest validation chrF at the last evaluation; "
              f"{counts['chrf_best_after_the_kept_checkpoint']} after the checkpoint kept (best BLEU)")
    (HERE / "early_stopping.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
