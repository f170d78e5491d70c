#!/usr/bin/env bash
# The peer's side of the race in its own virtualenv: OpenNMT-tf 2.32 supports TensorFlow < 2.14 only,
# so it cannot share xling_zoo's (TF 2.21). Default path /work/onmt-venv, or $ONMT_VENV.
#
#   bash benchmarks/peer_race/setup_opennmt.sh
#
# The pins are what installed from the package index on Python 3.11.7 (2026-11-26); ctranslate2 is
# 3.24 because OpenNMT-tf 2.32 requires ctranslate2 < 4. A rerun only checks them. ONMT_PYTHON
# picks the interpreter (default: the one of xling_zoo's .venv, else python3.11).
set -euo pipefail

VENV="${ONMT_VENV:-/work/onmt-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_PYTHON="$(readlink -f "$HERE/../../.venv/bin/python" 2>/dev/null || true)"
PYTHON="${ONMT_PYTHON:-${DEFAULT_PYTHON:-python3.11}}"
[ -x "$PYTHON" ] || PYTHON=python3.11

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet \
  "OpenNMT-tf==2.32.0" "tensorflow==2.13.1" "tensorflow-addons==0.21.0" "pyonmttok==1.38.1" \
  "ctranslate2==3.24.0" "sacrebleu==2.6.0" "sentencepiece==0.2.3"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md, sys
print("python", sys.version.split()[0])
for name in ("OpenNMT-tf", "tensorflow", "tensorflow-addons", "ctranslate2", "sacrebleu", "sentencepiece",
             "pyonmttok", "numpy"):
    print(name, md.version(name))
PY
