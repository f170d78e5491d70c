"""xling_zoo against OpenNMT-tf and CTranslate2 on one machine, in one run: training side by side for the
same wall-clock budget, then decoding the test set with each. Run with xling_zoo's venv from the
repository root, after benchmarks/peer_race/setup_opennmt.sh made the peer's venv:

    python -m benchmarks.peer_race.race --minutes=10

1. The built-in en-de splits as text (python -m xling_zoo.data --write_text).
2. Our SentencePiece model, trained as `python -m xling_zoo.train` trains it, written into our run
   directory before the race (so neither side spends its budget on it); OpenNMT-tf gets the same
   pieces: the text tokenized with that model (the target-language tag <2de> before every source,
   as our pipeline puts it; </s> after it through OpenNMT-tf's source_sequence_controls), pairs our
   pipeline drops for length dropped, and a vocabulary file in our id order.
3. Both trainings start at the same time, each pinned to its own core (taskset) with one
   TensorFlow thread per pool, for --minutes of training each (configs/transformer_tiny.py and
   benchmarks/peer_race/onmt_transformer_tiny.py; validation only at the end).
4. Decoding, one system at a time on --decode_core: ours (greedy and beam 4 through Translator),
   OpenNMT-tf's `onmt-main infer`, and CTranslate2 float32 and int8 converted from the OpenNMT-tf
   checkpoint with ct2-opennmt-tf-converter; batches of --batch_size, the same sentences in the same
   batches for every system (sorted by length as Translator.translate_all sorts them); one warm-up
   pass, then the median of --repeats timed passes.
5. One JSON (benchmarks/results/peer_race.json) with both trainings, every decoder's tokens/s and
   test BLEU/chrF, the commands, versions and load averages. A run shorter than 10 minutes, on a
   test subset or with fewer than 3 repeats is marked "smoke": not a result.

What is matched and what differs between the two setups: benchmarks/peer_race/README.md.
"""

import json
import os
import pathlib
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

from absl import app, flags

from benchmarks.report import emit_result

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)

import sentencepiece as spm  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

from xling_zoo import config as config_lib  # noqa: E402
from xling_zoo import workdir as workdir_lib  # noqa: E402
from xling_zoo.data import corpus, mixing, pipeline  # noqa: E402
# What our pipeline applies before SentencePiece (in-graph there); the peers get the same text.
from xling_zoo.data.hash_split import normalize_whitespace  # noqa: E402
from xling_zoo.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizers, language_tag, train_tokenizers  # noqa: E402
from xling_zoo.errors import UserError  # noqa: E402
from xling_zoo.evaluate import score  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]

FLAGS = flags.FLAGS
flags.DEFINE_string("race_dir", "runs/peer_race", "Everything the race writes: text, runs, checkpoints, logs.")
flags.DEFINE_float("minutes", 10.0, "Training budget of each side, in wall-clock minutes of training.")
flags.DEFINE_string("onmt_venv", os.environ.get("ONMT_VENV", "/work/onmt-venv"),
                    "The OpenNMT-tf virtualenv (benchmarks/peer_race/setup_opennmt.sh).")
flags.DEFINE_integer("ours_core", 0, "The core our training is pinned to.")
flags.DEFINE_integer("peer_core", 1, "The core OpenNMT-tf's training is pinned to.")
flags.DEFINE_integer("decode_core", 1, "The core every decoder runs on, one after the other.")
flags.DEFINE_integer("test_examples", 0, "Decode only the first N test sentences (0 = all).")
flags.DEFINE_integer("repeats", 3, "Timed decoding passes per system and variant (after one warm-up pass).")
flags.DEFINE_integer("batch_size", 32, "Sentences per decoding batch.")
flags.DEFINE_string("config", "configs/transformer_tiny.py", "Our config file (model `transformer`).")
flags.DEFINE_bool("reuse_training", False, "Skip training when --race_dir holds both finished trainings.")
flags.DEFINE_string("output", str(HERE.parent / "results" / "peer_race.json"), "Where the JSON result goes.")

PAIR = "en-de"
SOURCE, TARGET = PAIR.split("-")
# Our training: only the clock stops it, validated once at the end, no checkpoint before (the peer
# saves at step 1 and at the end; saves and evaluations are outside both tokens/s figures).
OUR_OVERRIDES = ("train.steps=1000000", "train.eval_every_steps=1000000", "train.checkpoint_every_steps=0",
                 "train.checkpoint_every_minutes=0")
