"""train/experiments.py end to end on a tiny budget: each change fine-tunes the same generator for the same
steps, is measured on real DPDD-like and Pixel 4-like scenes and the battery, and lands as one row against the
control."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
import experiments  # noqa: E402
import train_defocusgan as stage2  # noqa: E402

from defocusgan_hf.evaluation.__main__ import main as evaluate  # noqa: E402
from defocusgan_hf.models import DefocusDeblurNet  # noqa: E402
from defocusgan_hf.pipelines import DefocusDeblurPipeline  # noqa: E402

pytestmark = pytest.mark.slow  # two tiny trainings and six evaluations, in this process


def in_process(commands):
    def run(command, log=None):
        commands.append(command)
        if command[1].endswith("train_defocusgan.py"):
            stage2.main(stage2.parse_args(command[2:]))
        else:
            assert command[1:3] == ["-m", "defocusgan_hf.evaluation"]
            assert evaluate(command[3:]) == 0

    return run


def test_one_change_against_the_control_at_equal_steps(tmp_path, real_scenes, monkeypatch):
    torch.manual_seed(0)
    net = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")
    DefocusDeblurPipeline(deblur_net=net).save_pretrained(tmp_path / "init")
    dpdd = real_scenes(("00", "01"), (40, 48), folder="dpdd")
    pixel4 = real_scenes(("001", "002"), (40, 48), seed=1, folder="pixel4")
    commands = []
    monkeypatch.setattr(experiments, "run", in_process(commands))
    out = tmp_path / "experiments"
    argv = ["--output_dir", str(out), "--max_train_steps", "2", "--changes", "brightness_preserving",
            "--dpdd_root", str(dpdd), "--dpdd_scenes", "00,01", "--pixel4_root", str(pixel4), "--pixel4_scenes",
            "001,002", "--", "--init_from", str(tmp_path / "init"), "--resolution", "32", "--train_batch_size", "1",
            "--lr_warmup_steps", "0"]  # fmt: skip
    rows = experiments.main(argv)
    assert [r["change"] for r in rows] == ["control", "brightness_preserving"]
    trainings = [c for c in commands if c[1].endswith("train_defocusgan.py")]
    assert len(trainings) == 2
    control, change = (stage2.parse_args(c[2:]) for c in trainings)
    # the same budget and data; only the change's own flag differs
    assert (control.max_train_steps, control.seed, control.resolution) == (2, 25, 32)
    assert (change.max_train_steps, change.seed, change.resolution) == (2, 25, 32)
    assert control.residual_lowpass_sigma is None and change.residual_lowpass_sigma == 16
    grown = DefocusDeblurNet.from_pretrained(out / "brightness_preserving" / "pipeline", subfolder="deblur_net")
    assert grown.config.residual_lowpass_sigma == 16
    for row in rows:
        assert np.isfinite([row["dpdd_gain"], row["pixel4_gain"], row["dpdd_sharp_in"]]).all()
        assert row["battery_worst"] in experiments_categories()
    table = (out / "experiments.md").read_text()
    assert "2 steps" in table and table.count("\n| control |") == 1 and "(+0.00)" in table
    assert json.loads((out / "experiments.json").read_text())["rows"] == rows
    commands.clear()
    assert experiments.main(argv) == rows and commands == []  # finished rows are reused


def experiments_categories():
    from defocusgan_hf.evaluation.battery import CATEGORIES

    return CATEGORIES


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([], "fp32"),
        (["--mixed_precision", "bf16", "--channels_last"], "bf16 autocast, channels-last"),
        (["--mixed_precision=no", "--channels_last"], "fp32, channels-last"),
        (["--mixed_precision", "bf16", "--mixed_precision", "no"], "fp32"),  # the last flag wins, as in argparse
    ],
)
def test_the_caption_names_the_rows_precision(extra, words):
    assert experiments.precision(extra) == words
