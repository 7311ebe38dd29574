"""Stage 2 trains a few steps with the perceptual loss (a VGG19 safetensors file in timm's layout, random weights)
and with the defocus-weighted adversarial loss, each alone driving the generator (L1 off): the losses are finite and
the generator's weights change."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from defocusgan_hf.perceptual.vgg import VGG19_CONVS, VGG19_LAYOUT

pytestmark = pytest.mark.slow  # training subprocesses
ROOT = Path(__file__).resolve().parents[2]
TINY_GENERATOR = '{"level_channels": [4, 4, 8, 8, 8], "branch_depths": [0, 1, 1, 1]}'
COMMON = ["--model_config", TINY_GENERATOR, "--resolution", "32", "--train_batch_size", "2", "--max_train_steps", "2",
          "--checkpointing_steps", "1", "--checkpoints_total_limit", "2", "--logging_steps", "1", "--validation_dir",
          "", "--num_threads", "1", "--seed", "3", "--lambda_content", "0"]  # fmt: skip
WEIGHTS = "diffusion_pytorch_model.safetensors"


def write_timm_vgg19(path: Path, up_to: str = "conv3_4") -> None:
    """Random VGG19 conv weights named as in ``timm/vgg19.tv_in1k`` (``features.{i}.weight|bias``), up to ``up_to``
    (later convs and the classifier, which the loader ignores, are left out to keep the file small), plus one
    ``head.fc`` key as timm has."""
    generator, tensors, in_channels = torch.Generator().manual_seed(0), {}, 3
    channels = [c for c in VGG19_LAYOUT if c != "M"]
    for (name, index), out_channels in zip(VGG19_CONVS.items(), channels):
        std = math.sqrt(2 / (9 * in_channels))
        tensors[f"features.{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * std
        tensors[f"features.{index}.bias"] = torch.zeros(out_channels)
        in_channels = out_channels
        if name == up_to:
            break
    tensors["head.fc.bias"] = torch.zeros(1000)
    save_file(tensors, str(path))


def train(out: Path, *flags: str) -> dict[int, dict]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "train" / "train_defocusgan.py"), "--output_dir", str(out), *COMMON, *flags]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if "loss/total" in row}


def changed(out: Path, name: str = "deblur_net") -> bool:
    """Whether step 2 changed the net's weights (checkpoint-1 against checkpoint-2)."""
    one, two = (load_file(str(out / f"checkpoint-{s}" / name / WEIGHTS)) for s in (1, 2))
    return any(not torch.equal(one[k], two[k]) for k in one)


def test_perceptual_loss_alone_trains_the_generator_from_timm_vgg19(tmp_path):
    vgg = tmp_path / "vgg19.safetensors"
    write_timm_vgg19(vgg)
    log = train(tmp_path / "run", "--vgg_weights", str(vgg), "--lambda_perceptual", "0.012", "--lambda_adv", "0")
    for step in (1, 2):
        assert math.isfinite(log[step]["loss/perceptual"]) and log[step]["loss/perceptual"] > 0
        assert log[step]["loss/total"] == pytest.approx(0.012 * log[step]["loss/perceptual"], rel=1e-5)
    assert changed(tmp_path / "run")


def test_defocus_weighted_adversarial_loss_alone_trains_the_generator(tmp_path):
    out = tmp_path / "run"
    log = train(
        out, "--lambda_perceptual", "0", "--lambda_adv", "0.002", "--adversarial_loss", "defocus", "--critic_steps",
        "2", "--critic_start_step", "0", "--adversarial_start_step", "0",
    )  # fmt: skip
    for step in (1, 2):
        row = log[step]
        values = [row["loss/adversarial"], row["critic/wasserstein"], row["critic/gradient_penalty"]]
        assert all(math.isfinite(v) for v in values) and row["loss/adversarial"] != 0
        assert row["loss/total"] == pytest.approx(0.002 * row["loss/adversarial"], rel=1e-5)
    assert changed(out) and changed(out, "critic")
