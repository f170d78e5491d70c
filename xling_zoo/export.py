"""Export a run to a SavedModel for TF Serving: raw strings in, translations out.

    python -m xling_zoo.export --workdir=DIR [--export_dir=DIR/export] [--beam_size=N]

writes ``<export_dir>/<version>/`` (TF Serving's layout: one numbered folder per model version; the
next free number unless ``--version`` is given) with one signature, ``serving_default``:

    inputs:  sentences     tf.string [batch]   raw text, any whitespace
    outputs: translations  tf.string [batch]

The graph is the one evaluation measured (``decode.Translator``: in-graph SentencePiece, cached
greedy or beam search, detokenisation). Bad requests fail with INVALID_ARGUMENT naming the
sentence indices: an empty sentence, one over ``--max_input_bytes``, or one needing more source
tokens than the model was trained on (``data.max_length``; translating a cut sentence would return
a silently wrong answer). The export is written beside its destination, loaded back and checked
against the in-process translator on validation sentences, and only then renamed into place, so a
failed export never leaves a version folder that TF Serving would pick up.
"""

import json
import pathlib
import shutil
import tempfile

import tensorflow as tf
from absl import flags

from xling_zoo import cli
from xling_zoo import workdir as workdir_lib
from xling_zoo.data import corpus
from xling_zoo.data.pipeline import source_lengths
from xling_zoo.decode import Translator, normalize_whitespace
from xling_zoo.errors import UserError

FLAGS = flags.FLAGS

SIGNATURE_KEY = "serving_default"
METADATA_FILE = "xling_zoo_export.json"


class ServingModule(tf.Module):
    """The exported object: input checks in front of a ``Translator``."""

    def __init__(self, translator, max_input_bytes):
        super().__init__(name="xling_zoo_serving")
        self.translator = translator
        self.max_input_bytes = int(max_input_bytes)
        self.max_source_tokens = int(translator.data_config.max_length)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        # Each check gates what follows it: nothing is tokenised or decoded for a bad request.
        input_bytes = tf.strings.length(sentences)
        sentences = _reject(sentences, input_bytes > self.max_input_bytes,
                            f"sentences longer than max_input_bytes={self.max_input_bytes} UTF-8 bytes, "
                            "at index", input_bytes)
        normalized = normalize_whitespace(sentences)
        sentences = _reject(sentences, tf.equal(tf.strings.length(normalized), 0),
                            "empty sentences (nothing but whitespace) at index")
        lengths = source_lengths(normalized, self.translator.tokenizers, self.translator.data_config,
                                 self.translator.target_language)
        sentences = _reject(sentences, lengths > self.max_source_tokens,
                            f"sentences needing more than data.max_length={self.max_source_tokens} source "
                            "tokens (the longest the model was trained on), at index", lengths)
        # An empty request gets an empty answer (the encoder cannot run on zero rows).
        translations = tf.cond(tf.size(sentences) > 0, lambda: self.translator.translate(sentences),
                               lambda: tf.zeros([0], tf.string))
        return {"translations": translations}

    def accepts(self, sentence):
        """Whether ``serve`` takes this sentence (used to pick the export's check sentences)."""
        return (len(sentence.encode("utf-8")) <= self.max_input_bytes and bool(sentence.strip())
                and not self.translator.overlength([sentence]))


def _reject(sentences, bad, message, values=None):
    """``sentences``, once it is checked that no row is ``bad``; else an InvalidArgumentError
    listing the bad rows' indices (and values)."""
    indices = tf.where(bad)[:, 0]
    data = ["xling_zoo serving:", message, indices]
    if values is not None:
        data += ["values:", tf.boolean_mask(values, bad)]
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), data, summarize=20)
    with tf.control_dependencies([check]):
        return tf.identity(sentences)


