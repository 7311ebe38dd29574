#!/usr/bin/env bash
# Continue the shipped generator on one lent GPU for a fixed wall-clock budget, export it in fp16 and copy what
# should be committed to $OUT: everything inside one call of the device tool (sized for a 15-minute device budget).
#
#   bash train/recipes/gpu_continue_stage2.sh [MINUTES] [extra train_defocusgan.py flags, which override the ones here]
#
# MINUTES (default 8) is --max_train_minutes: the run stops itself after it, validates on the 24 samples of
# data/synthetic_val and writes runs/s2-gpu-continue/pipeline. Where the machine lacks diffusers (the H200 image
# does), carry a folder .whl with diffusers and importlib_metadata wheels for its Python (see the device tool's
# README) and name it in `carry`. Then, here: copy $OUT/deblur_net over checkpoints/defocusgan-synthetic/deblur_net,
# add $OUT/train_log.jsonl to the checkpoint's training/ logs, and rerun the evaluation in the model card.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-8}
shift || true
out=${OUT:-outputs/gpu-continue}
run=${RUN_DIR:-runs/s2-gpu-continue}
mkdir -p "$out"
if ! python3 -c "import diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ "${REQUIRE_GPU:-1}" = 1 ]; then
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this recipe is for a GPU (REQUIRE_GPU=0 to run it anyway)')"
fi
rm -rf "$run"  # a scratch folder of this recipe only; the shipped checkpoint is read, never written
# The recipe of the H200 run that the shipped generator continued (model card, "GPU session"), rate halved once more.
python3 -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train_defocusgan.py --init_from checkpoints/defocusgan-synthetic --output_dir "$run" \
  --resolution 512 --train_batch_size 8 --learning_rate 1e-4 --lr_halving_steps 3000 --lr_warmup_steps 100 \
  --lambda_perceptual 0 --lambda_adv 0 --lambda_fft 0.1 --use_ema --ema_decay 0.999 --guidance_anneal_steps 0 \
  --seed 21 --num_validation_samples 24 --validation_steps 1000 --checkpointing_steps 1000 --checkpoints_total_limit 1 \
  --dataloader_num_workers 8 --bundle_defocus_model checkpoints/defocusgan-synthetic --save_dtype fp16 \
  --max_train_steps 1000000 --max_train_minutes "$minutes" "$@" 2>&1 | tee "$out/train_stdout.log"
rm -rf "$out/deblur_net"
cp -r "$run/pipeline/deblur_net" "$out/deblur_net"
cp "$run/train_log.jsonl" "$out/train_log.jsonl"
ls "$run/validation" | tail -n 1 | xargs -I{} cp "$run/validation/{}" "$out/last_validation.png"
grep '"val/psnr"' "$out/train_log.jsonl" | tail -n 3
