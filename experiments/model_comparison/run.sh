#!/usr/bin/env bash
# Same-budget quality comparison on the built-in en-de corpus (see README.md).
# Usage (from the repository root): experiments/model_comparison/run.sh [STAGE...]
# Each stage trains one model pinned to one core (CORE, default 1) for MINUTES (default 11); two
# stages may run side by side on CORE=0 and CORE=1. Default: all stages, one after another.
#   lstm_attention lstm_plain transformer_tiny adversarial evaluate
# Round 1 (8 minutes, runs/compare-*, results/round1/) used the stages lstm_attention lstm_plain
# and transformer (configs/transformer.py) with PREFIX=compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/model_comparison
# Pinned to one core: the machine is shared and the other core is someone else's.
PIN="taskset -c ${CORE:-1}"
MINUTES=${MINUTES:-11}
PREFIX=${PREFIX:-compare3}
export XLING_ZOO_WHEELS_DIR=${XLING_ZOO_WHEELS_DIR:-/tmp/corpus_wheels}
mkdir -p $HERE/results

train() {  # NAME MODEL [flags...]
  local name=$1 model=$2; shift 2
  echo "$name start $(date -Is) $(uptime)" >> $HERE/results/loads.txt
  # The core is shared with other people's jobs: wall time alone does not say how much CPU a run got.
  local TIMEFORMAT="$name cpu: %R s wall, %U s user, %S s sys (includes data loading and evaluations)"
  { time $PIN python -m xling_zoo.train --model=$model --pair=en-de --corpus=builtin \
    --workdir=runs/$PREFIX-$name --max_minutes=$MINUTES "$@" 2>&1 | tee $HERE/results/train-$name.log ; } 2>> $HERE/results/loads.txt
  echo "$name end   $(date -Is) $(uptime)" >> $HERE/results/loads.txt
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(lstm_attention lstm_plain transformer_tiny adversarial evaluate)
for stage in "${stages[@]}"; do
  case $stage in
    lstm_attention) train lstm_attention lstm_seq2seq ;;
    lstm_plain) train lstm_plain lstm_seq2seq --set=model.attention=false ;;
    transformer) train transformer transformer ;;
    transformer_tiny) train transformer_tiny transformer --config=configs/transformer_tiny.py ;;
    # adversarial needs several sources: English and Dutch into German (the later --pair wins);
    # evaluate.py scores its en-de test like the others.
    adversarial) train adversarial adversarial --pair=en,nl-de ;;
    evaluate) $PIN python $HERE/evaluate.py --prefix=$PREFIX --output=$HERE/results/results.json ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
