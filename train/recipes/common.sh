# The part gpu_stage1.sh and gpu_stage2.sh share (sourced from the repository root after `recipe=NAME`, not run):
# the set-up of a lent GPU machine, the check of the real captures, and the packing of $OUT.
#
# Knobs (environment): OUT (default outputs/$recipe), RUN_DIR (runs/$recipe, a scratch folder of the recipe, wiped
# first), MINUTES (training budget, default 8), MAX_STEPS, RESOLUTION, BATCH, VAL_SAMPLES, WORKERS, SEED, PRECISION
# (bf16), REAL_ROOT (../shared/real), EVAL (1; 0 skips the evaluation and prints its commands), REQUIRE_GPU (1;
# 0 runs on whatever device there is, for dry runs), PYTHON (python3), INIT_FROM (checkpoints/defocusgan-synthetic),
# SOURCE_CACHE (/tmp/defocusgan_crop_cache: dead leaves and text drawn once into banks there, --source_cache_dir;
# "none" draws every crop anew; keep it out of $OUT, which travels back) and SOURCE_CACHE_SIZE (2048 tiles a source).
started=$(date +%s)
py=${PYTHON:-python3}
out=${OUT:-outputs/$recipe}
run=${RUN_DIR:-runs/$recipe}
real=${REAL_ROOT:-../shared/real}
init=${INIT_FROM:-checkpoints/defocusgan-synthetic}
minutes=${MINUTES:-8}
max_steps=${MAX_STEPS:-1000000000}
precision=${PRECISION:-bf16}
workers=${WORKERS:-8}
source_cache=${SOURCE_CACHE:-/tmp/defocusgan_crop_cache}
cache_flags=()
if [ "$source_cache" != none ]; then
  cache_flags=(--source_cache_dir "$source_cache" --source_cache_size "${SOURCE_CACHE_SIZE:-2048}")
fi
mkdir -p "$out"
if ! "$py" -c "import diffusers" 2>/dev/null; then  # the GPU image has no diffusers: carry its wheels in .whl
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: $py cannot import diffusers and there is no .whl folder of wheels to install it from" >&2
    exit 1
  fi
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ "${REQUIRE_GPU:-1}" = 1 ]; then
  "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this recipe is for a GPU (REQUIRE_GPU=0 runs it anyway)')"
fi
device=$("$py" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
"$py" -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', '| torch', torch.__version__)"
if [ -d "$real/dpdd_gif" ] && [ -d "$real/pixel4" ]; then
  echo "real captures: $real (validation and evaluation on the scenes kept for choosing)"
  has_real=1
else
  echo "real captures: none at $real (../shared does not travel to a lent machine: carry a copy and set REAL_ROOT);"
  echo "  falling back to synthetic data only; evaluate the export here afterwards with the commands printed below"
  has_real=0
fi
rm -rf "$run"  # a scratch folder of this recipe only; the shipped checkpoint is read, never written
mkdir -p "$run"

launch() {  # one process, the recipe's precision; extra flags after the script's
  "$py" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision "$precision" \
    --dynamo_backend no "$@" 2>&1 | tee "$out/train_stdout.log"
}

evaluate() {  # NAME ROOT FLAGS...: defocusgan-eval into $run/eval_NAME (or only its command, without real data)
  local name=$1 root=$2
  shift 2
  local command=("$py" -m defocusgan_hf.evaluation --dataset real --root "$root" --output_dir "$run/eval_$name"
    --overwrite --no_progress --contact_sheet_images 0 --device "$device" "$@")
  printf '%q ' "${command[@]}" >>"$run/eval_commands.sh"
  echo >>"$run/eval_commands.sh"
  if [ "$has_real" = 1 ] && [ "${EVAL:-1}" = 1 ]; then
    "${command[@]}" 2>&1 | tail -n 40
  fi
}

finish() {  # FLAGS of gpu_summary.py: the summary, and one bundle of the rest worth keeping, next to the weights
  cp "$run/train_log.jsonl" "$out/train_log.jsonl"
  if [ "$has_real" = 0 ] || [ "${EVAL:-1}" != 1 ]; then
    echo "evaluation skipped; its commands (run them where the real captures are, --model the fetched weights):"
    cat "$run/eval_commands.sh"
  fi
  "$py" train/recipes/gpu_summary.py --recipe "$recipe" --run_dir "$run" --out "$out" \
    --seconds "$(($(date +%s) - started))" --real_root "$([ "$has_real" = 1 ] && echo "$real" || true)" "$@"
  local keep=() path
  for path in "$run"/validation "$run"/eval_* "$run"/{pipeline,defocus_net}/README.md "$run"/blur_kernel; do
    if [ -e "$path" ]; then keep+=("${path#"$run"/}"); fi
  done
  tar -czf "$out/run.tar.gz" -C "$run" "${keep[@]}"
  ls -l "$out"
}