FOREVER = 1000000
DECODE_VARIANTS = (("greedy", 1), ("beam4", 4))
# A full measurement; anything less is a smoke run of the script.
FULL_RUN = {"minutes": 10.0, "repeats": 3}


def _run(command, log, **kwargs):
    """Runs a command to completion, its output in ``log``; a failure names the log."""
    print("+", shlex.join(command), flush=True)
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, **kwargs).returncode
    if code:
        raise UserError(f"{shlex.join(command)} failed with exit code {code}; see {log}")


def _read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _write_lines(path, lines):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _versions(onmt_python):
    peer = subprocess.run([onmt_python, "-c", (
        "import importlib.metadata as m, json, sys; print(json.dumps({'python': sys.version.split()[0], **{n: m.version(n) "
        "for n in ('OpenNMT-tf', 'tensorflow', 'tensorflow-addons', 'ctranslate2', 'sentencepiece', 'pyonmttok', "
        "'numpy')}}))")], check=True, capture_output=True, text=True).stdout
    import importlib.metadata as metadata

    ours = {"python": sys.version.split()[0],
            **{name: metadata.version(name) for name in ("tensorflow", "keras", "keras-hub", "tensorflow-text",
                                                         "sentencepiece", "sacrebleu", "numpy")}}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    ours["xling_zoo_commit"] = commit + (" (uncommitted changes in the tree)" if dirty else "")
    return {"xling_zoo": ours, "peer": json.loads(peer)}


def _machine():
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {"cpu": model or platform.processor() or platform.machine(), "cores": os.cpu_count()}


# === 1-2. Data, our tokenizer, the peer's files ===

def export_text(text_dir, log_dir):
    if all((text_dir / f"{split}.{lang}").exists() for split in corpus.SPLITS for lang in (SOURCE, TARGET)):
        return None
    command = [sys.executable, "-m", "xling_zoo.data", "--corpus=builtin", f"--pair={PAIR}", f"--write_text={text_dir}"]
    _run(command, log=log_dir / "write_text.log", cwd=REPO)
    return shlex.join(command)


def our_config(minutes):
    return config_lib.load_config("transformer", REPO / FLAGS.config, list(OUR_OVERRIDES) + [f"train.max_minutes={minutes}"])


def prepare_our_run(config, run_dir):
    """Our run directory with config.json and the tokenizer `train` would train (same examples,
    languages and seed): `train` on this directory then resumes with it instead of training one."""
    tokenizer_dir = workdir_lib.join(run_dir, workdir_lib.TOKENIZER_DIR)
    status = workdir_lib.check(config, str(run_dir))
    if status == "resume" and tf.io.gfile.exists(tokenizer_dir):
        return Tokenizers.load(tokenizer_dir)
    pair = corpus.Pair.parse(config.pair)
    examples = corpus.read_split(config.corpus, pair, "train", data_dir=config.data_dir or None,
                                 max_train_examples=config.max_train_examples)
    languages = mixing.languages(config)
    tokenizers = train_tokenizers(examples, config.tokenizer, sorted(set(languages.source) | set(languages.target)),
                                  seed=config.train.seed)
    workdir_lib.commit(config, str(run_dir), status, tokenizers)
    return tokenizers


def peer_vocabulary(tokenizer):
    """OpenNMT-tf's vocabulary in our id order: its specials <blank> <s> </s> take ids 0-2 (our pad,
    bos, eos), then our pieces from id 4 on (id i -> i - 1); OpenNMT-tf appends <unk> (our id 1)
    itself as its out-of-vocabulary id. Same pieces, same size."""
    pieces = tokenizer.pieces()
    expected = {PAD_ID: "<pad>", UNK_ID: "<unk>", BOS_ID: "<s>", EOS_ID: "</s>"}
    if any(pieces[i] != piece for i, piece in expected.items()):
        raise UserError(f"unexpected special pieces {pieces[:4]}")
    rest = pieces[4:]
    bad = [p for p in rest if any(c.isspace() for c in p) or p in ("<blank>", "<unk>", "<s>", "</s>")]
    if bad:
        raise UserError(f"pieces OpenNMT-tf's space tokenizer or vocabulary cannot carry: {bad[:5]}")
    return ["<blank>", "<s>", "</s>"] + rest


