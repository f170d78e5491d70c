"""Command-line clients of an export that import only tensorflow and tensorflow_text, as a model
server has only TensorFlow and TF Text's ops: runnable as files, without xling_zoo installed."""
