"""The committed training benchmarks still run end to end (on the made-up corpus, tiny models): their
figures come from these scripts, and nothing else in the suite imports them."""

import json
import os
import subprocess
import sys

import pytest

TINY = {
    "lstm_seq2seq": ["--set=model.units=16", "--set=model.embedding_dim=16"],
    "transformer": ["--config=configs/transformer_tiny.py", "--set=model.hidden_dim=16", "--set=model.num_heads=2",
                    "--set=model.intermediate_dim=32", "--set=model.num_encoder_layers=1",
                    "--set=model.num_decoder_layers=1"],
}


@pytest.mark.parametrize("model", sorted(TINY))
def test_the_training_step_profile_runs_and_reports_op_time(model, tiny_tsv, tmp_path):
    output = tmp_path / "profile.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile_train_step", f"--model={model}", *TINY[model],
         f"--set=corpus={tiny_tsv}", "--set=tokenizer.vocab_size=300", "--max_train_examples=200",
         f"--run_dir={tmp_path / 'no_run'}", f"--output={output}"],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    profile = json.loads(output.read_text())
    assert profile["model"] == model and profile["epoch"]["batches"] >= 1
    assert profile["op_events"] > 0 and profile["by_op_type"][0]["seconds"] > 0
    # FLOPs are counted for the LSTM only.
    assert (profile["real_gflops_per_cpu_s_unprofiled"] is None) == (model != "lstm_seq2seq")
