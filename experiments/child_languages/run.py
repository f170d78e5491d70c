"""Issue 11 §4: does the plain transfer command beat scratch and the copy floor on new pairs?

    XLING_ZOO_DATA_DIR=... taskset -c 0 python experiments/child_languages/run.py \
        --parent_en_x=runs/lstm_seq2seq-en-de --parent_x_en=runs/lstm_seq2seq-de-en \
        --languages=sv,cs,fi --directions=en-x,x-en --sizes=1000 --seeds=1 --runs_dir=runs/child_languages
    python experiments/child_languages/run.py --report --runs_dir=runs/child_languages

Child languages of different relatedness to the parent's German: Swedish (close), Czech (mid),
Finnish (distant); no other experiment uses them. Both directions: en->X from an en-de parent (the
decoder must learn a new language) and X->en from a de-en parent (a new source language, the
setting of Zoph et al. 2016). Every run is a user's plain command, nothing tuned:

  scratch   python -m xling_zoo.train --model=MODEL --pair=P --max_train_examples=N --seed=S --workdir=W
  transfer  python -m xling_zoo.transfer --parent=PARENT --pair=P --max_train_examples=N --seed=S --workdir=W
            --mix_parent_data=0 (the child's pairs alone: the plain command before mixing became its default)
  mix       the transfer command with --mix_parent_data=0.5 (mixed fine-tuning, Chu et al. 2017): the
            plain command, which also mixes in the child's closest relatives (--mix_related=auto)
  mixnone   the same with --mix_related=none: the parent's pair alone (the plain command before auto)
  mixrelated  the same with --mix_related=RELATED[language]; the report names a run mixed 0.5 by what
            it mixed in: AUTO_RELATED is "mix", other languages "mixrelated:LANGS", none "mixnone"
  multi     the transfer command from a multilingual parent (--multilingual_parent_en_x / _x_en, e.g. the
            default lstm_seq2seq trained with --pair=en-de,nl,pl); the runs so far mixed its pairs alone
  freezeencoder, freezeembeddings, lrhalf, vocabchild, vocabextend: the plain command with one option of
            issue 11 §2 (--freeze=..., --transferred_lr_multiplier=0.5, --vocab=child, --vocab=extend)

each then scored with ``python -m xling_zoo.evaluate --workdir=W`` (greedy, the child's test split),
whose metrics.json also holds the copy floor (the source copied as the translation). Runs are
independent: start several processes with disjoint --languages/--directions to use several cores.
A scored run is reused on a rerun; ``--report`` gathers every scored run under --runs_dir into
results.json, results.md and transfer_vs_scratch.png.
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

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lstm_seq2seq", "Model of the scratch runs (the parents' model).")
flags.DEFINE_string("config", None, "Config file of the scratch runs (the parents' --config; default: the model's).")
flags.DEFINE_string("parent_en_x", None, "Parent run for en->X children (an en-de run).")
flags.DEFINE_string("parent_x_en", None, "Parent run for X->en children (a de-en run).")
flags.DEFINE_string("multilingual_parent_en_x", None, "Parent run of the 'multi' setup for en->X children: one "
                    "source into several targets (e.g. an en-de,nl,pl run).")
flags.DEFINE_string("multilingual_parent_x_en", None, "Parent run of the 'multi' setup for X->en children: several "
                    "sources into English (e.g. a de,nl,pl-en run).")
flags.DEFINE_list("languages", ["sv", "cs", "fi"], "Child languages.")
flags.DEFINE_list("directions", ["en-x", "x-en"], "en-x: English into the child language; x-en: the reverse.")
flags.DEFINE_list("sizes", ["1000"], "Child training pairs.")
flags.DEFINE_list("seeds", ["1"], "Seeds (train.seed of scratch and child alike).")
flags.DEFINE_list("setups", ["scratch", "transfer", "mix"], "Which runs to make.")
flags.DEFINE_list("runs_dir", ["runs/child_languages"], "Where the runs go (the first); --report gathers every "
                  "scored run under all of them (e.g. the lstm and the transformer runs).")
flags.DEFINE_bool("report", False, "Only gather the scored runs under --runs_dir into results.*.")

MIX_RATIO = 0.5
# Transfer setups: their flags beyond the plain command's. The last three are the options of issue
# 11 §2 (which layers to freeze, the transferred weights' learning rate), each on top of the plain
# command (mixed 0.5).
TRANSFER_SETUPS = {
    "transfer": ["--mix_parent_data=0"],
    "mix": [f"--mix_parent_data={MIX_RATIO}"],
    "freezeencoder": [f"--mix_parent_data={MIX_RATIO}", "--freeze=encoder"],
    "freezeembeddings": [f"--mix_parent_data={MIX_RATIO}", "--freeze=embeddings"],
    "lrhalf": [f"--mix_parent_data={MIX_RATIO}", "--transferred_lr_multiplier=0.5"],
    "dropout3": [f"--mix_parent_data={MIX_RATIO}", "--set=model.dropout=0.3"],
    "truncate": [f"--mix_parent_data={MIX_RATIO}", "--set=data.overlength=truncate"],
    "mix75": ["--mix_parent_data=0.75"],
    "mixnone": [f"--mix_parent_data={MIX_RATIO}", "--mix_related=none"],
    # Similar-language regularisation (Neubig & Hu 2018): the parent's pair and a language related to
    # the child's mixed in (RELATED below).
    "mixrelated": [f"--mix_parent_data={MIX_RATIO}"],
    "maxlen128": [f"--mix_parent_data={MIX_RATIO}", "--set=data.max_length=128", "--set=eval.max_decode_length=128"],
    "maxlen256": [f"--mix_parent_data={MIX_RATIO}", "--set=data.max_length=256", "--set=eval.max_decode_length=256"],
    # The plain command from a multilingual parent (--multilingual_parent_*) instead of a single-pair one.
    "multi": [],
    # The plain command with the child's own vocabulary (rows of shared pieces from the parent).
    "vocabchild": ["--vocab=child"],
    # The plain command with the parent's vocabulary extended by pieces for the letters it lacks.
    "vocabextend": ["--vocab=extend"],
    # The parent's vocabulary where the plain command (--vocab=auto) trains the child's (from
    # CHILD_VOCAB_MIN_PAIRS pairs on).
    "vocabparent": [f"--mix_parent_data={MIX_RATIO}", "--vocab=parent"],
    "transfervocabparent": ["--mix_parent_data=0", "--vocab=parent"],
}
# The first is the plain command before --mix_related=auto (the parent's pair alone): the options
# after it, but for the --mix_related ones, were run on top of that.
OPTION_SETUPS = ["mixnone", "freezeencoder", "freezeembeddings", "lrhalf", "vocabchild", "vocabextend", "vocabparent",
                 "transfervocabparent", "dropout3", "maxlen256", "mix75"]
# From this many child pairs on, the plain command trains the child's vocabulary
# (xling_zoo.transfer.CHILD_VOCAB_MIN_PAIRS; not imported: that loads TensorFlow).
CHILD_VOCAB_MIN_PAIRS = 2000
SETUP_LABELS = {"scratch": "scratch", "transfer": "transfer, child's pairs only",
                "mix": "transfer, plain (mixed 0.5, related languages)", "multi": "multilingual parent"}


def pair_of(language, direction):
    return f"en-{language}" if direction == "en-x" else f"{language}-en"


# A language of the built-in corpus related to each child (same family), for "mixrelated".
RELATED = {"cs": "pl", "sv": "da", "fi": "et"}  # noqa: the first runs: before auto existed
# What the plain command's --mix_related=auto mixes in from the built-in corpus for each child
# (xling_zoo.transfer.auto_related; not imported: that loads TensorFlow), sorted: Estonian has 195
# pairs, under transfer.RELATED_MIN_PAIRS.
AUTO_RELATED = {"cs": ("pl", "sk"), "sv": ("da", "nb"), "fi": ()}
# ... for a child of fewer pairs than this (transfer.RELATED_MAX_CHILD_PAIRS); none from there on.
AUTO_RELATED_MAX_PAIRS = 2000


def command(setup, language, direction, size, seed, workdir):
    pair = pair_of(language, direction)
    common = [f"--pair={pair}", f"--max_train_examples={size}", f"--seed={seed}", f"--workdir={workdir}"]
    if setup == "scratch":
        config = [f"--config={FLAGS.config}"] if FLAGS.config else []
        return ["-m", "xling_zoo.train", f"--model={FLAGS.model}", *config, *common]
    prefix = "multilingual_parent" if setup == "multi" else "parent"
    parent = getattr(FLAGS, f"{prefix}_{direction.replace('-', '_')}")
    if not parent:
        raise app.UsageError(f"--{prefix}_{direction.replace('-', '_')} is needed for {setup} runs")
    if setup not in TRANSFER_SETUPS:
        raise app.UsageError(f"unknown setup {setup!r}: scratch, {', '.join(TRANSFER_SETUPS)}")
    # The first runs of this setup passed the same mix as --set=mix.pair=en-de,pl (de,pl-en for X->en).
    extra = [f"--mix_related={RELATED[language]}"] if setup == "mixrelated" else []
    return ["-m", "xling_zoo.transfer", f"--parent={parent}", *common, *TRANSFER_SETUPS[setup], *extra]


def run(arguments):
    print("$ python", " ".join(arguments), flush=True)
    subprocess.run([sys.executable, *arguments], check=True)


def scored(workdir):
    path = pathlib.Path(workdir, "metrics.json")
    metrics = json.loads(path.read_text()) if path.exists() else {}
    return metrics if "bleu" in metrics else None


def train_and_score(setup, language, direction, size, seed):
    name = f"{FLAGS.model}-{pair_of(language, direction)}-{size}-{setup}-seed{seed}"
    workdir = os.path.join(FLAGS.runs_dir[0], name)
    arguments = command(setup, language, direction, size, seed, workdir)
    if scored(workdir) is None:
        run(arguments)
        run(["-m", "xling_zoo.evaluate", f"--workdir={workdir}"])
    command_file = pathlib.Path(workdir, "command.txt")
    if not command_file.exists():
        command_file.write_text("python " + " ".join(arguments) + "\n")


def gather():
    rows = []
    workdirs = [w for runs_dir in FLAGS.runs_dir for w in pathlib.Path(runs_dir).glob("*-seed*")]
    for workdir in sorted(workdirs, key=lambda w: w.name):
        metrics = scored(workdir)
        if metrics is None:
            continue
        config = json.loads((workdir / "config.json").read_text())
        transfer = workdir / "transfer.json"
        setup = as_run = workdir.name.rsplit("-", 2)[1]
        vocab = json.loads(transfer.read_text())["vocab"] if transfer.exists() else None
        related = mixed_related(config, transfer)
        language = next(lang for lang in config["pair"].replace("-", ",").split(",") if lang != "en")
        # Each run counts as what it computed under today's plain command. From CHILD_VOCAB_MIN_PAIRS
        # pairs on that trains the child's vocabulary (so a --vocab=child run is the plain command, and
        # a plain run made before, with the parent's vocabulary, is the --vocab=parent option).
        if config["max_train_examples"] >= CHILD_VOCAB_MIN_PAIRS and vocab == "parent":
            setup = {"mix": "vocabparent", "transfer": "transfervocabparent"}.get(setup, setup)
        elif config["max_train_examples"] >= CHILD_VOCAB_MIN_PAIRS and setup == "vocabchild" and \
                config.get("mix", {}).get("ratio") == MIX_RATIO:
            setup = "mix"
        # And it mixes in what --mix_related=auto picks (AUTO_RELATED): a run mixed 0.5 with no other
        # option is the plain command where it mixed just that, else --mix_related=LANGS, or =none
        # (the parent's pair alone: the plain command before).
        if setup in ("mix", "mixrelated", "mixnone") and config.get("mix", {}).get("ratio") == MIX_RATIO:
            auto = AUTO_RELATED.get(language, ()) if config["max_train_examples"] < AUTO_RELATED_MAX_PAIRS else ()
            setup = ("mix" if related == auto else
                     f"mixrelated:{','.join(related)}" if related else "mixnone")
        rows.append({
            "run": workdir.name, "model": config["model_name"], "pair": config["pair"], "setup": setup,
            "setup_as_run": as_run, "vocab": vocab, "mix_related": list(related),
            "size": config["max_train_examples"], "seed": config["train"]["seed"],
            "command": (workdir / "command.txt").read_text().strip() if (workdir / "command.txt").exists() else None,
            "bleu": metrics["bleu"], "chrf": metrics["chrf"], "copy_bleu": metrics["copy_source"]["bleu"],
            "copy_chrf": metrics["copy_source"]["chrf"], "updates": metrics.get("step"),
            "best_step": metrics.get("best_step"), "stop_reason": metrics.get("stop_reason"),
            "parent": json.loads(transfer.read_text())["parent"] if transfer.exists() else None,
            # The child's vocabulary: how many pieces it has beyond the parent's (a new tag, --vocab=extend's).
            "vocabulary": ({side: {k: v[k] for k in ("parent_size", "child_size", "kept", "new")}
                            for side, v in json.loads(transfer.read_text())["vocabularies"].items()}
                           if transfer.exists() else None),
        })
    return rows


def mixed_related(config, transfer):
    """The languages a child mixed in beyond its parent's pair (--mix_related), sorted."""
    mix = config.get("mix", {})
    if not transfer.exists() or not mix.get("ratio") or not mix.get("pair"):
        return ()
    parent = json.loads((pathlib.Path(json.loads(transfer.read_text())["parent"]) / "config.json").read_text())
    languages = lambda pair: set(pair.replace("-", ",").split(","))  # noqa: E731
    return tuple(sorted(languages(mix["pair"]) - languages(parent["pair"])))


