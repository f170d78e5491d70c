"""Export a run to a SavedModel for TF Serving: raw strings in, translations out.

    python -m xling_zoo.export --workdir=DIR [--export_dir=DIR/export] [--beam_size=N]
        [--split_long_sentences]

writes ``<export_dir>/<version>/`` (TF Serving's layout: one numbered folder per model version; the
next free number unless ``--version`` is given) with one signature, ``serving_default``:

    inputs:  sentences     tf.string [batch]   raw text, any whitespace
    outputs: translations  tf.string [batch]   "" for a rejected sentence
             status        tf.string [batch]   ok | split | empty | too_long | too_many_tokens

(``serving.STATUSES`` says what each status means). The graph is the one evaluation measured
(``decode.Translator``: in-graph SentencePiece, cached greedy or beam search, detokenisation).

It is written with ``keras.export.ExportArchive``, tracking the variables the signature reads and
the tokenizer's SentencePiece resource, so it runs in TF Serving's session-based loader (a
``tf.Module`` holding a Keras 3 model does not: tensorflow/tensorflow#74297). The export is written
beside its destination under a name TF Serving ignores, loaded back in that loader and checked
against the in-process translator on validation sentences, and only then published as the version
folder. Every path goes through ``tf.io.gfile``, so ``--export_dir`` may be ``gs://...``.

``--format=ctranslate2 [--quantization=int8]`` writes a CTranslate2 model of a transformer run
instead (``xling_zoo/ctranslate2_export.py``).
"""

import json
import os
import pathlib
import uuid

import keras
import tensorflow as tf
from absl import flags

from xling_zoo import cli, serving
from xling_zoo import workdir as workdir_lib
from xling_zoo.errors import UserError

FLAGS = flags.FLAGS

SIGNATURE_KEY = serving.SIGNATURE_KEY
METADATA_FILE = "xling_zoo_export.json"
SAVED_MODEL_FILE = "saved_model.pb"


def is_local(path):
    """True for a folder of the local filesystem, False for a URL (gs://..., ram://...)."""
    return "://" not in str(path)


def next_version(export_dir):
    if not tf.io.gfile.isdir(export_dir):
        return 1
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(export_dir)]  # GCS lists folders as "1/".
    versions = [int(name) for name in names if name.isdigit() and tf.io.gfile.isdir(os.path.join(export_dir, name))]
    return max(versions, default=0) + 1


