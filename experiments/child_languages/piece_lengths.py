"""How many pieces a vocabulary spells a child's sentences with: why a child of a parent trained on
other languages drops pairs as longer than data.max_length.

    python experiments/child_languages/piece_lengths.py --run=runs/lstm_seq2seq-en-de --pair=en-cs

Prints one JSON line per split and side (the first --max_train_examples training pairs, the whole
test split): the median, 90th and 99th percentile of pieces per sentence, counting the language tag
or eos the pipeline adds, and the share over data.max_length.
"""

import json

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "A run directory whose vocabulary to use (e.g. the parent).", required=True)
flags.DEFINE_string("pair", None, "The child's pair.", required=True)
flags.DEFINE_integer("max_train_examples", 5000, "Training pairs to measure.")


def main(_):
    from xling_zoo import workdir as workdir_lib
    from xling_zoo.data import corpus
    from xling_zoo.data.tokenizer import Tokenizers

    config = workdir_lib.load_config(FLAGS.run)
    tokenizers = Tokenizers.load(workdir_lib.join(FLAGS.run, workdir_lib.TOKENIZER_DIR))
    max_length = config.data.max_length
    for split, limit in (("train", FLAGS.max_train_examples), ("test", 0)):
        rows = corpus.read_split(config.corpus, FLAGS.pair, split, max_train_examples=limit,
                                 data_dir=config.data_dir or None)
        for side, tokenizer in (("source", tokenizers.source), ("target", tokenizers.target)):
            lengths = tokenizer.tokenize([r[side] for r in rows]).row_lengths().numpy() + 2  # Tag or bos, eos.
            p50, p90, p99 = (float(x) for x in np.percentile(lengths, [50, 90, 99]))
            print(json.dumps({"run": FLAGS.run, "pair": FLAGS.pair, "split": split, "side": side, "sentences": len(rows),
                              "pieces_p50": p50, "pieces_p90": p90, "pieces_p99": p99,
                              f"share_over_max_length_{max_length}": round(float(np.mean(lengths > max_length)), 4)}))


if __name__ == "__main__":
    app.run(main)