def write_peer_data(tokenizers, config, text_dir, data_dir):
    """Train and validation as SentencePiece pieces, our dropped pairs dropped; returns counts."""
    if not tokenizers.joint:
        raise UserError("the race shares one vocabulary between both sides of both systems: tokenizer.joint=True")
    processor = spm.SentencePieceProcessor(model_proto=tokenizers.source.model_proto)
    tag = language_tag(TARGET)
    max_length = config.data.max_length
    report = {}
    for split in ("train", "validation"):
        sources, targets = _read_lines(text_dir / f"{split}.{SOURCE}"), _read_lines(text_dir / f"{split}.{TARGET}")
        source_ids = processor.encode([normalize_whitespace(s) for s in sources])
        target_ids = processor.encode([normalize_whitespace(t) for t in targets])
        if split == "validation":  # Same pieces as our in-graph tokenizer (tensorflow-text)?
            ours = tokenizers.source.tokenize(pipeline.normalize_whitespace(tf.constant(sources))).to_list()
            if ours != source_ids:
                raise UserError("Python SentencePiece and our tensorflow-text tokenizer disagree on the validation split")
        kept = [(s, t) for s, t in zip(source_ids, target_ids)
                # Our pipeline's test (data/pipeline.py): tag + pieces + eos, pieces + eos.
                if len(s) + 2 <= max_length and len(t) + 1 <= max_length]
        if config.data.overlength != "drop":
            raise UserError("the race writes the peer's files for data.overlength=drop only")
        _write_lines(data_dir / f"{split}.{SOURCE}", [" ".join([tag] + processor.id_to_piece(s)) for s, _ in kept])
        _write_lines(data_dir / f"{split}.{TARGET}", [" ".join(processor.id_to_piece(t)) for _, t in kept])
        report[split] = {"pairs": len(sources), "kept": len(kept), "dropped_over_max_length": len(sources) - len(kept)}
    _write_lines(data_dir / "vocab.txt", peer_vocabulary(tokenizers.source))
    return report


def write_peer_config(onmt_dir, data_dir, config):
    """OpenNMT-tf's run configuration, matched to ours where it has a setting (see README.md)."""
    vocab = str(data_dir / "vocab.txt")
    peer = {
        "model_dir": str(onmt_dir / "model"),
        "data": {
            "train_features_file": str(data_dir / f"train.{SOURCE}"),
            "train_labels_file": str(data_dir / f"train.{TARGET}"),
            "eval_features_file": str(data_dir / f"validation.{SOURCE}"),
            "eval_labels_file": str(data_dir / f"validation.{TARGET}"),
            "source_vocabulary": vocab,
            "target_vocabulary": vocab,
            # Our encoder input ends with eos.
            "source_sequence_controls": {"start": False, "end": True},
        },
        "params": {
            "optimizer": "Adam",
            "optimizer_params": {"beta_1": 0.9, "beta_2": 0.98, "epsilon": 1e-9,
                                 "global_clipnorm": float(config.train.clipnorm)},
            # Ours: peak * min(step / warmup, sqrt(warmup / step)), step counted from 1: the same curve.
            "learning_rate": float(config.train.learning_rate),
            "decay_type": "InvSqrtDecay",
            "decay_params": {"warmup_steps": int(config.train.warmup_steps)},
            "label_smoothing": float(config.train.label_smoothing),
            # Loss averaged over target tokens, as ours (OpenNMT-tf's default divides by sentences).
            "average_loss_in_time": True,
            "length_penalty": float(config.eval.length_penalty),
            "maximum_decoding_length": int(config.eval.max_decode_length),
        },
        "train": {
            "batch_type": "tokens",
            "batch_size": int(config.data.tokens_per_batch),
            # The files hold no longer pair (dropped above); these only state our limit.
            "maximum_features_length": int(config.data.max_length),
            "maximum_labels_length": int(config.data.max_length),
            "save_checkpoints_steps": FOREVER,
            "keep_checkpoint_max": 2,
            "average_last_checkpoints": 0,
            "save_summary_steps": 50,
        },
        "eval": {"batch_size": 32, "batch_type": "examples", "steps": FOREVER},
        "infer": {"batch_size": FLAGS.batch_size, "batch_type": "examples"},
    }
    path = onmt_dir / "config.yml"
    # PyYAML (ml_collections needs it): JSON's 1e-09 would read back as a string in YAML 1.1.
    path.write_text(yaml.safe_dump(peer, sort_keys=False))
    for name, beam in DECODE_VARIANTS:
        (onmt_dir / f"infer_{name}.yml").write_text(yaml.safe_dump({"params": {"beam_width": beam}}))
    return path, peer


