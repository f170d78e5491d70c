"""xling_zoo: a Keras model zoo for cross-lingual transfer learning.

Where things live:
  registry.py       name -> model class (``register_model``, ``get_model``, ``list_models``)
  models/           one file per registered model; ``models/base.py`` is the contract
  layers/           small reusable layers (gradient reversal, ...)
  data/             corpora, SentencePiece tokenizers, the tf.data input pipeline
  trainer.py        the one training loop (every tf.distribute strategy)
  decode.py         greedy and beam search as graph functions
  evaluate.py       sacreBLEU BLEU / chrF / TER
  transfer.py       parent run -> child run: remap vocabularies, swap heads, freeze
  export.py         SavedModel for TF Serving (strings in, translations out)
"""

__version__ = "0.1.0"
