"""Test BLEU/chrF (greedy and beam 4) of the runs/compare-* runs, plus the copy-source floor.

Run by run.sh after the three training runs; writes results.json (one entry per run, with the steps,
training seconds and stop reason read from the run's metrics.json).
"""

import argparse
import json
import pathlib
import subprocess

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)
from xling_zoo import workdir as workdir_lib
from xling_zoo.evaluate import evaluate_run

RUNS = {
    "lstm_attention": "lstm_seq2seq (default: bidirectional encoder, Luong attention)",
    "lstm_plain": "lstm_seq2seq --set=model.attention=false",
    "transformer": "transformer (configs/transformer.py)",
    "transformer_tiny": "transformer --config=configs/transformer_tiny.py",
    "adversarial": "adversarial --pair=en,nl-de (English and Dutch into German), scored on en-de",
}


def training_summary(workdir):
    metrics = workdir_lib.read_json(pathlib.Path(workdir) / workdir_lib.METRICS_FILE, {})
    history = metrics.get("history", [])
    return {
        "steps": metrics.get("step"),
        "evaluations": len(history),
        "train_seconds_excluding_evaluations": round(sum(h["seconds"] for h in history), 1),
        "stop_reason": metrics.get("stop_reason"),
        "best_validation_bleu": metrics.get("best_validation_bleu"),
        "final_train_loss": history[-1].get("train_loss") if history else None,
        "final_validation_loss": history[-1].get("validation_loss") if history else None,
        "target_tokens_per_second": [h["target_tokens_per_second"] for h in history],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--prefix", default="compare3", help="Runs are <runs_dir>/<prefix>-<name>.")
    parser.add_argument("--max_examples", type=int, default=0, help="Smoke test: first N test sentences.")
    args = parser.parse_args()
    results = {"uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               "runs": {}}
    for name, description in RUNS.items():
        workdir = f"{args.runs_dir}/{args.prefix}-{name}"
        if not pathlib.Path(workdir, workdir_lib.CONFIG_FILE).exists():
            results["runs"][name] = {"description": description, "missing": True}
            continue
        entry = {"description": description, "workdir": workdir, **training_summary(workdir)}
        for beam in (1, 4):
            # evaluate_run rewrites the run's metrics.json test entry; keep each beam's figures here.
            metrics = evaluate_run(workdir, split="test", beam_size=beam,
                                   max_examples=args.max_examples, pair="en-de")
            entry[f"beam{beam}"] = {k: metrics[k] for k in ("bleu", "chrf", "ter")}
            entry[f"beam{beam}"]["decoding_seconds"] = metrics["decoding"]["seconds"]
            entry["checkpoint"] = metrics["checkpoint"]
            results["copy_source"] = metrics["copy_source"]
            results["test_examples"] = metrics["examples"]
            results["signatures"] = metrics["signatures"]
        entry["below_copy_floor"] = {f"beam{b}": entry[f"beam{b}"]["bleu"] < results["copy_source"]["bleu"]
                                     for b in (1, 4)}
        results["runs"][name] = entry
        print(name, json.dumps({k: entry[k] for k in ("steps", "beam1", "beam4")}), flush=True)
    results["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    loads = pathlib.Path(args.output).parent / "loads.txt"
    if loads.exists():
        results["training_loads"] = loads.read_text().splitlines()
    pathlib.Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
