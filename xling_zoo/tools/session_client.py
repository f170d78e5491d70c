"""Translate with an export through TF1's session-based loader, the one TF Serving uses, in a process
that imports only tensorflow and tensorflow_text:

    echo '["Save the file", "  "]' | python -m xling_zoo.tools.session_client --dir RUN/export/1
    {"status": ["ok", "empty"], "translations": ["Speichern Sie die Datei", ""]}

Like tensorflow_model_server (unless --xla_cpu_compilation_enabled), it turns XLA compilation off,
so an export that needs XLA-only ops fails here as it would there. With ``--time``: the load time, one-sentence latency (p50/p95 over --requests calls, after warm-up
calls) and sentences/s for batches of --batch_size, with the stdin sentences used in turn.
"""

import argparse
import ctypes
import json
import math
import os
import sys
import time

import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the SentencePiece ops the export's graph uses.
from tensorflow.python.util import deprecation


def disable_xla_compilation():
    """tensorflow::DisableXlaCompilation(), which the model server calls by default: XLA's JIT, and any
    XLA-only op outside a compiled cluster, then fails with "XLA compilation disabled". Returns
    whether it could be called (it is a C++ function of TensorFlow's library, not a Python API)."""
    for library in ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2"):
        try:
            getattr(ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__), library)),
                    "_ZN10tensorflow21DisableXlaCompilationEv")()
            return True
        except (OSError, AttributeError):
            continue
    return False


def load(directory, signature="serving_default", threads=0):
    """A function list of str -> {output name: list of str} running the signature in a session."""
    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default(), deprecation.silence():  # "Use tf.saved_model.load": not what TF Serving uses.
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], directory)
    signature_def = meta_graph.signature_def[signature]
    fetches = {name: info.name for name, info in signature_def.outputs.items()}
    feed = signature_def.inputs["sentences"].name

    def run(sentences):
        outputs = session.run(fetches, {feed: [s.encode("utf-8") for s in sentences]})
        return {name: [v.decode("utf-8") for v in values] for name, values in outputs.items()}

    return run


def percentile(values, q):
    """The nearest-rank q-th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def time_export(run, sentences, requests, batch_size, batch_repeats, warmup=3):
    for i in range(warmup):
        run([sentences[i % len(sentences)]])
    single = []
    for i in range(requests):
        start = time.perf_counter()
        run([sentences[i % len(sentences)]])
        single.append(time.perf_counter() - start)
    batch = [sentences[i % len(sentences)] for i in range(batch_size)]
    run(batch)
    seconds = []
    for _ in range(batch_repeats):
        start = time.perf_counter()
        run(batch)
        seconds.append(time.perf_counter() - start)
    median = sorted(seconds)[len(seconds) // 2]
    return {"single": {"requests": requests, "p50_ms": round(percentile(single, 50) * 1e3, 2),
                       "p95_ms": round(percentile(single, 95) * 1e3, 2)},
            "batch": {"batch_size": batch_size, "repeats": batch_repeats, "median_s": round(median, 4),
                      "sentences_per_s": round(batch_size / median, 1)}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="The export's version folder (EXPORT_DIR/VERSION).")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0 = its default).")
    parser.add_argument("--xla_cpu_compilation_enabled", action="store_true",
                        help="Leave XLA compilation on (the model server's flag of that name).")
    parser.add_argument("--time", action="store_true", help="Measure latency and throughput instead.")
    parser.add_argument("--requests", type=int, default=100, help="One-sentence calls timed (--time).")
    parser.add_argument("--batch_size", type=int, default=64, help="Sentences per batch call (--time).")
    parser.add_argument("--batch_repeats", type=int, default=5, help="Batch calls timed (--time).")
    args = parser.parse_args()
    sentences = json.load(sys.stdin)
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        sys.exit("error: stdin must be a JSON list of strings")
    if not args.xla_cpu_compilation_enabled and not disable_xla_compilation():
        print("warning: could not turn XLA compilation off as tensorflow_model_server does by default",
              file=sys.stderr)
    start = time.perf_counter()
    run = load(args.dir, args.signature, args.threads)
    load_seconds = time.perf_counter() - start
    if not args.time:
        result = run(sentences)
    else:
        if not sentences:
            sys.exit("error: --time needs at least one sentence on stdin")
        result = {"load_seconds": round(load_seconds, 2),
                  **time_export(run, sentences, args.requests, args.batch_size, args.batch_repeats)}
    print(json.dumps(result, ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    main()