def export_run(workdir, export_dir=None, version=None, beam_size=None, which="best", max_input_bytes=4096,
               check_sentences=16, split_long_sentences=False, target_language=None):
    """Writes the SavedModel and returns its version folder (a pathlib.Path for a local folder, the
    URL string otherwise). A multi-target run is exported one target language at a time."""
    export_dir = str(export_dir) if export_dir else os.path.join(str(workdir), "export")
    try:
        if tf.io.gfile.exists(export_dir) and not tf.io.gfile.isdir(export_dir):
            raise UserError(f"--export_dir={export_dir} is a file, not a folder")
    except tf.errors.OpError as error:  # e.g. a scheme TensorFlow has no filesystem for.
        raise UserError(f"--export_dir={export_dir} cannot be read: {error.message}") from None
    if max_input_bytes < 1:
        raise UserError(f"--max_input_bytes must be >= 1, got {max_input_bytes}")
    if check_sentences < 0:
        raise UserError(f"--check_sentences must be >= 0, got {check_sentences}")
    # Everything that can fail on the run itself fails before anything is written.
    run = workdir_lib.load_run(workdir, which)
    version = next_version(export_dir) if version is None else version
    if version < 1:
        raise UserError(f"--version must be >= 1 (TF Serving's version folders), got {version}")
    destination = os.path.join(export_dir, str(version))
    if tf.io.gfile.exists(destination):
        raise UserError(f"{destination} already exists: TF Serving versions are never overwritten; "
                        "pass another --version or leave it out to take the next free one")

    graph = run.model.serving_graph(run, max_input_bytes=max_input_bytes, beam_size=beam_size,
                                    target_language=target_language, split_long_sentences=split_long_sentences)
    # Not a number: TF Serving ignores the folder until it is published.
    staging = os.path.join(export_dir, f".staging-{version}-{uuid.uuid4().hex[:12]}")
    try:
        tf.io.gfile.makedirs(staging)
    except tf.errors.OpError as error:
        raise UserError(f"cannot write to --export_dir={export_dir}: {error.message}") from None
    try:
        write_saved_model(graph, staging)
        ops = op_types(staging)
        checked = graph.check(staging, run, check_sentences)
        metadata = {"workdir": str(workdir), "checkpoint": run.checkpoint, "model_name": run.config.model_name,
                    "pair": run.config.pair, **graph.metadata(),
                    "custom_ops": custom_ops(ops), "xla_ops": serving.xla_ops(ops),
                    "checked_sentences": len(checked)}
        with tf.io.gfile.GFile(os.path.join(staging, METADATA_FILE), "w") as f:
            f.write(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
        publish(staging, destination)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return pathlib.Path(destination) if is_local(destination) else destination


def write_saved_model(graph, path):
    """The serving signature as a SavedModel that both TF2's and TF1's (TF Serving's) loaders run.

    ExportArchive saves the variables the signature reads as plain tf.Variables. It is not given the
    Keras model (``track(model)``): that would also save every weight a second time under the
    model's object graph (measured: 96 KB of variables became 176 KB).
    """
    archive = keras.export.ExportArchive()
    with serving.core_tensorflow_ops():
        for resource in graph.trackables():  # E.g. the SentencePiece resources the signature uses.
            archive.track(resource)
        archive.add_endpoint(SIGNATURE_KEY, graph.serve, input_signature=graph.input_signature)
        archive.write_out(path, verbose=False)


def op_types(saved_model_dir):
    """Every op type in the export's graph and functions."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, SAVED_MODEL_FILE), "rb") as f:
        saved_model.ParseFromString(f.read())
    ops = set()
    for meta_graph in saved_model.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def custom_ops(ops):
    """Op types that core TensorFlow does not have (tensorflow-text's): what a model server must link."""
    return sorted(op for op in ops if not hasattr(tf.raw_ops, op) and not op.startswith("Xla"))


def publish(staging, destination):
    """Makes the checked export visible as ``destination``, never over an existing version.

    A local folder is renamed, atomically. Object stores have no atomic folder rename (GCS renames
    object by object; TensorFlow's ram:// moves only the folder entry), so there the files are
    copied, the SavedModel's graph last: a model server polling meanwhile finds no saved_model.pb,
    its load fails and is retried (TF Serving: --max_num_load_retries=5, a minute apart) rather than
    reading half the variables. A failed copy removes what it wrote. Two exports racing for the
    same version number there are not detected (local renames refuse the second one).
    """
    if tf.io.gfile.exists(destination):
        raise UserError(f"could not publish {destination}: another export took this version meanwhile")
    if is_local(destination):
        try:
            tf.io.gfile.rename(staging, destination, overwrite=False)
        except tf.errors.OpError as error:
            raise UserError(f"could not publish {destination}: {error.message}") from None
        return
    files = [os.path.relpath(os.path.join(folder, name), staging)
             for folder, _, names in tf.io.gfile.walk(staging) for name in names]
    files.sort(key=lambda name: (name == SAVED_MODEL_FILE, name))
    try:
        for name in files:
            tf.io.gfile.makedirs(os.path.dirname(os.path.join(destination, name)))
            tf.io.gfile.copy(os.path.join(staging, name), os.path.join(destination, name), overwrite=False)
    except BaseException as error:
        try:
            tf.io.gfile.rmtree(destination)
        except tf.errors.OpError as cleanup_error:
            raise UserError(f"could not publish {destination} ({error}), nor remove the partial copy: "
                            f"{cleanup_error.message}; delete it by hand") from error
        if isinstance(error, tf.errors.OpError):
            raise UserError(f"could not publish {destination}: {error.message}") from None
        raise


def main(argv):
    if FLAGS.format == "ctranslate2":
        from xling_zoo import ctranslate2_export

        ctranslate2_export.main(FLAGS)
        return
    if FLAGS.quantization is not None:
        raise UserError("--quantization is for --format=ctranslate2 only (a SavedModel keeps the trained weights)")
    destination = str(export_run(FLAGS.workdir, FLAGS.export_dir, FLAGS.version, FLAGS.beam_size, FLAGS.checkpoint,
                                 FLAGS.max_input_bytes, FLAGS.check_sentences, FLAGS.split_long_sentences,
                                 FLAGS.target_language))
    with tf.io.gfile.GFile(os.path.join(destination, METADATA_FILE)) as f:
        metadata = json.load(f)
    base_path = os.path.dirname(os.path.abspath(destination) if is_local(destination) else destination)
    into = f"into {metadata['target_language']} " if "target_language" in metadata else ""
    print(f"Exported {metadata['model_name']} {metadata['pair']} {into}(beam {metadata['beam_size']}) to {destination}")
    signature = metadata["signature"]
    print(f"  signature {SIGNATURE_KEY}: {', '.join(signature['inputs'])} (tf.string [batch]) -> "
          f"{', '.join(signature['outputs'])} (tf.string [batch])"
          + ("; long sentences are split" if metadata.get("split_long_sentences") else ""))
    same = ("validation sentences translate identically" if "translations" in signature["outputs"]
            else "prompts from validation sentences are continued identically")
    print(f"  checked: {metadata['checked_sentences']} {same} in the session loader (TF Serving's)")
    if metadata["xla_ops"]:
        print(f"  warning: the graph has XLA-only ops ({', '.join(metadata['xla_ops'])}): a model server runs it "
              "only with --xla_cpu_compilation_enabled=true")
    print(f"  try it:  python -m xling_zoo.tools.saved_model_cli run --dir {destination} --tag_set serve "
          f"--signature_def {SIGNATURE_KEY} --input_exprs 'sentences=[\"Save the file\"]'")
    print(f"  serve:   docker run -p 8501:8501 -v {base_path}:/models/xling -e MODEL_NAME=xling tensorflow/serving"
          if is_local(destination) else f"  serve:   tensorflow_model_server --model_base_path={base_path} ...")


if __name__ == "__main__":
    from xling_zoo import ctranslate2_export

    flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "ctranslate2"], "savedmodel: for TF Serving; "
                      "ctranslate2: a CTranslate2 model folder of a transformer run (xling_zoo/ctranslate2_export.py).")
    flags.DEFINE_enum("quantization", None, list(ctranslate2_export.QUANTIZATIONS), "--format=ctranslate2: the "
                      "weights' type (default float32).")
    flags.DEFINE_string("workdir", None, "Run directory (trained with python -m xling_zoo.train).", required=True)
    flags.DEFINE_string("export_dir", None, "TF Serving model base path, a folder or a URL such as gs://bucket/m "
                        "(default: <workdir>/export); with --format=ctranslate2 the model folder to write "
                        "(default: <workdir>/ctranslate2-<quantization>).")
    flags.DEFINE_integer("version", None, "Version folder to write (default: one above the highest existing).")
    flags.DEFINE_integer("beam_size", None, "Beam width baked into the export (default: a translator's "
                         "eval.beam_size; greedy for a language model).")
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which weights: best validation BLEU or latest.")
    flags.DEFINE_integer("max_input_bytes", 4096, "Longest accepted sentence in UTF-8 bytes, checked before "
                         "tokenising (protects the server from huge requests); longer ones get status too_long.")
    flags.DEFINE_integer("check_sentences", 16, "Validation sentences translated by the export and by the "
                         "in-process translator, which must agree before the export is published (0 = skip).")
    flags.DEFINE_bool("split_long_sentences", False, "Translate a sentence longer than data.max_length source "
                      "tokens in pieces (at sentence ends, then between words) and join the translations, "
                      "instead of returning status too_many_tokens.")
    flags.DEFINE_string("target_language", None, "Language the export writes, for a run with several targets "
                        "(--pair=en-de,nl,fr): one export per target language.")
    cli.run(main)
