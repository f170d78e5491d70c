"""The peer's side of benchmarks/peer_race/race.py, run with the OpenNMT-tf venv's python (not ours).

  onmt_side.py train --minutes=M --stats=FILE -- <onmt-main arguments>
      onmt-main itself (opennmt.bin.main), with a wall-clock budget: OpenNMT-tf has none, so its
      batch generator stops yielding once M minutes have passed since the first batch was asked
      for; the trainer then saves and evaluates as at a normal end. The generator also counts what
      xling_zoo counts: real target tokens (labels' lengths: pieces + </s>) and padded ones, over the
      training seconds (checkpoint saves and evaluations inside the loop excluded, as ours are).
  onmt_side.py infer --repeats=R --timings=FILE -- <onmt-main arguments> infer --features_file ...
      onmt-main infer, with one warm-up pass over the file (writes --predictions_file) and R timed
      passes through the same traced function (predictions written to /dev/null), as
      benchmarks/real_length_decoding.py times ours; onmt-main's own --log_prediction_time would
      time a single pass whose first call also optimises the graph.
  onmt_side.py ct2 --model_dir=DIR --compute_type=float32|int8 --spm=MODEL --sources=FILE ...
      CTranslate2 from Python as its users call it: SentencePiece pieces in, translate_batch on
      batches of --batch_size in the order given, pieces decoded with the same SentencePiece model
      (tokenization included in the time, as our Translator includes it).

Every subcommand writes its figures as JSON; race.py scores the translations.
"""

import argparse
import json
import os
import statistics
import sys
import time


def _cpu_seconds():
    times = os.times()
    return times.user + times.system


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)


def _run_onmt_main(arguments):
    from opennmt.bin import main as onmt_main

    sys.argv = ["onmt-main"] + arguments
    onmt_main.main()


def train(args, onmt_arguments):
    import numpy as np
    import tensorflow as tf
    from opennmt import evaluation, training

    stats = {"minutes": args.minutes, "batches": 0, "target_tokens": 0, "padded_target_tokens": 0,
             "source_tokens": 0, "stopped_by_budget": False, "start": None, "end": None,
             "seconds_saving_or_evaluating_in_loop": 0.0, "longest_gap_between_batches_s": 0.0, "evaluations": []}

    def budgeted_group_batches(dataset, group_size):
        stats["start"] = last = time.time()
        deadline = stats["start"] + 60 * args.minutes
        group = []
        for batch in dataset:
            now = time.time()
            if stats["batches"] >= 2:  # After the first step (tracing). A step far longer than the
                # others means another process took the core: the figures are not clean.
                stats["longest_gap_between_batches_s"] = round(max(stats["longest_gap_between_batches_s"], now - last), 2)
            last = now
            if now >= deadline:
                stats["stopped_by_budget"] = True
                # Before the loop releases the dataset iterator: tearing down its whole-corpus shuffle
                # buffer and threads took 11 s in a smoke run on a shared core, and is not training.
                stats["end"] = now
                break
            features, labels = batch
            stats["batches"] += 1
            stats["target_tokens"] += int(np.sum(labels["length"].numpy()))
            stats["padded_target_tokens"] += int(np.prod(labels["ids_out"].shape))
            stats["source_tokens"] += int(np.sum(features["length"].numpy()))
            group.append(batch)
            if len(group) == group_size:
                yield group
                group = []
        stats["end"] = stats["end"] or time.time()

    def timed(method):
        def wrapper(self, *a, **k):
            start = time.time()
            try:
                return method(self, *a, **k)
            finally:
                if stats["start"] is not None and stats["end"] is None:
                    stats["seconds_saving_or_evaluating_in_loop"] += time.time() - start
        return wrapper

    original_call = evaluation.Evaluator.__call__

    def recording_call(self, step):
        results = original_call(self, step)
        stats["evaluations"].append({"step": int(step), **{k: float(v) for k, v in (results or {}).items()}})
        return results

    training._group_batches = budgeted_group_batches
    training.Trainer._save_checkpoint = timed(training.Trainer._save_checkpoint)
    training.Trainer._evaluate = timed(training.Trainer._evaluate)
    evaluation.Evaluator.__call__ = recording_call
    try:
        _run_onmt_main(onmt_arguments)
    finally:
        if stats["start"] is not None:
            end = stats["end"] or time.time()
            seconds = end - stats["start"] - stats["seconds_saving_or_evaluating_in_loop"]
            stats["training_seconds"] = round(seconds, 2)
            stats["target_tokens_per_second"] = round(stats["target_tokens"] / max(seconds, 1e-9), 1)
            stats["target_padding_fraction"] = round(
                1 - stats["target_tokens"] / max(stats["padded_target_tokens"], 1), 4)
        stats["tensorflow"] = tf.__version__
        _write_json(args.stats, stats)


