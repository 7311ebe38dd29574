#!/usr/bin/env bash
# Run a benchmark without a training run competing for the CPU: pauses the processes listed in
# runs/*.pid (SIGSTOP), runs the command, and resumes them (SIGCONT) however the command ends.
# Usage: bash benchmarks/quiet.sh python benchmarks/bench_generator.py
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
pids=$(cat "$root"/runs/*.pid 2>/dev/null | tr '\n' ' ')
groups=""
for pid in $pids; do
  kill -0 "$pid" 2>/dev/null || continue
  pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
  groups="$groups $pgid"
done
resume() { for g in $groups; do kill -CONT -- "-$g" 2>/dev/null; done; }
trap resume EXIT INT TERM
for g in $groups; do kill -STOP -- "-$g" 2>/dev/null && echo "[quiet.sh] paused process group $g" >&2; done
"$@"
