"""Stage-2 training with the varied engine, a luma-residual conversion and real-scene validation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from defocusgan_hf.models import DefocusDeblurNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline

pytestmark = pytest.mark.slow  # a training subprocess
ROOT = Path(__file__).resolve().parents[2]


def test_real_validation_is_logged_and_the_export_is_luma(tmp_path, real_scenes):
    real_scenes(shape=(24, 40), folder="real")
    torch.manual_seed(0)
    init = tmp_path / "init"
    DefocusDeblurPipeline(
        deblur_net=DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    ).save_pretrained(init)
    out = tmp_path / "run"
    command = [
        sys.executable, str(ROOT / "train" / "train_defocusgan.py"), "--output_dir", str(out), "--init_from", str(init),
        "--luma_residual", "--data_config", "varied", "--max_train_steps", "2", "--validation_steps", "2",
        "--validation_dir", "", "--real_val_root", str(tmp_path / "real"), "--real_val_scenes", "00,02",
        "--lambda_perceptual", "0", "--lambda_adv", "0", "--guidance_anneal_steps", "0", "--resolution", "32",
        "--train_batch_size", "2", "--num_threads", "1", "--logging_steps", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    real = [row for row in rows if "real/psnr_gain" in row]
    assert real and {"real/sharp_in", "real/sharp_in_min", "real/worst_gain", "real/worse"} <= set(real[-1])
    exported = DefocusDeblurNet.from_pretrained(out / "pipeline", subfolder="deblur_net")
    assert exported.config.output_residual == "luma"


def test_stage1_trains_on_real_dp_captures_mixed_with_synthetic(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("00", "01"):
        folder = tmp_path / "dp" / name
        folder.mkdir(parents=True)
        for file in ("dp_a.png", "dp_b.png", "sharp.png", "blurred.png"):
            Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(folder / file)
    out = tmp_path / "stage1"
    command = [
        sys.executable, str(ROOT / "train" / "train_defocus_map.py"), "--output_dir", str(out),
        "--model_config", '{"level_channels": [4, 8, 8], "branch_depths": [1, 1]}', "--max_coc", "6",
        "--real_dp_root", str(tmp_path / "dp"), "--real_dp_scenes", "01", "--real_dp_every", "2",
        "--data_config", "varied", "--max_train_steps", "3", "--validation_dir", "", "--resolution", "32",
        "--train_batch_size", "2", "--num_threads", "1", "--logging_steps", "1", "--lambda_search", "0.2",
        "--search_dp_views",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Real DP captures: 01" in result.stderr  # only the scene asked for; 00 is held out
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss/total"] for row in rows if "loss/total" in row]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert (out / "defocus_net" / "config.json").is_file() and (out / "blur_kernel" / "config.json").is_file()
