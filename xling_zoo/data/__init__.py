"""Data: corpora, SentencePiece tokenizers and the tf.data input pipeline.

  corpus.py     corpus specs (builtin | tfds:NAME/CONFIG | tsv:PATH | text:PREFIX), language pairs,
                splits as tf.data datasets of {"source", "target", "source_language"} strings
  builtin.py    the built-in multiway corpus: gettext catalogs from pinned PyPI packages
  local_files.py  tsv: and text: corpora, prepared as TFDS datasets named by content hash
  hash_split.py the split rule: a hash of the English side picks train/validation/test
  tokenizer.py  SentencePiece training, in-graph tokenization (tensorflow-text), save/load
  pipeline.py   tokenized, length-bucketed, token-budget batches, sharded by tf.distribute.InputContext
"""
