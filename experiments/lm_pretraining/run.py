"""Issue 13 §5: does a language model pretrained on the child's target language help an en-nl child?

    XLING_ZOO_DATA_DIR=... taskset -c 1 python experiments/lm_pretraining/run.py \
        --parent=runs/transformer-en-de --sizes=1000 --seeds=1 --runs_dir=runs/lm_pretraining
    python experiments/lm_pretraining/run.py --report --runs_dir=runs/lm_pretraining

The setting of experiments/transfer_de_nl (an en-de parent, an en-nl child) with a fourth source of
knowledge: Dutch monolingual text, which a low-resource child has more of than parallel text. The
language model reads the Dutch side of the built-in corpus's whole en-nl training split (never a
validation or test sentence: the trainer leaves out training sentences that are also validation or
test sentences, and this script checks that none of the child's test sentences is in its text).
Every run is a user's plain command, nothing tuned:

  lm        python -m xling_zoo.train --model=lm --language=nl                    (once)
  scratch   python -m xling_zoo.train --model=transformer --config=configs/transformer_tiny.py
            --pair=en-nl --max_train_examples=N --seed=S
  lminit    python -m xling_zoo.transfer --parent=LM --model=transformer --config=configs/transformer_tiny.py
            --pair=en-nl --max_train_examples=N --seed=S    (the decoder from the lm, the encoder fresh)
  lmboth    lminit with --encoder_from=LM_EN --set=model.tie_embeddings=false: the encoder from an English
            lm (python -m xling_zoo.train --model=lm --language=en --pair=en-nl, once), as Ramachandran
            et al. initialise both sides; untied, as one embedding cannot hold both models'
  parent    python -m xling_zoo.transfer --parent=PARENT --pair=en-nl --max_train_examples=N --seed=S
            (the plain transfer command from a transformer_tiny en-de parent)

Not run: the parent's translator with the Dutch lm's decoder ("where it fits"): the parent ties its
embeddings, so its encoder, decoder and output layer share one matrix that the lm's decoder layers
were not trained on.

each scored with ``python -m xling_zoo.evaluate`` (greedy, the en-nl test split), beside the copy floor.
A scored run is reused on a rerun; ``--report`` writes results.json and results.md.
"""

import collections
import json
import os
import pathlib
import statistics
import subprocess
import sys

from absl import app, flags

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TINY = str(ROOT / "configs" / "transformer_tiny.py")

FLAGS = flags.FLAGS
flags.DEFINE_string("parent", None, "A transformer_tiny en-de run: the parent of the 'parent' setup.")
flags.DEFINE_string("language", "nl", "The child's target language (the child is en-LANGUAGE).")
flags.DEFINE_list("sizes", ["1000"], "Child training pairs.")
flags.DEFINE_list("seeds", ["1"], "Seeds (train.seed of every child).")
flags.DEFINE_list("setups", ["scratch", "lminit", "parent"], "Which children to make (also: lmboth).")
flags.DEFINE_string("runs_dir", "runs/lm_pretraining", "Where the runs go.")
flags.DEFINE_bool("report", False, "Only gather the scored runs under --runs_dir into results.*.")


def run(arguments):
    print("$ python", " ".join(arguments), flush=True)
    subprocess.run([sys.executable, *arguments], check=True, cwd=ROOT)


def metrics_of(workdir):
    path = pathlib.Path(workdir, "metrics.json")
    return json.loads(path.read_text()) if path.exists() else {}


def language_model(language):
    """Trains (or reuses) the lm of one side of the child's pair, scores it on its test split, and
    checks its text."""
    workdir = os.path.join(FLAGS.runs_dir, f"lm-{language}")
    arguments = ["-m", "xling_zoo.train", "--model=lm", f"--language={language}", f"--pair=en-{FLAGS.language}",
                 f"--workdir={workdir}"]
    if "perplexity" not in metrics_of(workdir):
        run(arguments)
        run(["-m", "xling_zoo.evaluate", f"--workdir={workdir}"])
    pathlib.Path(workdir, "command.txt").write_text("python " + " ".join(arguments) + "\n")
    check_no_test_sentence_in(workdir)
    return workdir