# === 3. Training ===

def onmt_main_arguments(config_files, threads=1):
    return ["--config", *map(str, config_files), "--model", str(HERE / "onmt_transformer_tiny.py"), "--seed", "1",
            "--intra_op_parallelism_threads", str(threads), "--inter_op_parallelism_threads", str(threads)]


def train_both(ours_dir, onmt_dir, onmt_config, onmt_python, minutes, log_dir):
    ours = ["taskset", "-c", str(FLAGS.ours_core), sys.executable, "-m", "xling_zoo.train", "--model=transformer",
            f"--config={FLAGS.config}", f"--workdir={ours_dir}", "--intra_op_threads=1", "--inter_op_threads=1",
            *[f"--set={o}" for o in OUR_OVERRIDES], f"--set=train.max_minutes={minutes}"]
    peer = ["taskset", "-c", str(FLAGS.peer_core), onmt_python, str(HERE / "onmt_side.py"), "train",
            f"--minutes={minutes}", f"--stats={onmt_dir / 'train_stats.json'}", "--",
            *onmt_main_arguments([onmt_config]), "train", "--with_eval"]
    logs = {"xling_zoo": log_dir / "train_xling_zoo.log", "opennmt_tf": log_dir / "train_opennmt_tf.log"}
    processes = {}
    for name, command in (("xling_zoo", ours), ("opennmt_tf", peer)):
        print("+", shlex.join(command), flush=True)
        out = open(logs[name], "w", encoding="utf-8")
        processes[name] = (subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT), out)
    started = time.time()
    deadline = started + 60 * minutes + 1800  # Start-up, the final validation and save.
    failed, usage = [], {}
    while len(usage) < len(processes):
        for name, (process, out) in processes.items():
            if name in usage:
                continue
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if not pid:
                if time.time() > deadline:
                    process.kill()  # Our own child, started above.
                continue
            process.returncode = os.waitstatus_to_exitcode(status)
            out.close()
            # CPU well under wall time means the core was shared: the figures are not a clean measurement.
            usage[name] = {"process_wall_s": round(time.time() - started, 1),
                           "process_cpu_s": round(rusage.ru_utime + rusage.ru_stime, 1)}
            if process.returncode:
                failed.append(f"{name} (exit code {process.returncode}, see {logs[name]})")
        time.sleep(0.5)
    if failed:
        raise UserError("training failed: " + "; ".join(failed))
    return {"xling_zoo": shlex.join(ours), "opennmt_tf": shlex.join(peer)}, usage


_ONMT_STEP_LOG = re.compile(r"Step = (\d+) ; steps/s = ([\d.]+), tokens/s = (\d+) \((\d+) source, (\d+) target\)")


def training_results(ours_dir, onmt_dir, log_dir):
    metrics = json.loads((ours_dir / workdir_lib.METRICS_FILE).read_text())
    last = metrics["history"][-1]
    ours = {"updates": int(metrics["step"]), "stop_reason": metrics.get("stop_reason"),
            "training_seconds": last["seconds"], "target_tokens_per_second": last["target_tokens_per_second"],
            "validation_loss_label_smoothed": last.get("validation_loss"),
            "validation_bleu_greedy_500": last.get("validation_bleu"),
            "overlength_train_pairs_dropped": metrics.get("data", {}).get("train", {}).get("overlength")}
    stats = json.loads((onmt_dir / "train_stats.json").read_text())
    logged = [dict(zip(("step", "steps_per_s", "tokens_per_s", "source_per_s", "target_per_s"), map(float, m.groups())))
              for m in _ONMT_STEP_LOG.finditer((log_dir / "train_opennmt_tf.log").read_text(errors="replace"))]
    evaluations = stats.get("evaluations") or [{}]
    peer = {"updates": stats["batches"], "stopped_by_budget": stats["stopped_by_budget"],
            "training_seconds": stats.get("training_seconds"),
            "target_tokens_per_second": stats.get("target_tokens_per_second"),
            "target_tokens": stats["target_tokens"], "target_padding_fraction": stats.get("target_padding_fraction"),
            "validation_cross_entropy": round(evaluations[-1]["loss"], 4) if "loss" in evaluations[-1] else None,
            "longest_gap_between_batches_s": stats.get("longest_gap_between_batches_s"),
            "logged_target_words_per_s": [row["target_per_s"] for row in logged],
            "logged_target_words_per_s_mean": round(statistics.mean(r["target_per_s"] for r in logged), 1) if logged else None}
    return ours, peer


