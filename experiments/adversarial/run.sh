#!/usr/bin/env bash
# Adversary on vs off for de,fr,es-en on the built-in corpus (see README.md).
# Usage (from the repository root): experiments/adversarial/run.sh [STAGE...]
# Stages run in order, one after another (sequential = fair); default: all of them.
#   adversary_on adversary_confusion adversary_off analyze
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/adversarial
# Pinned to one core: the machine is shared and the other core is someone else's.
PIN="taskset -c ${CORE:-1}"
MINUTES=${MINUTES:-8}
export XLING_ZOO_WHEELS_DIR=${XLING_ZOO_WHEELS_DIR:-/tmp/corpus_wheels}
mkdir -p $HERE/results
# Validation (BLEU on 200 sentences) every 200 steps, ~1.5 minutes of training on one core.
COMMON=(--model=adversarial --pair=de,fr,es-en --corpus=builtin --max_minutes=$MINUTES
        --set=train.eval_every_steps=200 --set=eval.validation_bleu_examples=200)

train() {  # NAME [--set=...]
  local name=$1; shift
  echo "$name start $(date -Is) $(uptime)" >> $HERE/results/loads.txt
  # The core is shared with other people's jobs: wall time alone does not say how much CPU a run got.
  local TIMEFORMAT="$name cpu: %R s wall, %U s user, %S s sys (includes data loading and evaluations)"
  { time $PIN python -m xling_zoo.train "${COMMON[@]}" --workdir=runs/adversarial-$name "$@" 2>&1 \
    | tee $HERE/results/train-$name.log ; } 2>> $HERE/results/loads.txt
  echo "$name end   $(date -Is) $(uptime)" >> $HERE/results/loads.txt
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(adversary_on adversary_confusion adversary_off analyze)
for stage in "${stages[@]}"; do
  case $stage in
    adversary_on) train on ;;
    adversary_confusion) train confusion --set=model.adversary_objective=confusion ;;
    adversary_off) train off --set=model.adversary=false ;;
    # Greedy only: beam 4 would double the evaluation time on a shared core.
    analyze) $PIN python $HERE/analyze.py --beams=1 --output=$HERE/results/results.json ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
