"""Training throughput of the default model on one CPU core: our loop against the Keras tutorial recipe.

    XLING_ZOO_WHEELS_DIR=/tmp/corpus_wheels python -m benchmarks.train_throughput

Runs on one pinned core (the lowest the process may use; pick another with ``taskset -c N``) with
one TensorFlow intra-op and one inter-op thread, on the first --max_train_examples pairs of the
built-in training split, and measures real (non-padding) target tokens per second of:

* ours: ``trainer.make_train_step`` under the default strategy over the task's
  ``build_inputs(..., training=True).repeat()`` of the split read into memory, the trainer's
  length-bucketed token-budget batches (not padded to one shape per bucket in the XLA variants),
  driven as the trainer's loop drives it (one step, then the logs read back). A window is one
  epoch: an epoch is always the same pairs, so every window holds the same real tokens and FLOPs.
* the tutorial recipe: the same model class and config, every pair padded to data.max_length on
  both sides, batch size tokens_per_batch // max_length (the same padded-token budget per batch),
  ``model.compile(Adam, SparseCategoricalCrossentropy(from_logits=True))`` and ``model.fit``.
  A window is one fit call of 1 + --recipe_steps batches, timed from the end of the first.
* ours with XLA (train.jit_compile), with mixed_bfloat16, and with the output layer and loss on
  every target position, padding included, as XLA and TPUs need (--variants).

Each is built and warmed up first (one epoch of ours: tracing and, under XLA, one compilation per
bucket shape; --recipe_warmup_steps of the recipe), then --windows rounds time one window of each
in turn, so that all of them see the same mix of the other jobs' load. Figures are medians over
windows, in wall-clock seconds and in CPU seconds of this process (the core is shared: wall-clock
figures understate an idle core and drift with the load; CPU time does neither as much).
FLOPs are counted analytically on real tokens only (``train_flops``) and compared with the best
float32 (and bfloat16) matmul rate measured here at the start and the end of the run.

Prints one JSON line and writes it to --output.
"""

import os

# One core before TensorFlow starts any thread: threads inherit the affinity of their creator.
CORE = min(os.sched_getaffinity(0))
os.sched_setaffinity(0, {CORE})

import gc  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402

from benchmarks.report import emit_result  # noqa: E402

from xling_zoo import cli  # noqa: E402  (sets TF log level before TF loads)
from xling_zoo import config as config_lib  # noqa: E402
from xling_zoo import trainer  # noqa: E402
from xling_zoo import workdir as workdir_lib  # noqa: E402
from xling_zoo.data import corpus, pipeline  # noqa: E402
from xling_zoo.data.tokenizer import PAD_ID, Tokenizers, train_tokenizers  # noqa: E402
from xling_zoo.errors import UserError  # noqa: E402
from xling_zoo.registry import get_model  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Before the runtime initialises (no op has run yet): one thread per op, one op at a time.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("set", [], "Override of the lstm_seq2seq config, key=value, repeatable: "
                          "--set=data.tokens_per_batch=4096.")
flags.DEFINE_string("data_dir", None, "Prepared-data directory (default $XLING_ZOO_DATA_DIR or ~/.cache/xling_zoo).")
flags.DEFINE_string("run_dir", None, "Reuse this run's tokenizer when its tokenizer config matches "
                    "(default runs/<model>-<pair>); otherwise one is trained on the training split.")
# 2000: an epoch takes a few CPU seconds, so the whole run (XLA alone compiles for ~2 CPU minutes)
# stays near 10 minutes on a loaded machine.
flags.DEFINE_integer("max_train_examples", 2000, "Train on the first N pairs of the split (0 = all).")
flags.DEFINE_integer("windows", 5, "Timed windows of each (an epoch of ours, --recipe_steps of the recipe).")
flags.DEFINE_integer("recipe_steps", 10, "Steps per timed window of the recipe.")
flags.DEFINE_integer("recipe_warmup_steps", 3, "Untimed recipe steps first (tracing).")
flags.DEFINE_list("variants", ["bf16", "xla", "all_positions"],
                  "Variants of ours to measure: bf16, xla, all_positions (loss on padding positions too).")