# === 4. Decoding ===

def decoding_inputs(text_dir, decode_dir, tokenizers, count, max_length):
    sources = _read_lines(text_dir / f"test.{SOURCE}")
    references = _read_lines(text_dir / f"test.{TARGET}")
    if count:
        sources, references = sources[:count], references[:count]
    # Translator.translate_all's order (a stable sort by characters): every system gets these batches.
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    _write_lines(decode_dir / f"test.{SOURCE}", sources)
    _write_lines(decode_dir / f"test.sorted.{SOURCE}", [normalize_whitespace(sources[i]) for i in order])
    processor = spm.SentencePieceProcessor(model_proto=tokenizers.source.model_proto)
    tag = language_tag(TARGET)
    pieces = [[tag] + processor.encode(normalize_whitespace(sources[i]), out_type=str) for i in order]
    _write_lines(decode_dir / f"test.sorted.pieces.{SOURCE}", [" ".join(p) for p in pieces])
    # Ours reads only their first data.max_length ids (tag and eos included); the peers read them whole.
    over = sum(len(p) + 1 > max_length for p in pieces)
    return sources, references, order, over


def decode_all(ours_dir, onmt_dir, onmt_config, onmt_python, decode_dir, log_dir, order):
    """Runs every decoder on --decode_core; returns {system: {variant: {wall, cpu, hypotheses}}}."""
    pin = ["taskset", "-c", str(FLAGS.decode_core)]
    commands, results = {}, {}

    command = pin + [sys.executable, "-m", "benchmarks.peer_race.decode_ours", f"--workdir={ours_dir}",
                     f"--sources={decode_dir / f'test.{SOURCE}'}", f"--batch_size={FLAGS.batch_size}",
                     f"--repeats={FLAGS.repeats}", "--threads=1", f"--hypotheses_prefix={decode_dir / 'xling_zoo'}",
                     f"--timings={decode_dir / 'xling_zoo.json'}"]
    _run(command, log=log_dir / "decode_xling_zoo.log", cwd=REPO)
    commands["xling_zoo"] = shlex.join(command)
    timings = json.loads((decode_dir / "xling_zoo.json").read_text())
    results["xling_zoo"] = {name: {**row, "hypotheses": _read_lines(decode_dir / f"xling_zoo.{name}.txt")}
                            for name, row in timings["variants"].items()}
    our_validation = timings.get("validation")

    processor = spm.SentencePieceProcessor(model_file=str(ours_dir / workdir_lib.TOKENIZER_DIR / "spm.model"))

    def unsort(lines):
        restored = [None] * len(order)
        for position, i in enumerate(order):
            restored[i] = lines[position]
        return restored

    results["opennmt_tf"] = {}
    for name, _ in DECODE_VARIANTS:
        predictions = decode_dir / f"opennmt_tf.{name}.pieces"
        command = pin + [onmt_python, str(HERE / "onmt_side.py"), "infer", f"--repeats={FLAGS.repeats}",
                         f"--timings={decode_dir / f'opennmt_tf.{name}.json'}", "--",
                         *onmt_main_arguments([onmt_config, onmt_dir / f"infer_{name}.yml"]), "infer",
                         "--features_file", str(decode_dir / f"test.sorted.pieces.{SOURCE}"),
                         "--predictions_file", str(predictions)]
        _run(command, log=log_dir / f"decode_opennmt_tf_{name}.log", cwd=REPO)
        commands[f"opennmt_tf_{name}"] = shlex.join(command)
        timings = json.loads((decode_dir / f"opennmt_tf.{name}.json").read_text())
        hypotheses = unsort([processor.decode_pieces(line.split()) for line in _read_lines(predictions)])
        results["opennmt_tf"][name] = {**timings, "hypotheses": hypotheses}

    for compute_type in ("float32", "int8"):
        model_dir = onmt_dir / f"ctranslate2_{compute_type}"
        if not (model_dir / "model.bin").exists():
            command = [str(pathlib.Path(onmt_python).parent / "ct2-opennmt-tf-converter"), "--config", str(onmt_config),
                       "--output_dir", str(model_dir), "--force"] + (["--quantization", "int8"] if compute_type == "int8" else [])
            _run(command, log=log_dir / f"convert_ctranslate2_{compute_type}.log", cwd=REPO)
            commands[f"convert_ctranslate2_{compute_type}"] = shlex.join(command)
        system = f"ctranslate2_{compute_type}"
        command = pin + [onmt_python, str(HERE / "onmt_side.py"), "ct2", f"--model_dir={model_dir}",
                         f"--compute_type={compute_type}", f"--spm={ours_dir / workdir_lib.TOKENIZER_DIR / 'spm.model'}",
                         f"--sources={decode_dir / f'test.sorted.{SOURCE}'}", f"--source_prefix={language_tag(TARGET)}",
                         f"--batch_size={FLAGS.batch_size}", f"--repeats={FLAGS.repeats}", "--threads=1",
                         f"--hypotheses_prefix={decode_dir / system}", f"--timings={decode_dir / f'{system}.json'}"]
        _run(command, log=log_dir / f"decode_{system}.log", cwd=REPO)
        commands[system] = shlex.join(command)
        timings = json.loads((decode_dir / f"{system}.json").read_text())
        results[system] = {name: {**row, "hypotheses": unsort(_read_lines(decode_dir / f"{system}.{name}.txt"))}
                           for name, row in timings["variants"].items()}
        commands["ctranslate2_version"] = timings["ctranslate2"]
    return results, commands, our_validation