def _mean_spread(values):
    if not values:
        return None
    mean = statistics.mean(values)
    return f"{mean:.2f}" + (f" ±{(max(values) - min(values)) / 2:.2f}" if len(values) > 1 else "")


def parents(rows):
    """Each parent run's command, code and test metrics (greedy; beam 4 where evaluated), as read from
    its run directory: what the README's parent table quotes."""
    found = {}
    for path in sorted({r["parent"] for r in rows if r["parent"]}):
        workdir = pathlib.Path(path)
        config = json.loads((workdir / "config.json").read_text())
        entry = {"pair": config["pair"], "model": config["model_name"]}
        for name in sorted(workdir.glob("metrics*.json")):
            metrics = json.loads(name.read_text())
            if "bleu" in metrics:
                entry[name.stem] = {k: metrics.get(k) for k in ("pair", "bleu", "chrf", "ter", "copy_source",
                                                                 "decoding", "checkpoint")}
            if name.stem == "metrics":
                entry.update(step=metrics.get("step"), best_step=metrics.get("best_step"))
        commit = workdir.parent / "commit"
        entry["code"] = commit.read_text().strip() if commit.exists() else None
        found[path] = entry
    return found


def report():
    rows = gather()
    (HERE / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (HERE / "parents.json").write_text(json.dumps(parents(rows), indent=2) + "\n")
    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    copy = {}
    for row in rows:
        key = (row["model"], row["pair"], row["size"])
        groups[key][row["setup"]].append(row)
        copy[key] = (row["copy_bleu"], row["copy_chrf"])
    lines = ["| model | pair | pairs | copy floor BLEU / chrF | scratch | transfer, child's pairs only | "
             "**transfer, plain command** (mixed 0.5, related languages) | plain − scratch | plain − copy | "
             "multilingual parent (its pairs mixed alone) | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(groups):
        setups = groups[key]
        bleu = {setup: [r["bleu"] for r in runs] for setup, runs in setups.items()}
        chrf = {setup: [r["chrf"] for r in runs] for setup, runs in setups.items()}

        def cell(setup):
            if setup not in bleu:
                return "—"
            return f"{_mean_spread(bleu[setup])} / {_mean_spread(chrf[setup])}"

        gain = (f"{statistics.mean(bleu['mix']) - statistics.mean(bleu['scratch']):+.2f}"
                if "mix" in bleu and "scratch" in bleu else "—")
        over_copy = f"{statistics.mean(bleu['mix']) - copy[key][0]:+.2f}" if "mix" in bleu else "—"
        seeds = max(len(v) for v in bleu.values())
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {copy[key][0]:.2f} / {copy[key][1]:.2f} | {cell('scratch')} | "
                     f"{cell('transfer')} | {cell('mix')} | {gain} | {over_copy} | {cell('multi')} | {seeds} |")
    def option_flags(setup):
        if setup.startswith("mixrelated:"):
            return f"+ --mix_related={setup.split(':', 1)[1]}"
        return "+ " + " ".join(f for f in TRANSFER_SETUPS[setup] if not f.startswith(f"--mix_parent_data={MIX_RATIO}"))

    related_setups = sorted({s for setups in groups.values() for s in setups if s.startswith("mixrelated:")})
    columns = [*OPTION_SETUPS, *related_setups]
    options = ["| model | pair | pairs | plain command | " + " | ".join(option_flags(o) for o in columns) + " |",
               "|---|---|---:|---:|" + "---:|" * len(columns)]
    for key in sorted(groups):
        if any(o in groups[key] for o in columns):
            cells = [_mean_spread([r["bleu"] for r in groups[key][s]]) if s in groups[key] else "—"
                     for s in ["mix", *columns]]
            options.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    if len(options) > 2:
        lines += ["", "Options of §2 on top of the plain command (test BLEU):", "", *options]
    runs = ["| run | counted as | command | updates (best) | stop | test BLEU / chrF |", "|---|---|---|---:|---|---:|"]
    runs += [f"| {r['run']} | {r['setup']} | `{r['command']}` | {r['updates']} ({r['best_step']}) | {r['stop_reason']} | "
             f"{r['bleu']:.2f} / {r['chrf']:.2f} |" for r in rows]
    (HERE / "results.md").write_text(
        "Test BLEU / chrF (greedy; mean ±half the range over seeds). Generated by "
        "`python experiments/child_languages/run.py --report`.\n\n" + "\n".join(lines) + "\n\n" + "\n".join(runs) + "\n")
    _plot(groups, copy)
    print((HERE / "results.md").read_text())


def _plot(groups, copy):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(groups)
    if not keys:
        return
    setups = [s for s in ["scratch", "transfer", "mix", "multi"] if any(s in groups[k] for k in keys)]
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(keys)), 4))
    width = 0.8 / (len(setups) + 1)
    for i, setup in enumerate(setups):
        values = [statistics.mean([r["bleu"] for r in groups[k][setup]]) if setup in groups[k] else 0 for k in keys]
        axis.bar([x + (i - 1) * width for x in range(len(keys))], values, width, label=SETUP_LABELS[setup])
    axis.scatter([x + (len(setups) - 1) * width for x in range(len(keys))], [copy[k][0] for k in keys], marker="_", s=300,
                 color="black", label="copy floor")
    # Labels given with each artist: a list here would pair them with the artists' order.
    axis.legend(loc="upper left", ncol=len(setups) + 1, fontsize=8)
    axis.set_ylim(0, 1.2 * max(bar.get_height() for bar in axis.patches))
    axis.set_xticks(range(len(keys)), [f"{k[0]}\n{k[1]}, {k[2]} pairs" for k in keys], fontsize=8)
    axis.set_ylabel("test BLEU (greedy)")
    figure.tight_layout()
    figure.savefig(HERE / "transfer_vs_scratch.png", dpi=100)


def main(argv):
    del argv
    if FLAGS.report:
        report()
        return
    for size in FLAGS.sizes:
        for direction in FLAGS.directions:
            for language in FLAGS.languages:
                for seed in FLAGS.seeds:
                    for setup in FLAGS.setups:
                        train_and_score(setup, language, direction, int(size), int(seed))


if __name__ == "__main__":
    app.run(main)
