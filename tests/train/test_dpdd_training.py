"""Training on DPDD (``--dataset dpdd``) validates on DPDD's own validation split (val_c), on a fabricated tree."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from dpdd_tree import write_dpdd

from defocusgan_hf.training.validation import validation_samples, validation_source

ROOT = Path(__file__).resolve().parents[2]
VAL_NAMES = ("VAL0001", "VAL0002")
TINY_DEFOCUS = '{"level_channels": [4, 8, 8], "branch_depths": [1, 1]}'
TINY_GENERATOR = '{"level_channels": [4, 4, 8, 8, 8], "branch_depths": [0, 1, 1, 1]}'


@pytest.fixture
def dpdd(tmp_path):
    root = write_dpdd(tmp_path / "dpdd", splits=("train",))
    write_dpdd(tmp_path / "dpdd", splits=("val",), names=VAL_NAMES, size=(36, 44))
    return root


def _args(root, **overrides):
    values = dict(dataset="dpdd", dpdd_root=str(root), validation_dir="data/synthetic_val", num_validation_samples=8)
    return argparse.Namespace(**{**values, **overrides})


def test_dpdd_runs_validate_on_dpdd_val_full_images(dpdd):
    samples = validation_samples(_args(dpdd))
    assert [s["name"] for s in samples] == list(VAL_NAMES)  # val_c, not the synthetic set nor the train split
    assert all(s["blurred"].shape == s["sharp"].shape == (3, 36, 44) and "coc" not in s for s in samples)
    assert {"left", "right"} <= set(samples[0])
    assert set(validation_samples(_args(dpdd), dp_views=False)[0]) == {"blurred", "sharp", "name"}
    assert validation_samples(_args(dpdd, validation_dir="")) == []
    assert "val_c" in validation_source(_args(dpdd))


def test_stage1_validation_without_true_maps_reports_the_reblur_loss(dpdd, tmp_path):
    sys.path.insert(0, str(ROOT / "train"))
    import train_defocus_map as stage1

    from defocusgan_hf.models import DualPixelDefocusNet, LearnableBlurKernel

    net = DualPixelDefocusNet(max_coc=6, **json.loads(TINY_DEFOCUS)).eval()
    args = stage1.parse_args(["--output_dir", str(tmp_path), "--dataset", "dpdd", "--dpdd_root", str(dpdd)])
    metrics = stage1.log_validation(
        net, LearnableBlurKernel(max_radius=6), args, Accelerator(cpu=True), 1, validation_samples(args)
    )
    assert set(metrics) == {"val/reblur_l1"} and 0 < metrics["val/reblur_l1"] < 1


def _launch(script, args):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train" / script), *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in (Path(args[1]) / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_both_stages_train_on_dpdd_and_validate_on_val_c(dpdd, tmp_path):
    common = ["--dataset", "dpdd", "--dpdd_root", str(dpdd), "--resolution", "16", "--train_batch_size", "2",
              "--max_train_steps", "2", "--validation_steps", "2", "--logging_steps", "1",
              "--num_threads", "1"]  # fmt: skip
    stage1_rows = _launch(
        "train_defocus_map.py",
        ["--output_dir", str(tmp_path / "s1"), "--model_config", TINY_DEFOCUS, "--max_coc", "6", *common],
    )
    assert any("val/reblur_l1" in row for row in stage1_rows)
    assert not any("val/coc_abs_mae_px" in row for row in stage1_rows)  # DPDD has no true maps
    stage2_rows = _launch(
        "train_defocusgan.py",
        ["--output_dir", str(tmp_path / "s2"), "--model_config", TINY_GENERATOR, "--defocus_model",
         str(tmp_path / "s1"), "--lambda_perceptual", "0", "--lambda_adv", "0", *common],
    )  # fmt: skip
    validated = [row for row in stage2_rows if "val/psnr" in row]
    assert validated and torch.isfinite(torch.tensor(validated[-1]["val/psnr"]))
    card = (tmp_path / "s2" / "pipeline" / "README.md").read_text()
    assert "val_c" in card