flags.DEFINE_string("output", str(pathlib.Path(__file__).parent / "results" / "train_throughput.json"),
                    "Where the JSON result is written ('' = nowhere).")

# The FLOP count (forward_flops) is this model's.
MODEL = "lstm_seq2seq"
# From the issue: ours must reach 1.5x the recipe's real tokens/s, and should not fall below the
# fraction of the matmul ceiling that a plain Keras model of this kind reached on this CPU (68 %).
MIN_OURS_OVER_RECIPE = 1.5
REFERENCE_FRACTION_OF_CEILING = 0.68
# name: (mixed_precision, jit_compile, loss_on_real_positions). "all_positions" is ours with the output
# layer and loss on every target position, padding included (what XLA and TPUs must do).
VARIANTS = {"bf16": ("mixed_bfloat16", False, True), "xla": ("", True, False),
            "all_positions": ("", False, False)}


def clocks():
    return time.perf_counter(), time.process_time()


def load():
    return round(os.getloadavg()[0], 2)


# --- FLOPs -------------------------------------------------------------------------------------

def forward_flops(model_config, target_vocab_size, source_tokens, target_tokens, source_target_pairs):
    """Forward multiply-add FLOPs of LSTMSeq2Seq for the given token counts.

    source_target_pairs: sum over examples of source length * target length (attention scores and
    context). Embeddings, activations, softmax and the loss count as nothing.
    """
    units, embedding = model_config.units, model_config.embedding_dim
    directions = 2 if model_config.bidirectional else 1
    per_direction = units // directions
    flops = 0
    for layer in range(model_config.num_layers):
        inputs = embedding if layer == 0 else units
        # Four gates: [x; h] @ W, per token and direction.
        flops += source_tokens * directions * 2 * 4 * (inputs + per_direction) * per_direction
        flops += target_tokens * 2 * 4 * (inputs + units) * units
    if model_config.attention:
        flops += source_tokens * 2 * units * units  # attention_score Dense on the encoder outputs
        flops += source_target_pairs * 2 * 2 * units  # h_t . keys, then weights @ values
        flops += target_tokens * 2 * 2 * units * units  # attention_projection of [context; h_t]
    flops += target_tokens * 2 * units * target_vocab_size  # logits
    return flops


def train_flops(model_config, target_vocab_size, counts, padded=False, logits_on_real_positions=False):
    """Training FLOPs (forward + backward ~ 3x forward) of real tokens, or of padded shapes (with
    ``logits_on_real_positions``, the output layer at the real target tokens only, as ours runs it).
    None for another model than lstm_seq2seq (``profile_train_step --model``), whose FLOPs are not counted."""
    if "units" not in model_config:
        return None
    prefix = "padded_" if padded else ""
    flops = 3 * forward_flops(model_config, target_vocab_size, counts[prefix + "source_tokens"],
                              counts[prefix + "target_tokens"], counts[prefix + "source_target_pairs"])
    if padded and logits_on_real_positions:
        skipped = counts["padded_target_tokens"] - counts["target_tokens"]
        flops -= 3 * skipped * 2 * model_config.units * target_vocab_size
    return flops


def batch_counts(batch):
    """Real and padded token counts of one batch (numpy arrays)."""
    source = (batch["encoder_token_ids"] != PAD_ID).sum(axis=1).astype(np.int64)
    target = (batch["target_token_ids"] != PAD_ID).sum(axis=1).astype(np.int64)
    rows, source_length = batch["encoder_token_ids"].shape
    target_length = batch["target_token_ids"].shape[1]
    return {"batches": 1, "examples": rows, "source_tokens": int(source.sum()),
            "target_tokens": int(target.sum()), "source_target_pairs": int((source * target).sum()),
            "padded_source_tokens": rows * source_length, "padded_target_tokens": rows * target_length,
            "padded_source_target_pairs": rows * source_length * target_length}


def add_counts(total, counts):
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value
    return total


# --- Matmul ceiling ----------------------------------------------------------------------------

