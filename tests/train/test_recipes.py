"""--recipe paper: the published values, with lengths in epochs turned into steps for this run's data."""

import sys
from pathlib import Path

import pytest
from dpdd_tree import write_dpdd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
import train_defocus_map as stage1  # noqa: E402
import train_defocusgan as stage2  # noqa: E402

VGG = ["--vgg_weights", "vgg19.safetensors"]  # parse-time check only: the file is never read here


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def test_stage1_paper_recipe_in_steps_of_a_dpdd_sized_epoch():
    args = stage1.parse_args(["--recipe", "paper"])  # synthetic data, --epoch_length 350: ceil(350 / 4) = 88 steps
    assert args.recipe_steps == {
        "net_only_steps": 880, "alternate_steps": 440, "alternate_until_steps": 2200, "steps_per_epoch": 88,
    }  # fmt: skip
    assert (args.learning_rate, args.train_batch_size, args.resolution) == (2e-5, 4, 512)
    assert (args.lambda_reblur, args.lambda_smooth, args.smoothness_start_step) == (1000.0, 1e-5, 3000)
    assert (args.kernel, args.kernel_mode) == ("learnable", "bank")
    # net epochs 0-9, kernels 10-14, net 15-19, kernels 20-24, then the net
    phases = {epoch: stage1.phase_at(epoch * 88, args) for epoch in (0, 9, 10, 14, 15, 19, 20, 24, 25, 40)}
    assert [e for e, phase in phases.items() if phase == "kernel"] == [10, 14, 20, 24]
    assert stage1.phase_at(879, args) == "net" and stage1.phase_at(2199, args) == "kernel"


def test_stage2_paper_recipe_on_a_fabricated_dpdd(tmp_path):
    root = write_dpdd(tmp_path / "dpdd", splits=("train",), names=[f"IMG{i:04d}" for i in range(9)])
    args = stage2.parse_args(["--recipe", "paper", "--dataset", "dpdd", "--dpdd_root", str(root), *VGG])
    per_epoch = 3  # ceil(9 images / batch 4)
    assert args.recipe_steps == {
        "max_train_steps": 91 * per_epoch, "lr_halving_steps": 30 * per_epoch, "critic_start_step": 5 * per_epoch,
        "adversarial_start_step": 10 * per_epoch, "steps_per_epoch": per_epoch,
    }  # fmt: skip
    assert (args.learning_rate, args.critic_steps, args.gp_weight, args.guidance_anneal_steps) == (2e-4, 2, 10.0, 2e4)
    assert (args.lambda_content, args.lambda_perceptual, args.lambda_adv) == (1.0, 0.012, 0.002)
    assert (args.generator_preset, args.adversarial_loss, args.train_batch_size) == ("paper", "defocus", 4)
    from defocusgan_hf.training.schedule import lr_lambda

    factor = lr_lambda(0, args.lr_halving_steps)
    assert [factor(epoch * per_epoch) for epoch in (0, 29, 30, 59, 60, 90)] == [1, 1, 0.5, 0.5, 0.25, 0.125]


def test_explicit_flags_override_the_recipe_and_change_the_epoch(monkeypatch):
    args = stage1.parse_args(
        ["--recipe", "paper", "--net_only_steps", "7", "--learning_rate", "1e-4", "--train_batch_size", "8"]
    )
    assert args.net_only_steps == 7 and args.learning_rate == 1e-4
    assert args.alternate_steps == 5 * 44  # ceil(350 / 8) = 44 steps per epoch
    monkeypatch.setenv("WORLD_SIZE", "2")  # two processes: half the steps per epoch
    args = stage2.parse_args(["--recipe", "paper", "--epoch_length", "400", "--gradient_accumulation_steps", "2", *VGG])
    assert args.recipe_steps["steps_per_epoch"] == 25 and args.max_train_steps == 91 * 25


def test_without_a_recipe_the_defaults_are_ours():
    args = stage2.parse_args(["--lambda_perceptual", "0"])
    assert args.recipe_steps == {} and args.lr_halving_steps == 0 and args.critic_start_step == 0
    assert stage1.parse_args([]).net_only_steps == 10_000


def test_help_lists_what_the_recipe_sets(capsys):
    with pytest.raises(SystemExit):
        stage2.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert "--recipe paper:" in shown and "--lr_halving_steps 30 epochs" in shown and "1 : 0.012 : 0.002" in shown
    with pytest.raises(SystemExit, match="known recipes: paper"):
        stage1.parse_args(["--recipe", "nonesuch"])
