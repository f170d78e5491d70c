"""Our TensorFlow decoding against the CTranslate2 export of the same trained transformer run, side by
side on the run's test set at real lengths (issue 12 §4/§5).

    taskset -c 1 python -m benchmarks.ctranslate2_vs_ours --workdir=runs/transformer-en-de

Exports the run with ``python -m xling_zoo.export --format=ctranslate2`` (float32 and int8, into
--export_root, reused if there), then translates the whole test split with: ours
(``decode.Translator``, what evaluate/translate/the SavedModel run), CTranslate2 float32 and
CTranslate2 int8; greedy and beam 4; batches of --batch_size in the translate CLI's order (sorted by
length); one thread each (TensorFlow intra/inter-op 1, CTranslate2 intra_threads 1, inter_threads
1). Variants are interleaved over --repeats timed passes after a warm-up pass; median wall seconds.
Output tokens are the target pieces of the translations. Also: how many translations equal ours
(greedy must all be equal in float32; beam differs by design, CTranslate2's length penalty being
length^alpha rather than GNMT's), and test BLEU / chrF of each. Prints one JSON line and writes it.
"""

import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags

from benchmarks.report import emit_result

from xling_zoo import cli  # noqa: F401  (sets TF log level before TF loads)

import sacrebleu  # noqa: E402
import tensorflow as tf  # noqa: E402

from xling_zoo import workdir as workdir_lib  # noqa: E402
from xling_zoo import ctranslate2_export  # noqa: E402
from xling_zoo.data import corpus  # noqa: E402
from xling_zoo.decode import Translator  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained transformer run.", required=True)
flags.DEFINE_string("export_root", None, "Where the CTranslate2 exports go (default: WORKDIR/ctranslate2-*).")
flags.DEFINE_integer("batch_size", 32, "Sentences per decoding call.")
flags.DEFINE_integer("repeats", 3, "Timed passes per variant (after one warm-up pass).")
flags.DEFINE_integer("max_examples", 0, "Only the first N test sentences (0 = all).")
flags.DEFINE_string("output", str(pathlib.Path(__file__).parent / "results" / "ctranslate2_vs_ours.json"),
                    "Where the JSON result is written.")


def export(quantization):
    directory = (os.path.join(FLAGS.export_root, f"ctranslate2-{quantization}") if FLAGS.export_root
                 else ctranslate2_export.default_export_dir(FLAGS.workdir, quantization, None, False))
    if not os.path.exists(os.path.join(directory, "model.bin")):
        subprocess.run([sys.executable, "-m", "xling_zoo.export", "--format=ctranslate2", f"--workdir={FLAGS.workdir}",
                        f"--quantization={quantization}", f"--export_dir={directory}"], check=True)
    return directory


def ctranslate2_translator(directory, beam_size):
    """A callable list[str] -> list[str] over one loaded CTranslate2 model (loaded once, not per call)."""
    import json

    import ctranslate2
    import sentencepiece

    with open(os.path.join(directory, ctranslate2_export.METADATA_FILE), encoding="utf-8") as f:
        metadata = json.load(f)
    source = sentencepiece.SentencePieceProcessor(model_file=os.path.join(directory, metadata["sentencepiece"]["source"]))
    target = sentencepiece.SentencePieceProcessor(model_file=os.path.join(directory, metadata["sentencepiece"]["target"]))
    model = ctranslate2.Translator(directory, device="cpu", intra_threads=1, inter_threads=1)
    options = {**metadata["translate_batch"], "beam_size": beam_size}

    def translate(sentences):
        tokens = ctranslate2_export.source_tokens(sentences, source, metadata)
        return [target.decode(r.hypotheses[0]) for r in model.translate_batch(tokens, **options)]

    return translate


def batched(translate, sentences):
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    results = [None] * len(sentences)
    for start in range(0, len(order), FLAGS.batch_size):
        index = order[start:start + FLAGS.batch_size]
        for i, text in zip(index, translate([sentences[i] for i in index])):
            results[i] = text
    return results


def main(argv):
    del argv
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    exports = {q: export(q) for q in ("float32", "int8")}
    run = workdir_lib.load_run(FLAGS.workdir)
    examples = corpus.read_split(run.config.corpus, run.pair, "test", data_dir=run.config.data_dir or None)
    examples = examples[:FLAGS.max_examples] if FLAGS.max_examples else examples
    sources = [e["source"] for e in examples]
    references = [e["target"] for e in examples]
    variants = {}
    for beam in (1, 4):
        name = "greedy" if beam == 1 else "beam4"
        ours = Translator(run.model, run.tokenizers, run.config, beam_size=beam)
        variants[f"ours_{name}"] = lambda s, t=ours: t.translate_all(s, batch_size=len(s))
        for quantization, directory in exports.items():
            variants[f"ctranslate2_{quantization}_{name}"] = ctranslate2_translator(directory, beam)
    outputs = {name: batched(fn, sources) for name, fn in variants.items()}  # Warm-up.
    seconds = {name: [] for name in variants}
    for _ in range(FLAGS.repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            batched(fn, sources)
            seconds[name].append(time.perf_counter() - start)
    tokenizer = run.tokenizers.target
    rows = {}
    for name in variants:
        ours = outputs["ours_greedy" if name.endswith("greedy") else "ours_beam4"]
        tokens = int(tokenizer.tokenize(tf.constant(outputs[name])).flat_values.shape[0])
        wall = statistics.median(seconds[name])
        rows[name] = {"wall_s": round(wall, 3), "output_tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
                      "same_as_ours": sum(a == b for a, b in zip(outputs[name], ours)),
                      "bleu": round(sacrebleu.corpus_bleu(outputs[name], [references]).score, 2),
                      "chrf": round(sacrebleu.corpus_chrf(outputs[name], [references]).score, 2)}
    for name, row in rows.items():
        ours = rows["ours_greedy" if name.endswith("greedy") else "ours_beam4"]
        row["ours_tokens_per_s_ratio"] = round(ours["tokens_per_s"] / row["tokens_per_s"], 2)
    import ctranslate2

    result = {"benchmark": "ctranslate2_vs_ours",
              "command": "python -m benchmarks.ctranslate2_vs_ours " + " ".join(
                  f"--{k}={getattr(FLAGS, k)}" for k in ["workdir", "batch_size", "repeats", "max_examples"]),
              "model": run.config.model_name, "pair": str(run.pair), "sentences": len(sources),
              "ctranslate2": ctranslate2.__version__, "tensorflow": tf.__version__,
              "machine": platform.processor() or platform.machine(), "load_average": list(os.getloadavg()),
              "variants": rows}
    emit_result(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
