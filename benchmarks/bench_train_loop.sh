#!/bin/bash
# The whole stage-2 training loop as a user runs it, before the speed work (#27) against today, one thread each,
# the two arms in turn: steps per second from the wall time of a short and a long run (the difference cancels the
# start-up, the crop-cache build and the final export), per repetition, and the ratio today / before.
#
#   bash benchmarks/bench_train_loop.sh                 # the issue's loop: --lambda_perceptual 0 --lambda_adv 0
#   CRITIC=1 STEPS="4 16" bash benchmarks/bench_train_loop.sh   # the critic on (the default lambda_adv)
#
# BEFORE: the commit timed as "before" (default 87e7da5: the last one before #27's first change), checked out with
# `git worktree` into a temporary folder. TODAY_FLAGS: what today's arm adds (default bf16 autocast, channels-last
# and the crop cache, whose banks are built before timing, in CACHE if given). Results go to stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=${BEFORE:-87e7da5}
REPS=${REPS:-2}
STEPS=${STEPS:-"20 70"}
PY=${PYTHON:-python}
WORK=$(mktemp -d)
CACHE=${CACHE:-$WORK/crop_cache}  # a folder of banks built before is reused
TODAY_FLAGS=${TODAY_FLAGS:-"--mixed_precision bf16 --channels_last --source_cache_dir $CACHE"}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
COMMON="--init_from checkpoints/defocusgan-synthetic --resolution 256 --train_batch_size 2 --num_threads 1
  --lambda_perceptual 0 --data_config varied --validation_steps 100000 --checkpointing_steps 100000 --seed 0"
[ "${CRITIC:-0}" = 1 ] || COMMON="$COMMON --lambda_adv 0"
cleanup() { git -C "$ROOT" worktree remove --force "$WORK/before" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
git -C "$ROOT" worktree add --detach "$WORK/before" "$BEFORE" >/dev/null 2>&1

seconds() {  # arm steps -> wall seconds of one run; a failed run prints its log's end and fails
  local arm=$1 steps=$2 out=$WORK/run_$1_$2 start status=0
  start=$(date +%s.%N)
  if [ "$arm" = before ]; then
    (cd "$WORK/before" && PYTHONPATH="$WORK/before" $PY train/train_defocusgan.py --output_dir "$out" $COMMON \
      --max_train_steps "$steps" >"$out.log" 2>&1) || status=$?
  else
    (cd "$ROOT" && $PY train/train_defocusgan.py --output_dir "$out" $COMMON $TODAY_FLAGS \
      --max_train_steps "$steps" >"$out.log" 2>&1) || status=$?
  fi
  if [ "$status" != 0 ]; then
    echo "the $arm run of $steps steps failed (exit $status):" >&2 && tail -n 20 "$out.log" >&2
    return "$status"
  fi
  rm -rf "$out" "$out.log"
  echo "$(date +%s.%N) - $start" | bc
}
steps_per_second() {  # arm -> steps/s between the short and the long run
  local long short
  long=$(seconds "$1" "$LONG") && short=$(seconds "$1" "$SHORT") || return 1
  echo "($LONG - $SHORT) / ($long - $short)" | bc -l
}
read -r SHORT LONG <<<"$STEPS"
seconds today 2 >/dev/null  # builds the crop-cache banks once, outside the timing
echo "before=$BEFORE today=$(git -C "$ROOT" rev-parse --short HEAD) steps $SHORT -> $LONG, critic=${CRITIC:-0}"
echo "rep before_steps_per_s today_steps_per_s today/before"
for rep in $(seq "$REPS"); do
  b=$(steps_per_second before)
  t=$(steps_per_second today)
  printf "%d %.3f %.3f %.2f\n" "$rep" "$b" "$t" "$(echo "$t / $b" | bc -l)"
done
