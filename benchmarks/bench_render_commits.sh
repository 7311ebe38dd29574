#!/bin/bash
# The DP renderer (DualPixelRenderer, the training data's cost) of earlier commits against today, one thread, the
# arms in turn, each a fresh process that renders the same scenes (same seed; the scene stream is unchanged across
# these commits): mean milliseconds per batch and the ratio of each earlier commit to today, per repetition.
#
#   bash benchmarks/bench_render_commits.sh                           # varied, 2 x 256², 87e7da5 and 7b44512
#   PRESET=eq3 BEFORE=7b44512 REPS=5 bash benchmarks/bench_render_commits.sh
#
# BEFORE: commits to time (default 87e7da5, the last before #27, and 7b44512, before the windowed layers), each
# checked out with `git worktree` into a temporary folder. CALLS: timed calls per run (after 3 warm-up calls).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=${BEFORE:-"87e7da5 7b44512"}
PRESET=${PRESET:-varied}
REPS=${REPS:-3}
CALLS=${CALLS:-30}
RESOLUTION=${RESOLUTION:-256}
BATCH=${BATCH:-2}
PY=${PYTHON:-python}
WORK=$(mktemp -d)
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cleanup() {
  for commit in $BEFORE; do git -C "$ROOT" worktree remove --force "$WORK/$commit" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for commit in $BEFORE; do git -C "$ROOT" worktree add --detach "$WORK/$commit" "$commit" >/dev/null 2>&1; done
cat >"$WORK/time_renderer.py" <<EOF
import time
import torch
from defocusgan_hf.data import DualPixelConfig, DualPixelRenderer
torch.set_num_threads(1)
sharp = torch.rand($BATCH, 3, $RESOLUTION, $RESOLUTION, generator=torch.Generator().manual_seed(1))
renderer, generator = DualPixelRenderer(DualPixelConfig.named("$PRESET")), torch.Generator().manual_seed(0)
for _ in range(3):
    renderer(sharp, generator)
start = time.perf_counter()
for _ in range($CALLS):
    renderer(sharp, generator)
print(1000 * (time.perf_counter() - start) / $CALLS)
EOF
ms() {  # tree -> mean ms per batch (its defocusgan_hf first on the path)
  (cd "$1" && PYTHONPATH="$1" $PY "$WORK/time_renderer.py")
}
echo "preset=$PRESET batch=$BATCH resolution=$RESOLUTION calls=$CALLS today=$(git -C "$ROOT" rev-parse --short HEAD)$(
  git -C "$ROOT" diff --quiet HEAD -- defocusgan_hf || echo '+uncommitted')"
printf "rep"; for commit in $BEFORE; do printf " %s_ms" "$commit"; done; printf " today_ms"
for commit in $BEFORE; do printf " %s/today" "$commit"; done; echo
for rep in $(seq "$REPS"); do
  declare -A t=()
  for commit in $BEFORE; do t[$commit]=$(ms "$WORK/$commit"); done
  today=$(ms "$ROOT")
  printf "%d" "$rep"; for commit in $BEFORE; do printf " %.1f" "${t[$commit]}"; done; printf " %.1f" "$today"
  for commit in $BEFORE; do printf " %.2f" "$(echo "${t[$commit]} / $today" | bc -l)"; done; echo
done
