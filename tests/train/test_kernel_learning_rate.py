"""Stage 1's --kernel_learning_rate: the learnable kernel has its own Adam optimiser and rate, so it moves in a few
kernel steps with a usable rate and stays put with a tiny one (the net's rate does not matter in kernel blocks)."""

import sys
from pathlib import Path

import pytest

from defocusgan_hf.models import LearnableBlurKernel

ROOT = Path(__file__).resolve().parents[2]
TINY_DEFOCUS = '{"level_channels": [4, 8, 8], "branch_depths": [1, 1]}'


def kernel_change_after_kernel_steps(tmp_path, kernel_lr: str) -> float:
    """Relative L1 change of the kernel bank after 3 steps that all train the kernel (net-only phase of 0 steps)."""
    sys.path.insert(0, str(ROOT / "train"))
    import train_defocus_map as stage1

    out = tmp_path / f"lr-{kernel_lr}"
    args = stage1.parse_args(
        ["--output_dir", str(out), "--model_config", TINY_DEFOCUS, "--max_coc", "6", "--resolution", "32",
         "--train_batch_size", "2", "--max_train_steps", "3", "--net_only_steps", "0", "--alternate_steps", "100",
         "--learning_rate", "1e-9", "--kernel_learning_rate", kernel_lr, "--checkpointing_steps", "100",
         "--validation_dir", "", "--logging_steps", "1", "--seed", "1"]
    )  # fmt: skip
    assert [stage1.phase_at(step, args) for step in range(3)] == ["kernel"] * 3
    stage1.main(args)
    initial = LearnableBlurKernel(max_radius=6)().detach()
    learned = LearnableBlurKernel.from_pretrained(out / "blur_kernel")().detach()
    return float((learned - initial).abs().sum() / initial.abs().sum())


@pytest.mark.slow
def test_kernel_moves_with_its_own_rate_and_not_with_a_tiny_one(tmp_path):
    assert kernel_change_after_kernel_steps(tmp_path, "3e-2") > 1e-2
    assert kernel_change_after_kernel_steps(tmp_path, "1e-9") < 1e-6


def test_kernel_learning_rate_defaults_to_the_net_rate():
    sys.path.insert(0, str(ROOT / "train"))
    import train_defocus_map as stage1

    assert stage1.parse_args([]).kernel_learning_rate is None
    assert stage1.kernel_lr(stage1.parse_args(["--learning_rate", "3e-5"])) == 3e-5
    assert stage1.kernel_lr(stage1.parse_args(["--kernel_learning_rate", "1e-3"])) == 1e-3
    with pytest.raises(SystemExit):
        stage1.parse_args(["--kernel_learning_rate", "0"])
