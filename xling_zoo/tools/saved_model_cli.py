"""TensorFlow's ``saved_model_cli`` with tensorflow-text's ops registered, as in a model server that
links TF Text (the stock TF Serving build does):

    python -m xling_zoo.tools.saved_model_cli run --dir RUN/export/1 --tag_set serve \
        --signature_def serving_default --input_exprs 'sentences=["Save the file"]'

``run`` loads the export with the session-based loader that TF Serving uses. Imports only
tensorflow and tensorflow_text.
"""

import sys

import tensorflow_text  # noqa: F401  Registers the SentencePiece ops the export's graph uses.
from tensorflow.python.tools import saved_model_cli

if __name__ == "__main__":
    sys.exit(saved_model_cli.main())
