"""The same train command gives the same weights whether or not it prepared the corpus itself."""

import subprocess
import sys

import numpy as np

from tests.conftest import make_pairs, write_tsv
from xling_zoo import workdir as workdir_lib


def test_the_run_that_prepares_the_corpus_trains_to_the_weights_of_a_rerun(tmp_path):
    pairs = make_pairs(700, seed=13)
    files = [write_tsv(tmp_path / f"{split}.tsv", rows)
             for split, rows in (("train", pairs[:600]), ("validation", pairs[600:650]), ("test", pairs[650:]))]
    command = [sys.executable, "-m", "xling_zoo.train", "--model=lstm_seq2seq", "--pair=en-de",
               f"--corpus=tsv:{','.join(map(str, files))}", f"--data_dir={tmp_path / 'data'}", "--steps=4",
               "--deterministic", "--set=model.units=16", "--set=model.embedding_dim=16",
               "--set=tokenizer.vocab_size=300", "--set=train.eval_every_steps=4",
               "--set=eval.validation_bleu_examples=8"]
    weights = []
    for name in ("prepares", "rerun"):  # The first run prepares the corpus in the data dir; the second reads it.
        result = subprocess.run(command + [f"--workdir={tmp_path / name}"], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        weights.append([v.numpy() for v in workdir_lib.load_run(str(tmp_path / name), "latest").model.weights])
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