def decoding_table(results, references, tokenizers):
    """Tokens/s on the same output-token count for every system: the target pieces of its
    translations (our SentencePiece model, eos excluded), over its median timed pass."""
    processor = spm.SentencePieceProcessor(model_proto=tokenizers.target.model_proto)
    table = {}
    for system, variants in results.items():
        for name, row in variants.items():
            hypotheses = row["hypotheses"]
            tokens = sum(len(ids) for ids in processor.encode(hypotheses))
            metrics = score(hypotheses, references, TARGET)
            table.setdefault(system, {})[name] = {
                "median_wall_s": row["median_wall_s"], "median_cpu_s": row["median_cpu_s"],
                "passes": row["passes"], "output_tokens": tokens,
                "tokens_per_s": round(tokens / max(row["median_wall_s"], 1e-9), 1),
                "bleu": metrics["bleu"], "chrf": metrics["chrf"], "empty_translations": sum(not h.strip() for h in hypotheses)}
    for system in ("ctranslate2_float32", "ctranslate2_int8"):  # The conversion check: same model, same search.
        for name, _ in DECODE_VARIANTS:
            table[system][name]["translations_differing_from_opennmt_tf"] = sum(
                a != b for a, b in zip(results[system][name]["hypotheses"], results["opennmt_tf"][name]["hypotheses"]))
    for name, _ in DECODE_VARIANTS:
        for system in table:
            if system != "xling_zoo":
                table[system][name]["ratio_xling_zoo_to_this"] = _ratio(table["xling_zoo"][name]["tokens_per_s"],
                                                                        table[system][name]["tokens_per_s"])
    return table


def _ratio(ours, theirs):
    return round(ours / theirs, 3) if ours and theirs else None  # None: a side produced nothing.


