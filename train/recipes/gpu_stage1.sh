#!/usr/bin/env bash
# Continue the shipped stage-1 defocus-map net on one lent GPU within one device-tool call (sized for a 15-minute
# device budget, start-up included; one call runs at most 10 minutes): check the device, train MINUTES (default 8)
# in bf16 with channels-last on the model card's last stage-1 recipe (net only, the learned kernel fixed, search
# against the DP views, half the steps on the real DP views of DPDD GIF scenes 00-06 and half on the varied engine),
# evaluate the maps on the real DP views (--dual_pixel: Pixel 4 001-004, kept for choosing and not trained on; DPDD
# 00-06, trained on), and write to $OUT:
#
#   defocus_net/      the net in fp16 (config.json, diffusion_pytorch_model.safetensors)
#   train_log.jsonl   train_stdout.log   summary.json (images/s, steps, validation and evaluation figures)
#   eval.md           the evaluation tables
#   run.tar.gz        blur_kernel/, validation kernels, eval_*/ folders, eval_commands.sh, the net's model card
#
#   bash train/recipes/gpu_stage1.sh [extra train_defocus_map.py flags, which override the ones here]
#
# Knobs: train/recipes/common.sh. A dry run on a CPU, in well under a minute:
#   REQUIRE_GPU=0 MAX_STEPS=2 RESOLUTION=64 BATCH=2 VAL_SAMPLES=1 WORKERS=0 bash train/recipes/gpu_stage1.sh
# The real captures are read from $REAL_ROOT (default ../shared/real), which does not travel to a lent machine;
# without them the run trains on the varied engine alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
recipe=gpu_stage1
source train/recipes/common.sh

data=(--data_config varied)
if [ "$has_real" = 1 ]; then
  data+=(--real_dp_root "$real/dpdd_gif" --real_dp_scenes 00,01,02,03,04,05,06 --real_dp_every 2)
else
  echo "no real DP views: stage 1 trains on the varied engine alone"
fi

launch train/train_defocus_map.py --init_from "$init" --output_dir "$run" "${data[@]}" --kernel learnable \
  --net_only_steps 1000000000 --learning_rate 3e-5 --lr_warmup_steps 50 --use_ema --ema_decay 0.999 \
  --lambda_search 0.2 --search_window_sigma 8 --search_dp_views --smoothness_start_step 0 \
  --resolution "${RESOLUTION:-256}" --train_batch_size "${BATCH:-8}" --mixed_precision "$precision" --channels_last \
  --seed "${SEED:-28}" --num_validation_samples "${VAL_SAMPLES:-24}" --validation_steps 1000 \
  --checkpointing_steps 1000 --checkpoints_total_limit 1 --logging_steps 50 --dataloader_num_workers "$workers" \
  "${cache_flags[@]}" \
  --save_dtype fp16 --max_train_steps "$max_steps" --max_train_minutes "$minutes" "$@"
rm -rf "$out/defocus_net" && mkdir -p "$out/defocus_net"
cp "$run"/defocus_net/{config.json,diffusion_pytorch_model.safetensors} "$out/defocus_net/"

# The shipped pipeline with this net and kernel in it, for the dual-pixel evaluation.
mkdir -p "$run/pipeline_for_eval"
cp -r "$init"/{model_index.json,deblur_net} "$run/pipeline_for_eval/"
cp -r "$run"/{defocus_net,blur_kernel} "$run/pipeline_for_eval/"
models=(--model "$run/pipeline_for_eval" --model_label "$recipe" --dual_pixel)
evaluate pixel4 "$real/pixel4" "${models[@]}" --max_images 4 --subset choose=001,002,003,004 --shift_tolerance 2
evaluate dpdd_trained_on "$real/dpdd_gif" "${models[@]}" --max_images 7 --subset trained_on=00,01,02,03,04,05,06
finish --setting "data_config=varied" --setting "real_dp=$([ "$has_real" = 1 ] && echo dpdd_gif 00-06 || echo none)" \
  --setting "precision=$precision" --setting channels_last=1 --setting "resolution=${RESOLUTION:-256}" \
  --setting "batch=${BATCH:-8}"