def next_version(export_dir):
    versions = [int(p.name) for p in pathlib.Path(export_dir).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export_run(workdir, export_dir=None, version=None, beam_size=None, which="best", max_input_bytes=4096,
               check_sentences=16):
    """Writes the SavedModel and returns its version folder."""
    workdir = pathlib.Path(workdir)
    export_dir = pathlib.Path(export_dir) if export_dir else workdir / "export"
    if export_dir.exists() and not export_dir.is_dir():
        raise UserError(f"--export_dir={export_dir} is a file, not a folder")
    if max_input_bytes < 1:
        raise UserError(f"--max_input_bytes must be >= 1, got {max_input_bytes}")
    # Everything that can fail on the run itself fails before anything is written.
    run = workdir_lib.load_run(workdir, which)
    version = next_version(export_dir) if version is None else version
    if version < 1:
        raise UserError(f"--version must be >= 1 (TF Serving's version folders), got {version}")
    destination = export_dir / str(version)
    if destination.exists():
        raise UserError(f"{destination} already exists: TF Serving versions are never overwritten; "
                        "pass another --version or leave it out to take the next free one")

    translator = Translator(run.model, run.tokenizers, run.config, beam_size=beam_size)
    module = ServingModule(translator, max_input_bytes)
    export_dir.mkdir(parents=True, exist_ok=True)
    # Not a number: TF Serving ignores the folder until the rename below.
    staging = pathlib.Path(tempfile.mkdtemp(dir=export_dir, prefix=f".staging-{version}-"))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server running as another user.
    try:
        tf.saved_model.save(module, str(staging),
                            signatures={SIGNATURE_KEY: module.serve.get_concrete_function()})
        checked = []
        if check_sentences:
            examples = corpus.read_split(run.config.corpus, run.pair, "validation",
                                         data_dir=run.config.data_dir or None)
            checked = [e["source"] for e in examples if module.accepts(e["source"])][:check_sentences]
            check_export(staging, translator, checked)
        metadata = {"workdir": str(workdir), "checkpoint": run.checkpoint, "model_name": run.config.model_name,
                    "pair": run.config.pair, "beam_size": translator.beam_size,
                    "max_decode_length": translator.max_decode_length,
                    "max_source_tokens": module.max_source_tokens, "max_input_bytes": module.max_input_bytes,
                    "signature": {"name": SIGNATURE_KEY, "inputs": {"sentences": "tf.string [batch]"},
                                  "outputs": {"translations": "tf.string [batch]"}},
                    "checked_sentences": len(checked)}
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        try:
            # Fails if another export took this version meanwhile (rename onto a non-empty folder).
            staging.rename(destination)
        except OSError as error:
            raise UserError(f"could not publish {destination}: {error}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return destination


def check_export(saved_model_dir, translator, sentences):
    """The exported signature must give exactly the in-process translations."""
    serve = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE_KEY]
    exported = [t.decode("utf-8") for t in serve(sentences=tf.constant(sentences))["translations"].numpy()]
    expected = [t.decode("utf-8") for t in translator.translate(tf.constant(sentences)).numpy()]
    mismatches = [i for i, (a, b) in enumerate(zip(exported, expected)) if a != b]
    if mismatches:
        i = mismatches[0]
        raise RuntimeError(f"the exported model disagrees with the in-process translator on {len(mismatches)} of "
                           f"{len(sentences)} sentences, e.g. {sentences[i]!r}: {exported[i]!r} vs {expected[i]!r}")


def main(argv):
    destination = export_run(FLAGS.workdir, FLAGS.export_dir, FLAGS.version, FLAGS.beam_size, FLAGS.checkpoint,
                             FLAGS.max_input_bytes, FLAGS.check_sentences)
    metadata = json.loads((destination / METADATA_FILE).read_text())
    print(f"Exported {metadata['model_name']} {metadata['pair']} (beam {metadata['beam_size']}) to {destination}")
    print(f"  signature {SIGNATURE_KEY}: sentences (tf.string [batch]) -> translations (tf.string [batch])")
    print(f"  checked: {metadata['checked_sentences']} validation sentences translate identically")
    print(f"  inspect: saved_model_cli show --dir {destination} --all")
    print(f"  serve:   docker run -p 8501:8501 -v {destination.parent.resolve()}:/models/xling "
          "-e MODEL_NAME=xling tensorflow/serving")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Run directory (trained with python -m xling_zoo.train).", required=True)
    flags.DEFINE_string("export_dir", None, "TF Serving model base path (default: <workdir>/export).")
    flags.DEFINE_integer("version", None, "Version folder to write (default: one above the highest existing).")
    flags.DEFINE_integer("beam_size", None, "Beam width baked into the export (default: the run's eval.beam_size).")
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which weights: best validation BLEU or latest.")
    flags.DEFINE_integer("max_input_bytes", 4096, "Longest accepted sentence in UTF-8 bytes, checked before "
                         "tokenising (protects the server from huge requests).")
    flags.DEFINE_integer("check_sentences", 16, "Validation sentences translated by the export and by the "
                         "in-process translator, which must agree before the export is published (0 = skip).")
    cli.run(main)
