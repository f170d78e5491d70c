"""python -m xling_zoo.data: JSON summary, --list, flags, and user errors as exit code 2."""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_cli(*flags):
    return subprocess.run([sys.executable, "-m", "xling_zoo.data", *flags], cwd=REPO, capture_output=True,
                          text=True, check=False)


def test_summary_of_a_tsv_with_a_bad_line(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text("".join(f"Line {n}\tZeile {n}\n" for n in range(200)) + "no tab here\n", encoding="utf-8")
    result = run_cli(f"--corpus=tsv:{path}", "--pair=en-de", f"--data_dir={tmp_path}", "--skip_bad_lines",
                     "--max_train_examples=50")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"pair", "splits", "source_languages", "target_language", "sources", "checksums"} <= set(summary)
    assert summary["pair"] == "en-de" and summary["source_languages"] == ["en"]
    assert summary["splits"]["train"] == 50 and summary["splits"]["validation"] + summary["splits"]["test"] > 0
    assert summary["skipped_lines"] == 1 and summary["sources"]["files"] == [str(path)]

    result = run_cli(f"--corpus=tsv:{path}", "--pair=en-de", f"--data_dir={tmp_path}")
    assert result.returncode == 2
    assert f"{path}:201: has 1 tab-separated columns" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_of_aligned_text_files(tmp_path):
    for language, word in (("en", "Line"), ("de", "Zeile"), ("fr", "Ligne")):
        (tmp_path / f"corpus.{language}").write_text("".join(f"{word} {n}\n" for n in range(30)), encoding="utf-8")
    result = run_cli(f"--corpus=text:{tmp_path / 'corpus'}", "--list", f"--data_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"pair": "de-en", "lines": 30}, {"pair": "de-fr", "lines": 30},
                                         {"pair": "en-fr", "lines": 30}]