def main(argv):
    del argv
    race = pathlib.Path(FLAGS.race_dir).resolve()
    onmt_python = str(pathlib.Path(FLAGS.onmt_venv) / "bin" / "python")
    if not os.access(onmt_python, os.X_OK):
        raise UserError(f"no OpenNMT-tf venv at {FLAGS.onmt_venv}: run bash benchmarks/peer_race/setup_opennmt.sh "
                        "(or point --onmt_venv / $ONMT_VENV at one)")
    if FLAGS.minutes <= 0:
        raise UserError(f"--minutes must be > 0, got {FLAGS.minutes}")
    text_dir, ours_dir, onmt_dir = race / "text", race / "xling_zoo", race / "opennmt_tf"
    data_dir, decode_dir, log_dir = onmt_dir / "data", race / "decode", race / "logs"
    for directory in (race, onmt_dir, data_dir, decode_dir, log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    load = {"start": list(os.getloadavg())}
    versions = _versions(onmt_python)

    write_text_command = export_text(text_dir, log_dir)
    config = our_config(FLAGS.minutes)
    finished = (ours_dir / workdir_lib.METRICS_FILE).exists() and (onmt_dir / "train_stats.json").exists()
    if FLAGS.reuse_training and not finished:
        raise UserError(f"--reuse_training: {race} holds no finished race")
    if not FLAGS.reuse_training and (workdir_lib.has_checkpoint(str(ours_dir)) or (onmt_dir / "model").exists()):
        raise UserError(f"{race} already holds a race's checkpoints: choose a new --race_dir, or decode them again "
                        "with --reuse_training")
    if FLAGS.reuse_training:
        config = config_lib.with_defaults(config_lib.from_json((ours_dir / workdir_lib.CONFIG_FILE).read_text()))
    tokenizers = prepare_our_run(config, ours_dir)
    data_report = write_peer_data(tokenizers, config, text_dir, data_dir)
    onmt_config, peer_config = write_peer_config(onmt_dir, data_dir, config)

    if FLAGS.reuse_training:
        minutes = float(config.train.max_minutes)
        saved = json.loads((race / "training_commands.json").read_text())
        training_commands, usage = saved["commands"], saved["usage"]
    else:
        minutes = FLAGS.minutes
        load["training_start"] = list(os.getloadavg())
        training_commands, usage = train_both(ours_dir, onmt_dir, onmt_config, onmt_python, minutes, log_dir)
        (race / "training_commands.json").write_text(json.dumps({"commands": training_commands, "usage": usage},
                                                                indent=2))
        load["training_end"] = list(os.getloadavg())
    ours_training, peer_training = training_results(ours_dir, onmt_dir, log_dir)
    ours_training.update(usage["xling_zoo"])
    peer_training.update(usage["opennmt_tf"])

    sources, references, order, over = decoding_inputs(text_dir, decode_dir, tokenizers, FLAGS.test_examples,
                                                       config.data.max_length)
    results, decode_commands, our_validation = decode_all(ours_dir, onmt_dir, onmt_config, onmt_python, decode_dir,
                                                          log_dir, order)
    versions["peer"]["ctranslate2_used"] = decode_commands.pop("ctranslate2_version")
    decoding = decoding_table(results, references, tokenizers)
    load["end"] = list(os.getloadavg())
    ours_training["validation_cross_entropy"] = (our_validation or {}).get("cross_entropy")
    for side, system in ((ours_training, "xling_zoo"), (peer_training, "opennmt_tf")):
        side["test_bleu_beam4"] = decoding[system]["beam4"]["bleu"]
        side["test_chrf_beam4"] = decoding[system]["beam4"]["chrf"]

    full = minutes >= FULL_RUN["minutes"] and FLAGS.repeats >= FULL_RUN["repeats"] and not FLAGS.test_examples
    result = {
        "benchmark": "peer_race",
        "run_kind": "full" if full else ("smoke run: checks that the script works end to end; its figures are not a "
                                         "result (short budget, test subset or few repeats)"),
        "command": "python -m benchmarks.peer_race.race " + " ".join(
            f"--{k}={getattr(FLAGS, k)}" for k in ("race_dir", "minutes", "onmt_venv", "ours_core", "peer_core",
                                                   "decode_core", "test_examples", "repeats", "batch_size", "config",
                                                   "reuse_training")
            if not (k == "minutes" and FLAGS.reuse_training)),  # A reused race keeps its budget_minutes.
        "commands": {"write_text": write_text_command, "training": training_commands, "decoding": decode_commands},
        "versions": versions, "machine": _machine(), "load_average": load,
        "pair": PAIR, "budget_minutes": minutes,
        "data": {"peer_files": data_report, "vocabulary_size": tokenizers.source.vocab_size},
        "peer_config": peer_config,
        "training": {
            "xling_zoo": ours_training, "opennmt_tf": peer_training,
            "ratio_target_tokens_per_s_xling_zoo_to_opennmt_tf": _ratio(ours_training["target_tokens_per_second"],
                                                                        peer_training["target_tokens_per_second"]),
        },
        "decoding": {"test_sentences": len(sources), "sources_over_max_length": over,
                     "batch_size": FLAGS.batch_size, "repeats": FLAGS.repeats,
                     "core": FLAGS.decode_core, "systems": decoding},
    }
    emit_result(result, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