def check_no_test_sentence_in(lm_workdir):
    """Asserts that no sentence of the child's validation or test split is in the lm's training text."""
    sys.path.insert(0, str(ROOT))
    from xling_zoo import trainer
    from xling_zoo import workdir as workdir_lib
    from xling_zoo.data import corpus

    config = workdir_lib.load_config(lm_workdir)
    side = "source" if config.language == "en" else "target"
    texts = {example[side] for example in trainer.read_splits(config, validation=False).train}
    pair = f"en-{FLAGS.language}"
    for split in ("validation", "test"):
        child = corpus.read_split("builtin", pair, split)
        seen = [e for e in child if e["target"] in texts or e["source"] in texts]
        assert not seen, f"{len(seen)} {pair} {split} sentences are in the lm's text, e.g. {seen[0]}"
    print(f"None of the {pair} validation and test sentences is among the lm's {len(texts)} training sentences")


def command(setup, size, seed, workdir, lms):
    common = [f"--pair=en-{FLAGS.language}", f"--max_train_examples={size}", f"--seed={seed}", f"--workdir={workdir}"]
    if setup == "scratch":
        return ["-m", "xling_zoo.train", "--model=transformer", f"--config={TINY}", *common]
    if setup in ("lminit", "lmboth"):
        both = [f"--encoder_from={lms['en']}", "--set=model.tie_embeddings=false"] if setup == "lmboth" else []
        return ["-m", "xling_zoo.transfer", f"--parent={lms[FLAGS.language]}", "--model=transformer", f"--config={TINY}",
                *common, *both]
    if setup == "parent":
        if not FLAGS.parent:
            raise app.UsageError("--parent is needed for the 'parent' setup")
        return ["-m", "xling_zoo.transfer", f"--parent={FLAGS.parent}", *common]
    raise app.UsageError(f"unknown setup {setup!r}: scratch, lminit, lmboth, parent")


def train_and_score(setup, size, seed, lms):
    workdir = os.path.join(FLAGS.runs_dir, f"transformer-en-{FLAGS.language}-{size}-{setup}-seed{seed}")
    arguments = command(setup, size, seed, workdir, lms)
    if "bleu" not in metrics_of(workdir):
        run(arguments)
        run(["-m", "xling_zoo.evaluate", f"--workdir={workdir}"])
    pathlib.Path(workdir, "command.txt").write_text("python " + " ".join(arguments) + "\n")


def report():
    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    copy = {}
    for workdir in sorted(pathlib.Path(FLAGS.runs_dir).glob("transformer-*-seed*")):
        metrics = metrics_of(workdir)
        if "bleu" not in metrics:
            continue
        size, setup, seed = workdir.name.split("-")[3:6]  # transformer-en-nl-SIZE-SETUP-seedS
        groups[int(size)][setup].append({"seed": seed, "bleu": metrics["bleu"], "chrf": metrics["chrf"],
                                         "best_step": metrics.get("best_step"), "workdir": str(workdir)})
        copy[int(size)] = metrics["copy_source"]
    lms = {language: metrics_of(os.path.join(FLAGS.runs_dir, f"lm-{language}")) for language in (FLAGS.language, "en")}
    results = {"lm": {language: {k: lm.get(k) for k in ("perplexity", "loss", "best_step", "examples")}
                      for language, lm in lms.items() if lm},
               "children": {size: dict(setups) for size, setups in sorted(groups.items())},
               "copy_floor": copy}
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    def cell(runs, key):
        values = [r[key] for r in runs]
        if not values:
            return "—"
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.2f}{spread} (n={len(values)})"

    setups = ["scratch", "lminit", "lmboth", "parent"]
    lines = [f"lm-{language}: test perplexity {lm.get('perplexity')} (best step {lm.get('best_step')})"
             for language, lm in lms.items() if lm] + ["",
             "| pairs | copy floor BLEU / chrF | " + " | ".join(f"{s} BLEU | {s} chrF" for s in setups) + " |",
             "|---:|---:|" + "---:|" * (2 * len(setups))]
    for size, by_setup in sorted(groups.items()):
        floor = copy[size]
        lines.append(f"| {size} | {floor['bleu']} / {floor['chrf']} | " +
                     " | ".join(f"{cell(by_setup.get(s, []), 'bleu')} | {cell(by_setup.get(s, []), 'chrf')}"
                                for s in setups) + " |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv):
    if FLAGS.report:
        report()
        return
    lms = {}
    if {"lminit", "lmboth"} & set(FLAGS.setups):
        lms[FLAGS.language] = language_model(FLAGS.language)
    if "lmboth" in FLAGS.setups:
        lms["en"] = language_model("en")
    for size in FLAGS.sizes:
        for seed in FLAGS.seeds:
            for setup in FLAGS.setups:
                train_and_score(setup, int(size), int(seed), lms)
    report()


if __name__ == "__main__":
    app.run(main)
