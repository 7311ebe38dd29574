#!/usr/bin/env bash
# Continue the shipped generator on one lent GPU within one device-tool call (sized for a 15-minute device budget,
# start-up included; one call runs at most 10 minutes): check the device, train MINUTES (default 8) in bf16 with
# channels-last on the data the shipped generator was trained on last (train/experiments.py's row
# cuhk+more_in_focus_scenes), validate and evaluate on the real scenes kept for choosing (DPDD GIF 00-06, Pixel 4
# 001-004; never the held-out ones), and write to $OUT:
#
#   deblur_net/       the generator in fp16 (config.json, diffusion_pytorch_model.safetensors)
#   train_log.jsonl   train_stdout.log   summary.json (images/s, steps, validation and evaluation figures)
#   eval.md           the evaluation tables (against the shipped generator)
#   run.tar.gz        validation pictures, eval_*/ folders, eval_commands.sh, the pipeline's model card
#
#   bash train/recipes/gpu_stage2.sh [extra train_defocusgan.py flags, which override the ones here]
#
# Knobs: train/recipes/common.sh. A dry run on a CPU, in well under a minute:
#   REQUIRE_GPU=0 MAX_STEPS=2 RESOLUTION=64 BATCH=2 VAL_SAMPLES=1 WORKERS=0 bash train/recipes/gpu_stage2.sh
# The real captures are read from $REAL_ROOT (default ../shared/real), which does not travel to a lent machine;
# without them the run trains without the CUHK in-focus sources and validates on synthetic samples only.
set -euo pipefail
cd "$(dirname "$0")/../.."
recipe=gpu_stage2
source train/recipes/common.sh

data_config=varied+cuhk_in_focus_sources+more_in_focus_scenes
data=(--data_config "$data_config" --cuhk_in_focus_root "$real/cuhk")
if [ ! -d "$real/cuhk/images" ]; then
  data_config=varied+more_in_focus_scenes
  data=(--data_config "$data_config")
  echo "no CUHK photos at $real/cuhk: training on $data_config (the in-focus CUHK sources left out)"
fi
[ -d data/photos ] && data+=(--image_dir data/photos)
[ "$has_real" = 1 ] && data+=(--real_val_root "$real/dpdd_gif" --real_val_scenes 00,01,02,03,04,05,06)

launch train/train_defocusgan.py --init_from "$init" --output_dir "$run" "${data[@]}" \
  --resolution "${RESOLUTION:-512}" --train_batch_size "${BATCH:-8}" --learning_rate 1e-4 --lr_warmup_steps 100 \
  --lr_halving_steps 3000 --lambda_perceptual 0 --lambda_adv 0 --guidance_anneal_steps 0 --use_ema \
  --ema_decay 0.999 --mixed_precision "$precision" --channels_last --seed "${SEED:-27}" \
  --num_validation_samples "${VAL_SAMPLES:-24}" --validation_steps 1000 --checkpointing_steps 1000 \
  --checkpoints_total_limit 1 --logging_steps 50 --dataloader_num_workers "$workers" \
  "${cache_flags[@]}" \
  --bundle_defocus_model "$init" --save_dtype fp16 --max_train_steps "$max_steps" --max_train_minutes "$minutes" "$@"
rm -rf "$out/deblur_net" && mkdir -p "$out/deblur_net"
cp "$run"/pipeline/deblur_net/{config.json,diffusion_pytorch_model.safetensors} "$out/deblur_net/"

models=(--model "$run/pipeline" --model_label "$recipe" --extra_models "shipped=$init")
evaluate dpdd "$real/dpdd_gif" "${models[@]}" --max_images 7 --subset choose=00,01,02,03,04,05,06
evaluate pixel4 "$real/pixel4" "${models[@]}" --max_images 4 --subset choose=001,002,003,004 --shift_tolerance 2
finish --setting "data_config=$data_config" --setting "precision=$precision" --setting channels_last=1 \
  --setting "resolution=${RESOLUTION:-512}" --setting "batch=${BATCH:-8}"
