"""The GPU recipes (train/recipes/gpu_stage{1,2}.sh) as dry runs on the CPU (REQUIRE_GPU=0, two steps at 64 px)
from the shipped checkpoint, on fabricated real captures in the layout of ../shared/real: what they hand back in
$OUT fits the device tool (at most 8 files, 2 folders down), the fp16 weights load, and the evaluations ran."""

import argparse
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.training.args import synthetic_config

pytestmark = pytest.mark.slow  # each recipe is a training subprocess and two evaluations (≈15-25 s)
ROOT = Path(__file__).resolve().parents[2]
DRY_RUN = {"REQUIRE_GPU": "0", "MAX_STEPS": "2", "RESOLUTION": "64", "BATCH": "2", "VAL_SAMPLES": "1", "WORKERS": "0"}


@pytest.fixture
def real_root(tmp_path, real_scenes):
    """dpdd_gif/00..06 and pixel4/001..004 (with DP views), and a cuhk/ of 42 photos entirely in focus."""

    def shifted(sharp):
        return np.roll(sharp, 1, axis=1), np.roll(sharp, -1, axis=1)

    real_scenes([f"{i:02d}" for i in range(7)], shape=(72, 96), smooth=1.5, dp_views=shifted, folder="real/dpdd_gif")
    real_scenes([f"{i:03d}" for i in range(1, 5)], shape=(72, 96), smooth=1.5, dp_views=shifted, folder="real/pixel4")
    cuhk = tmp_path / "real" / "cuhk"
    (cuhk / "images").mkdir(parents=True)
    (cuhk / "blur_masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 43):
        Image.fromarray((rng.random((100, 100, 3)) * 255).astype(np.uint8)).save(cuhk / "images" / f"p{i:04d}.jpg")
        Image.fromarray(np.zeros((100, 100), np.uint8)).save(cuhk / "blur_masks" / f"p{i:04d}.png")
    return tmp_path / "real"


def dry_run(recipe: str, tmp_path: Path, real: Path) -> tuple[Path, str]:
    out = tmp_path / "out"
    env = {**os.environ, **DRY_RUN, "OUT": str(out), "RUN_DIR": str(tmp_path / "run"), "REAL_ROOT": str(real),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "SOURCE_CACHE": str(tmp_path / "crop_cache"), "SOURCE_CACHE_SIZE": "3"}  # fmt: skip
    command = ["bash", str(ROOT / "train" / "recipes" / recipe), "--num_threads", "1"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(f.count("/") <= 2 for f in files), files  # what the device tool hands back
    assert len(list((tmp_path / "crop_cache").glob("*.npy"))) == 2  # dead leaves and text, outside $OUT
    return out, result.stdout


def assert_fp16(folder: Path) -> None:
    with safe_open(str(folder / "diffusion_pytorch_model.safetensors"), "pt") as weights:
        assert {str(weights.get_slice(k).get_dtype()) for k in weights.keys()} == {"F16"}


def test_stage2_recipe_dry_run_exports_fp16_weights_and_evaluates(tmp_path, real_root):
    out, stdout = dry_run("gpu_stage2.sh", tmp_path, real_root)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "deblur_net/config.json", "deblur_net/diffusion_pytorch_model.safetensors", "eval.md", "run.tar.gz",
        "summary.json", "train_log.jsonl", "train_stdout.log",
    ]  # fmt: skip
    assert_fp16(out / "deblur_net")
    net = DefocusDeblurNet.from_pretrained(out / "deblur_net")
    assert sum(p.numel() for p in net.parameters()) > 4_000_000  # the shipped generator, continued
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["images_per_second"] > 0 and "images/s" in stdout
    assert summary["settings"]["data_config"] == "varied+cuhk_in_focus_sources+more_in_focus_scenes"
    assert "real/psnr_gain" in summary["validation"] and "val/psnr" in summary["validation"]
    evaluations = summary["evaluations"]
    assert sorted(evaluations) == ["eval_dpdd", "eval_pixel4"]
    assert evaluations["eval_dpdd"]["subsets"]["all scenes"] == [f"{i:02d}" for i in range(7)]  # choosing only
    assert set(evaluations["eval_pixel4"]["results"]["choose"]) >= {"gpu_stage2", "shipped", "input"}
    with tarfile.open(out / "run.tar.gz") as bundle:
        names = bundle.getnames()
    assert "eval_dpdd/per_image.csv" in names and "pipeline/README.md" in names
    assert any(n.startswith("validation/step-") for n in names)


def test_stage1_recipe_dry_run_exports_fp16_weights_and_evaluates_the_maps(tmp_path, real_root):
    out, stdout = dry_run("gpu_stage1.sh", tmp_path, real_root)
    assert_fp16(out / "defocus_net")
    DualPixelDefocusNet.from_pretrained(out / "defocus_net")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["images_per_second"] > 0 and "images/s" in stdout
    assert "Real DP captures: 00" in (out / "train_stdout.log").read_text()  # half the steps on the real views
    assert sorted(summary["evaluations"]) == ["eval_dpdd_trained_on", "eval_pixel4"]
    assert summary["evaluations"]["eval_pixel4"]["dual_pixel"]
    with tarfile.open(out / "run.tar.gz") as bundle:
        assert "blur_kernel/config.json" in bundle.getnames()


def test_stage2_recipe_falls_back_without_real_captures(tmp_path):
    out, stdout = dry_run("gpu_stage2.sh", tmp_path, tmp_path / "absent")
    assert "falling back to synthetic data only" in stdout and "evaluation skipped" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["data_config"] == "varied+more_in_focus_scenes" and summary["evaluations"] == {}
    assert (out / "eval.md").read_text().startswith("No evaluation: no real captures were found")
    # The commands it prints for later parse as defocusgan-eval command lines.
    from defocusgan_hf.evaluation.__main__ import parse_args

    lines = [line for line in stdout.splitlines() if " -m defocusgan_hf.evaluation " in line]
    assert len(lines) == 2
    for line in lines:
        args = parse_args(line.split(" -m defocusgan_hf.evaluation ")[1].replace("\\,", ",").split())
        assert args.dataset == "real" and args.max_images in (4, 7) and args.subset


def test_cuhk_in_focus_root_moves_the_cuhk_sources_and_needs_that_change():
    args = argparse.Namespace(
        data_config="varied+cuhk_in_focus_sources", clean_data=False, cuhk_in_focus_root="/data/cuhk"
    )
    assert synthetic_config(args).cuhk_in_focus_root == "/data/cuhk"
    args.cuhk_in_focus_root = None
    assert synthetic_config(args).cuhk_in_focus_root == "../shared/real/cuhk"
    args.data_config, args.cuhk_in_focus_root = "varied", "/data/cuhk"
    with pytest.raises(ValueError, match="cuhk_in_focus_sources"):
        synthetic_config(args)
