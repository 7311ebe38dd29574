#!/bin/bash
# #26, an equal-budget row: the Pixel 4 fine-tune of docs/RESULTS.md (500 steps, seed 16) with Eq. 5's smoothness
# prior on from step 0 at weight LAMBDA (default 1e-5 from step 3000, i.e. off in 500 steps), then scored by
# probe.py --whole_frame_only. Usage: bash eval/stage1_pixel4_test_time/smoothness_prior.sh 0.02 (from the repo root).
# LAMBDA "default" keeps the training default (the prior off before step 3000); STEPS (default 500) sets the budget:
#   STEPS=2000 bash eval/stage1_pixel4_test_time/smoothness_prior.sh default   # the same recipe, four times as long
set -euo pipefail
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
lam=$1 real=${REAL_ROOT:-../shared/real} steps=${STEPS:-500}
out=runs/smoothness_prior_${lam}_$steps cand=runs/cand/smoothness_prior_${lam}_$steps
prior=(--lambda_smooth "$lam" --smoothness_start_step 0)
[ "$lam" = default ] && prior=()
python train/train_defocus_map.py --output_dir "$out" --init_from checkpoints/defocusgan-synthetic \
  --kernel learnable --net_only_steps 1000000 --learning_rate 3e-5 --use_ema --ema_decay 0.99 --lambda_search 0.2 \
  --search_dp_views --real_dp_root "$real/dpdd_gif" --real_dp_scenes 00,01,02,03,04,05,06 \
  --real_dp_root "$real/pixel4" --real_dp_scenes 001,002,003,004 --real_dp_view_order detect \
  --real_dp_view_order a_left --real_dp_every 2 --data_config varied --resolution 128 --train_batch_size 2 \
  --validation_steps 500 --checkpointing_steps 500 --num_validation_samples 8 --max_train_steps "$steps" \
  --num_threads 1 --seed 16 --save_dtype fp16 "${prior[@]}"
rm -rf "$cand" && cp -r checkpoints/defocusgan-synthetic "$cand"  # the shipped pipeline with this stage-1 net
rm -rf "$cand/defocus_net" "$cand/blur_kernel" && cp -r "$out/defocus_net" "$out/blur_kernel" "$cand/"
python eval/stage1_pixel4_test_time/probe.py --root "$real/pixel4" --model "$cand" --maps_dir "$cand/maps" \
  --whole_frame_only