def matmul_ceiling(shapes, dtype, repeats=20):
    """Best GFLOP/s of tf.matmul over ``repeats`` calls per shape (wall clock and CPU time)."""
    matmul = tf.function(tf.matmul)
    result = {}
    for m, k, n in shapes:
        a = tf.cast(tf.random.normal((m, k)), dtype)
        b = tf.cast(tf.random.normal((k, n)), dtype)
        matmul(a, b).numpy()
        best_wall = best_cpu = math.inf
        for _ in range(repeats):
            wall, cpu = clocks()
            matmul(a, b).numpy()
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        result[f"{m}x{k}x{n}"] = {"wall": round(2 * m * k * n / best_wall / 1e9, 1),
                                  "cpu": round(2 * m * k * n / best_cpu / 1e9, 1)}
    return result


def best_rate(*measurements):
    """{"wall": GFLOP/s, "cpu": GFLOP/s}: the best over shapes and measurements."""
    return {clock: max(shape[clock] for m in measurements for shape in m.values()) for clock in ("wall", "cpu")}


# --- Timed windows -----------------------------------------------------------------------------

def summarize(windows, ceilings, dtypes=("float32",)):
    """Medians over windows: real target tokens/s, FLOP/s on real tokens and its fraction of the
    matmul ceilings of ``dtypes``.

    windows: [{"wall", "cpu", "target_tokens", "flops", "padded_flops"}].
    """
    result = {"windows": len(windows), "window_wall_seconds": [round(w["wall"], 2) for w in windows],
              "window_cpu_seconds": [round(w["cpu"], 2) for w in windows]}
    for clock in ("wall", "cpu"):
        suffix = "" if clock == "wall" else "_cpu"
        tokens = statistics.median(w["target_tokens"] / w[clock] for w in windows)
        gflops = statistics.median(w["flops"] / w[clock] for w in windows) / 1e9
        padded_gflops = statistics.median(w["padded_flops"] / w[clock] for w in windows) / 1e9
        result[f"real_target_tokens_per{suffix}_s"] = round(tokens)
        result[f"real_gflops_per{suffix}_s"] = round(gflops, 1)
        for dtype in dtypes:
            result[f"fraction_of_{dtype}_ceiling{suffix}"] = round(gflops / ceilings[dtype][clock], 3)
        # FLOPs actually executed on padded shapes: how busy the core is, useful or not.
        result[f"executed_fraction_of_float32_ceiling{suffix}"] = round(
            padded_gflops / ceilings["float32"][clock], 3)
    result["real_train_gflop_per_window"] = round(statistics.median(w["flops"] for w in windows) / 1e9, 1)
    return result


def ours_runner(config, tokenizers, examples, epoch, precision, jit_compile, loss_on_real_positions=True):
    """Our loop with (mixed_precision, jit_compile, loss_on_real_positions), warmed up by one epoch
    (tracing and, under XLA, one compilation per bucket shape). Returns (run_window: one timed
    epoch, info)."""
    config = config.copy_and_resolve_references()
    train_config = config.train
    train_config.mixed_precision, train_config.jit_compile = precision, jit_compile
    trainer.set_precision(train_config)
    strategy = trainer.make_strategy(train_config)
    # The loss on every position is what a model built for static shapes (XLA, TPUs) computes.
    model, optimizer = trainer.build_model_and_optimizer(config, tokenizers, strategy,
                                                         static_shapes=jit_compile or not loss_on_real_positions)

    def dataset_fn(input_context):
        return get_model(config.model_name).build_inputs(config, tokenizers, examples, training=True,
                                                         input_context=input_context).repeat()

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_step = trainer.make_train_step(strategy, model, optimizer, jit_compile)
    executed_flops = train_flops(config.model, tokenizers.target.vocab_size, epoch, padded=True,
                                 logits_on_real_positions=loss_on_real_positions)

    def run_window():
        trainer.set_precision(train_config)  # the policy is global; the other runners change it
        # As the trainer's loop: one step, then its logs read back (which waits for the step).
        tokens, (wall, cpu) = 0.0, clocks()
        for _ in range(epoch["batches"]):
            logs = train_step(iterator)
            tokens += float(logs.pop("target_tokens"))
            values = {k: float(v) for k, v in logs.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"non-finite loss: {values}")
        window = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "target_tokens": tokens,
                  "flops": epoch["flops"], "padded_flops": executed_flops}
        if tokens != epoch["target_tokens"]:
            raise RuntimeError(f"an epoch had {tokens:.0f} target tokens, the counted epoch "
                               f"{epoch['target_tokens']}: windows are not whole epochs")
        return window

    warmup = run_window()
    return run_window, {"mixed_precision": precision or "float32", "jit_compile": jit_compile,
                        "loss_on_real_positions": loss_on_real_positions,
                        "warmup_epoch_wall_seconds": round(warmup["wall"], 2),
                        "warmup_epoch_cpu_seconds": round(warmup["cpu"], 2)}


