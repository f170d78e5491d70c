"""The transfer experiment's script refuses a meaningless training rule before it trains anything."""

import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "transfer_de_nl" / "run.py"


@pytest.mark.parametrize("flag", ["--budget_minutes=-1", "--eval_every=0"])
def test_transfer_experiment_refuses_a_bad_training_rule(tmp_path, flag):
    result = subprocess.run([sys.executable, str(SCRIPT), flag, f"--runs_dir={tmp_path}", "--tag=_bad"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--budget_minutes must be >= 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (SCRIPT.parent / "results_bad.json").exists()
