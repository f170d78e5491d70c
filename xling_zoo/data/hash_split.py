"""The hash rule that assigns a sentence pair to train, validation or test, and orders train.

A pair's split depends only on its *key text*: the English side when the pair has one (for the
built-in corpus: the English msgid, also for pivot pairs like de-nl), otherwise the source side.
Because the key is the same text for every target language, an English sentence that is in the
en-nl test set is in the test set of en-de and of every other pair too: a parent model never
trains on its child's test sentences.

    bucket = int.from_bytes(sha256(key)[:8], "big") % 1000
    test: bucket < 30    validation: 30 <= bucket < 60    train: the rest     (3% / 3% / 94%)

Training pairs are stored sorted by sha256(key), so the first N of them are a deterministic random
subsample and the first 1k are inside the first 2k (``max_train_examples``).
"""

import hashlib

import tensorflow as tf

SPLITS = ("train", "validation", "test")
BUCKETS = 1000
TEST_BUCKETS = 30
VALIDATION_BUCKETS = 30


def normalize_whitespace(text):
    """Runs of whitespace one space, ends stripped: ``pipeline.normalize_whitespace``'s rule in Python
    (the same text for every string, tests/test_text_normalisation.py)."""
    return " ".join(text.split())


def key_digest(text):
    """sha256 of the whitespace-normalised key text: the hash both the split and the order use."""
    return hashlib.sha256(normalize_whitespace(text).encode("utf-8")).digest()


def split_of_digest(digest):
    bucket = int.from_bytes(digest[:8], "big") % BUCKETS
    if bucket < TEST_BUCKETS:
        return "test"
    if bucket < TEST_BUCKETS + VALIDATION_BUCKETS:
        return "validation"
    return "train"


def split_of(text):
    return split_of_digest(key_digest(text))


def key_language(source_language, target_language):
    """The language whose side is hashed: English if the pair has it, else the source."""
    return "en" if "en" in (source_language, target_language) else source_language


def split_rows(rows, key_of, sort_held_out=True):
    """{split: rows} by the hash of ``key_of(row)``.

    Train is sorted by (hash, row), so it does not depend on the input order. Validation and test
    are sorted the same way, or keep the input order with ``sort_held_out=False`` (a user's own
    files, whose order may matter to them).
    """
    keyed = {name: [] for name in SPLITS}
    for row in rows:
        digest = key_digest(key_of(row))
        keyed[split_of_digest(digest)].append((digest, row))
    return {name: [row for _, row in (sorted(pairs) if name == "train" or sort_held_out else pairs)]
            for name, pairs in keyed.items()}


def sort_by_key(rows, key_of):
    """Rows in hash order: the order of training pairs, whose first N are a random subsample."""
    return [row for _, row in sorted((key_digest(key_of(row)), row) for row in rows)]


def file_sha256(path):
    """sha256 of a file on any filesystem tf.io.gfile reaches (local, gs://, ram://)."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum(rows):
    """sha256 over ``a<TAB>b<NEWLINE>`` for the rows in stored order: identifies a prepared split."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(("\t".join(row) + "\n").encode("utf-8"))
    return digest.hexdigest()