def infer(args, onmt_arguments):
    import tensorflow as tf
    from opennmt import inference
    from opennmt.utils import misc

    timings = {"repeats": args.repeats, "passes": []}

    def timed_predict_dataset(model, dataset, print_params=None, predictions_file=None, log_time=False):
        del log_time
        infer_fn = tf.function(model.infer, input_signature=(dataset.element_spec,))
        infer_fn.get_concrete_function()  # Traced before any pass, as onmt-main does.

        def one_pass(stream):
            writer = misc.OrderRestorer(lambda p: p.get("index"),
                                        lambda p: model.print_prediction(p, params=print_params, stream=stream))
            wall, cpu = time.perf_counter(), _cpu_seconds()
            for features in dataset:
                predictions = tf.nest.map_structure(lambda t: t.numpy(), infer_fn(features))
                for prediction in misc.extract_batches(predictions):
                    writer.push(prediction)
            return time.perf_counter() - wall, _cpu_seconds() - cpu

        with open(predictions_file, "w", encoding="utf-8") as stream:
            warm_wall, warm_cpu = one_pass(stream)
        timings["warm_up_pass"] = {"wall_s": round(warm_wall, 3), "cpu_s": round(warm_cpu, 3)}
        for _ in range(args.repeats):
            with open(os.devnull, "w", encoding="utf-8") as stream:  # OpenNMT-tf writes bytes to stream.buffer.
                wall, cpu = one_pass(stream)
            timings["passes"].append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)})

    inference.predict_dataset = timed_predict_dataset
    _run_onmt_main(onmt_arguments)
    timings["median_wall_s"] = round(statistics.median(p["wall_s"] for p in timings["passes"]), 3)
    timings["median_cpu_s"] = round(statistics.median(p["cpu_s"] for p in timings["passes"]), 3)
    _write_json(args.timings, timings)


def ct2(args):
    import ctranslate2
    import sentencepiece as spm

    translator = ctranslate2.Translator(args.model_dir, device="cpu", compute_type=args.compute_type,
                                        inter_threads=1, intra_threads=args.threads)
    pieces = spm.SentencePieceProcessor(model_file=args.spm)
    with open(args.sources, encoding="utf-8") as f:
        sources = [line.rstrip("\n") for line in f]
    prefix = [args.source_prefix] if args.source_prefix else []

    def translate_all(beam_size):
        outputs = []
        for start in range(0, len(sources), args.batch_size):
            batch = [prefix + pieces.encode(s, out_type=str) for s in sources[start:start + args.batch_size]]
            results = translator.translate_batch(batch, beam_size=beam_size, max_decoding_length=args.max_decoding_length,
                                                 min_decoding_length=args.min_decoding_length,
                                                 length_penalty=args.length_penalty)
            outputs.extend(pieces.decode(r.hypotheses[0]) for r in results)
        return outputs

    result = {"compute_type": args.compute_type, "ctranslate2": ctranslate2.__version__, "variants": {}}
    for name, beam_size in (("greedy", 1), ("beam4", 4)):
        hypotheses = translate_all(beam_size)  # Warm-up.
        with open(f"{args.hypotheses_prefix}.{name}.txt", "w", encoding="utf-8") as f:
            f.writelines(h + "\n" for h in hypotheses)
        passes = []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), _cpu_seconds()
            translate_all(beam_size)
            passes.append({"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(_cpu_seconds() - cpu, 3)})
        result["variants"][name] = {"beam_size": beam_size, "passes": passes,
                                    "median_wall_s": round(statistics.median(p["wall_s"] for p in passes), 3),
                                    "median_cpu_s": round(statistics.median(p["cpu_s"] for p in passes), 3)}
    _write_json(args.timings, result)


def main():
    argv = sys.argv[1:]
    onmt_arguments = []
    if "--" in argv:
        split = argv.index("--")
        argv, onmt_arguments = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--minutes", type=float, required=True)
    train_parser.add_argument("--stats", required=True)
    infer_parser = commands.add_parser("infer")
    infer_parser.add_argument("--repeats", type=int, default=3)
    infer_parser.add_argument("--timings", required=True)
    ct2_parser = commands.add_parser("ct2")
    ct2_parser.add_argument("--model_dir", required=True)
    ct2_parser.add_argument("--compute_type", default="float32")
    ct2_parser.add_argument("--spm", required=True)
    ct2_parser.add_argument("--sources", required=True, help="Raw source sentences, one per line, in batch order.")
    ct2_parser.add_argument("--source_prefix", default="", help="A piece put before every source (a language tag).")
    ct2_parser.add_argument("--batch_size", type=int, default=32)
    ct2_parser.add_argument("--max_decoding_length", type=int, default=64)
    # CTranslate2's default of 1 forbids an empty translation; ours and OpenNMT-tf's allow it.
    ct2_parser.add_argument("--min_decoding_length", type=int, default=0)
    ct2_parser.add_argument("--length_penalty", type=float, default=0.6)
    ct2_parser.add_argument("--threads", type=int, default=1)
    ct2_parser.add_argument("--repeats", type=int, default=3)
    ct2_parser.add_argument("--hypotheses_prefix", required=True)
    ct2_parser.add_argument("--timings", required=True)
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args, onmt_arguments)
    elif args.command == "infer":
        infer(args, onmt_arguments)
    else:
        ct2(args)


if __name__ == "__main__":
    main()