class StepClock(keras.callbacks.Callback):
    """Wall-clock and CPU time at the end of every training batch."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(clocks())


def recipe_arrays(config, tokenizers, examples, pair):
    """Every kept pair padded to data.max_length on both sides, in a fixed shuffled order."""
    data_config = config.data.copy_and_resolve_references()
    data_config.bucket_boundaries = ()  # one bucket: data.max_length
    dataset = pipeline.make_dataset(examples, tokenizers, data_config, target_language=pair.target_language,
                                    source_languages=pair.source_languages, training=False)
    batches = list(dataset.as_numpy_iterator())
    keys = ("encoder_token_ids", "decoder_token_ids", "target_token_ids")
    arrays = {key: np.concatenate([b[key] for b in batches]) for key in keys}
    # Shuffled once here, not by fit, so that each window's real tokens are known.
    order = np.random.default_rng(config.train.seed).permutation(len(arrays["target_token_ids"]))
    return {key: value[order] for key, value in arrays.items()}


def recipe_runner(config, tokenizers, arrays, steps, warmup_steps):
    """The tutorial recipe (compile + fit) on ``arrays``, warmed up by ``warmup_steps`` steps.
    Returns (run_window: one fit call of 1 + ``steps`` batches, the first untimed, info)."""
    batch_size = config.data.tokens_per_batch // config.data.max_length
    train_config = config.train.copy_and_resolve_references()
    train_config.mixed_precision = ""
    trainer.set_precision(train_config)
    model = workdir_lib.build_model(config, tokenizers)
    model.compile(optimizer=keras.optimizers.Adam(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    position = 0

    def fit(batches):
        nonlocal position
        # The next rows of the shuffled pairs, wrapping round as further epochs would.
        rows = np.arange(position, position + batches * batch_size) % len(arrays["target_token_ids"])
        position += batches * batch_size
        clock = StepClock()
        model.fit({"encoder_token_ids": arrays["encoder_token_ids"][rows],
                   "decoder_token_ids": arrays["decoder_token_ids"][rows]},
                  arrays["target_token_ids"][rows], batch_size=batch_size, epochs=1, shuffle=False,
                  verbose=0, callbacks=[clock])
        return clock.ends, rows

    def run_window():
        trainer.set_precision(train_config)
        # One fit call per window: timed from the end of its first batch, so the start-up of fit
        # (data adapter, iterator) is left out, as one long fit would pay it once.
        ends, rows = fit(1 + steps)
        (wall0, cpu0), (wall1, cpu1) = ends[0], ends[-1]
        timed_rows = rows[batch_size:]
        counts = batch_counts({key: value[timed_rows] for key, value in arrays.items()})
        return {"wall": wall1 - wall0, "cpu": cpu1 - cpu0, "target_tokens": counts["target_tokens"],
                "flops": train_flops(config.model, tokenizers.target.vocab_size, counts),
                "padded_flops": train_flops(config.model, tokenizers.target.vocab_size, counts, padded=True)}

    fit(warmup_steps)
    return run_window, {"batch_size": batch_size, "padded_length": config.data.max_length,
                        "steps_per_window": steps, "jit_compile": bool(model.jit_compile),
                        "mixed_precision": "float32"}


# --- Set-up ------------------------------------------------------------------------------------

def tokenizers_for(config, pair, data_dir):
    """The default run's tokenizer when its tokenizer config is this one, else a new one (trained on
    the whole training split, as the default run does, in a temporary directory)."""
    run_dir = pathlib.Path(FLAGS.run_dir or f"runs/{config.model_name}-{config.pair.replace(',', '+')}")
    saved = workdir_lib.read_json(run_dir / "config.json", {})
    if saved.get("tokenizer") == config.tokenizer.to_dict() and saved.get("pair") == config.pair:
        workdir = run_dir
    else:
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="xling_zoo_bench_"))
    wall = time.perf_counter()
    directory = workdir / workdir_lib.TOKENIZER_DIR
    trained = not directory.exists()
    if trained:
        train_examples = corpus.read_split(config.corpus, pair, "train", data_dir=data_dir)
        languages = sorted(set(pair.source_languages) | set(pair.target_languages))
        train_tokenizers(train_examples, config.tokenizer, languages, seed=config.train.seed).save(
            str(directory))
    return Tokenizers.load(str(directory)), {"from": str(directory), "trained": trained,
                                             "seconds": round(time.perf_counter() - wall, 1)}


def epoch_counts(config, tokenizers, examples):
    """Per-epoch counts of our training batches (the same every epoch: the same pairs land in the
    same buckets), and the CPU seconds the input pipeline alone spends on one epoch."""
    dataset = get_model(config.model_name).build_inputs(config, tokenizers, examples, training=True)
    counts = {}
    for batch in dataset.as_numpy_iterator():  # also the warm-up of the timed pass
        add_counts(counts, batch_counts(batch))
    wall, cpu = clocks()
    for _ in dataset:
        pass
    pipeline_seconds = {"wall": round(time.perf_counter() - wall, 2), "cpu": round(time.process_time() - cpu, 2)}
    counts["flops"] = train_flops(config.model, tokenizers.target.vocab_size, counts)
    counts["padded_flops"] = train_flops(config.model, tokenizers.target.vocab_size, counts, padded=True)
    return counts, pipeline_seconds


def machine_info():
    model_name = flags_line = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name") and not model_name:
                model_name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags_line:
                flags_line = line.split(":", 1)[1]
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"cpu_count": os.cpu_count(), "pinned_core": CORE, "platform": platform.platform(),
            "cpu_model": model_name, "cpu_flags": [f for f in wanted if f in flags_line.split()],
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            # The CPU is shared: a load above cpu_count means the wall-clock figures are understated.
            "load_average_1m_start": load()}


def command():
    env = [f"{name}={os.environ[name]}" for name in ("XLING_ZOO_WHEELS_DIR", "XLING_ZOO_DATA_DIR")
           if name in os.environ]
    return " ".join(env + ["python -m benchmarks.train_throughput"] + sys.argv[1:])


def main(_):
    unknown = set(FLAGS.variants) - set(VARIANTS)
    if unknown:
        raise UserError(f"--variants: unknown {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    start = time.perf_counter()
    machine = machine_info()
    sections = {}

    def section(name, fn, *args):
        wall, cpu = clocks()
        value = fn(*args)
        sections[name] = {"wall": round(time.perf_counter() - wall, 1), "cpu": round(time.process_time() - cpu, 1)}
        return value

    config = config_lib.load_config(MODEL, overrides=FLAGS.set)
    pair = corpus.Pair.parse(config.pair)
    data_dir = FLAGS.data_dir or config.data_dir or None
    # Once, first, as the trainer does: seeding clears TF's kernel cache, which holds the tokenizers.
    keras.utils.set_random_seed(config.train.seed)

    shapes = [(1024, 1024, 1024),
              # The logits matmul of a full batch: [tokens_per_batch, units] @ [units, vocab].
              (config.data.tokens_per_batch, config.model.units, config.tokenizer.vocab_size)]
    dtypes = {"float32": tf.float32, "bfloat16": tf.bfloat16}
    matmul_start = section("matmul_start", lambda: {k: matmul_ceiling(shapes, v) for k, v in dtypes.items()})
    tokenizers, tokenizer_info = section("tokenizer", tokenizers_for, config, pair, data_dir)
    # Read once into memory, as the trainer does.
    examples = trainer.in_memory(corpus.read_split(config.corpus, pair, "train", data_dir=data_dir,
                                                   max_train_examples=FLAGS.max_train_examples))
    epoch, pipeline_seconds = section("epoch_counts", epoch_counts, config, tokenizers, examples)

    runners = {"ours": section("warmup_ours", ours_runner, config, tokenizers, examples, epoch, "", False)}
    arrays = section("recipe_arrays", recipe_arrays, config, tokenizers, examples, pair)
    runners["recipe"] = section("warmup_recipe", recipe_runner, config, tokenizers, arrays, FLAGS.recipe_steps,
                                FLAGS.recipe_warmup_steps)
    for name in FLAGS.variants:
        runners[f"ours_{name}"] = section(f"warmup_ours_{name}", ours_runner, config, tokenizers, examples,
                                          epoch, *VARIANTS[name])

    # Round robin, one window of each in turn: every runner sees the same mix of the other jobs' load.
    windows = {name: [] for name in runners}
    infos = {name: info for name, (_, info) in runners.items()}
    round_loads = [load()]

    def timed_rounds():
        for _ in range(FLAGS.windows):
            for name, (run_window, _) in runners.items():
                windows[name].append(run_window())
            round_loads.append(load())

    section("timed_rounds", timed_rounds)
    # Now, and timed: freeing a runner (its input pipeline above all) can take seconds.
    for name in list(runners):
        section(f"release_{name}", lambda: (runners.pop(name), gc.collect()))
    matmul_end = section("matmul_end", lambda: {k: matmul_ceiling(shapes, v) for k, v in dtypes.items()})
    # The figures use the best of the start and the end of the run.
    ceilings = {dtype: best_rate(matmul_start[dtype], matmul_end[dtype]) for dtype in matmul_start}

    summaries = {}
    for name, info in infos.items():
        bf16 = info["mixed_precision"] == "mixed_bfloat16"
        summaries[name] = {**info, **summarize(windows[name], ceilings, ("float32", "bfloat16") if bf16 else ("float32",))}
    ours, recipe = summaries["ours"], summaries["recipe"]
    for name in [name for name in infos if name not in ("ours", "recipe")]:
        for suffix in ("", "_cpu"):
            key = f"real_target_tokens_per{suffix}_s"
            summaries[name][f"speedup_over_ours{suffix}"] = round(summaries[name][key] / ours[key], 2)
    result = {
        "benchmark": "train_throughput",
        "command": command(),
        "machine": machine,
        "corpus": config.corpus, "pair": str(pair), "max_train_examples": FLAGS.max_train_examples,
        "config": {"model_name": config.model_name, "model": config.model.to_dict(),
                   "tokenizer": config.tokenizer.to_dict(), "data": config.data.to_dict(),
                   "train": {k: config.train[k] for k in ("learning_rate", "warmup_steps", "clipnorm",
                                                          "label_smoothing", "strategy", "seed")}},
        "tokenizer": tokenizer_info,
        "epoch": {**{k: v for k, v in epoch.items() if k not in ("flops", "padded_flops")},
                  "real_train_gflop": round(epoch["flops"] / 1e9, 1),
                  "padded_train_gflop": round(epoch["padded_flops"] / 1e9, 1),
                  "input_pipeline_seconds": pipeline_seconds},
        "matmul_gflops": {"start": matmul_start, "end": matmul_end, "ceiling": ceilings},
        "load_average_1m_per_round": round_loads,
        **summaries,
    }
    for suffix in ("", "_cpu"):
        key = f"real_target_tokens_per{suffix}_s"
        result[f"ours_over_recipe{suffix}"] = round(ours[key] / recipe[key], 2)
    result["requirements"] = {
        "ours_over_recipe_at_least": MIN_OURS_OVER_RECIPE,
        "ours_over_recipe_met": min(result["ours_over_recipe"], result["ours_over_recipe_cpu"]) >= MIN_OURS_OVER_RECIPE,
        "reference_fraction_of_float32_ceiling": REFERENCE_FRACTION_OF_CEILING,
        "reference_fraction_reached": max(ours["fraction_of_float32_ceiling"],
                                          ours["fraction_of_float32_ceiling_cpu"]) >= REFERENCE_FRACTION_OF_CEILING,
    }
    result["machine"]["load_average_1m_end"] = load()
    result["section_seconds"] = sections
    result["total_wall_seconds"] = round(time.perf_counter() - start, 1)
    emit_result(result, FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
