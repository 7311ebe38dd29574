"""defocusgan-eval --dataset real on fabricated folders of both layouts."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from defocusgan_hf.evaluation.__main__ import main
from defocusgan_hf.models import DefocusDeblurNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline


def _save(array, path):
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    net = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    folder = tmp_path_factory.mktemp("model")
    DefocusDeblurPipeline(deblur_net=net.eval()).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def scenes(real_scenes):
    return real_scenes(references={"dpdnet": lambda sharp: sharp * 0.9})


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "photos" / "images").mkdir(parents=True)
    (tmp_path / "photos" / "blur_masks").mkdir()
    for name in ("p1", "p2"):
        _save(rng.random((32, 48, 3)), tmp_path / "photos" / "images" / f"{name}.jpg")
        mask = np.zeros((32, 48), np.uint8)
        mask[:, 24:] = 255
        Image.fromarray(mask).save(tmp_path / "photos" / "blur_masks" / f"{name}.png")
    return tmp_path / "photos"


def _run(*args):
    return main(["--dataset", "real", "--no_progress", *map(str, args)])


def test_scene_report_has_every_row_subset_and_file(scenes, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run("--root", scenes, "--model", tiny_model, "--subset", "held out=01,02", "--output_dir", out) == 0
    printed = capsys.readouterr().out
    assert "all scenes" in printed and "held out" in printed and "dpdnet (reference output)" in printed
    payload = json.loads((out / "results.json").read_text())
    assert payload["layout"] == "scenes" and payload["subsets"]["held out"] == ["01", "02"]
    results = payload["results"]
    model_row = results["all scenes"][next(k for k in results["all scenes"] if k.startswith("DefocusGAN"))]
    assert model_row["images"] == 3 and model_row["grey_spread_max"] == 0.0  # a luma-residual net keeps grey grey
    assert np.isfinite(model_row["sharp_in"]) and np.isfinite(model_row["gain"])
    assert results["held out"]["input"]["images"] == 2
    assert (out / "contact_sheet.png").is_file() and (out / "per_image.csv").read_text().count("\n") == 1 + 3 * 3
    # nothing is overwritten without --overwrite
    assert _run("--root", scenes, "--model", tiny_model, "--output_dir", out) == 2
    assert "already exist" in capsys.readouterr().err


def test_masked_photo_report(photos, tiny_model, tmp_path):
    out = tmp_path / "out"
    assert _run("--root", photos, "--model", tiny_model, "--erosion", "2", "--output_dir", out) == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["layout"] == "masked_photos" and payload["erosion_px"] == 2
    (block,) = payload["results"].values()
    assert np.isfinite(next(v for k, v in block.items() if k.startswith("DefocusGAN"))["in_focus"])
    assert "In-focus PSNR" in (out / "results.md").read_text()


def test_bad_real_arguments_are_clear_errors(scenes, photos, tiny_model, tmp_path, capsys):
    assert _run("--root", scenes, "--output_dir", tmp_path / "a") == 2
    assert "needs --model" in capsys.readouterr().err
    assert _run("--root", scenes, "--model", tiny_model, "--subset", "nothing", "--output_dir", tmp_path / "b") == 2
    assert "NAME=SCENE" in capsys.readouterr().err
    assert _run("--root", photos, "--model", tiny_model, "--subset", "x=01", "--output_dir", tmp_path / "c") == 2
    assert _run("--root", tmp_path / "nowhere", "--model", tiny_model, "--output_dir", tmp_path / "d") == 2
    assert "not a folder" in capsys.readouterr().err


def test_dual_pixel_block_on_scenes_with_views(scenes, tmp_path, capsys):
    from defocusgan_hf.models import DualPixelDefocusNet

    torch.manual_seed(0)
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1), max_coc=6)
    torch.nn.init.normal_(defocus.tail.weight, std=0.5)
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    model = tmp_path / "with_stage1"
    DefocusDeblurPipeline(deblur_net=deblur.eval(), defocus_net=defocus.eval()).save_pretrained(model)
    rng = np.random.default_rng(5)
    for folder in scenes.iterdir():
        view = rng.random((32, 48, 3))
        _save(np.roll(view, 1, axis=1), folder / "dp_a.png")
        _save(np.roll(view, -1, axis=1), folder / "dp_b.png")
    out = tmp_path / "dp"
    assert _run("--root", scenes, "--model", model, "--dual_pixel", "--output_dir", out) == 0
    one = tmp_path / "one_order"
    assert _run("--root", scenes, "--model", model, "--dual_pixel", "--dp_one_order", "--output_dir", one) == 0
    assert "one view order" in (one / "results.md").read_text()
    payload = json.loads((out / "results.json").read_text())
    summary = payload["dual_pixel"]["summary"]
    assert summary["scenes"] == 3 and summary["sign_flip"] in (None, 1.0)  # the pipeline's map is swap-antisymmetric
    for scene in payload["dual_pixel"]["per_scene"]:
        # the best constant is the best of every single radius, so a constant map can never beat it
        assert scene["reblur_l1_constant"] <= scene["reblur_l1_net"] + 1e-6 or scene["improvement_over_constant"] > 0
        assert abs(scene["best_constant"]) <= 6
    assert sorted(p.name for p in out.glob("dual_pixel_*.png")) == [
        "dual_pixel_00.png",
        "dual_pixel_01.png",
        "dual_pixel_02.png",
    ]
    assert "Stage 1 on the real DP views" in capsys.readouterr().out
    # a model without a stage-1 net is a clear error
    plain = tmp_path / "plain"
    DefocusDeblurPipeline(deblur_net=deblur.eval()).save_pretrained(plain)
    assert _run("--root", scenes, "--model", plain, "--dual_pixel", "--output_dir", tmp_path / "x") == 2
    assert "no defocus_net" in capsys.readouterr().err


def test_masked_photo_report_adds_a_block_without_flagged_masks(tmp_path, tiny_model):
    from scipy import ndimage

    rng = np.random.default_rng(4)
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "blur_masks").mkdir()
    for name, inverted in (("good", False), ("bad", True)):
        image = rng.random((32, 48, 3))
        image[:, 24:] = ndimage.gaussian_filter(image[:, 24:], (3, 3, 0))  # right half out of focus
        _save(image, root / "images" / f"{name}.png")
        mask = np.zeros((32, 48), np.uint8)
        mask[:, 24:] = 255
        Image.fromarray(255 - mask if inverted else mask).save(root / "blur_masks" / f"{name}.png")
    out = tmp_path / "out"
    assert _run("--root", root, "--model", tiny_model, "--erosion", "2", "--output_dir", out) == 0
    payload = json.loads((out / "results.json").read_text())
    assert list(payload["subsets"].values()) == [["bad", "good"], ["good"]]
    assert list(payload["data_notes"]) == ["bad"]


def test_extra_models_may_be_repeated_and_a_label_given_twice_is_refused():
    from defocusgan_hf.evaluation.real_report import parse_extra_models

    assert parse_extra_models(["a=/x,b=/y", "c=/z"]) == {"a": "/x", "b": "/y", "c": "/z"}
    assert parse_extra_models("a=/x") == {"a": "/x"} and parse_extra_models(None) == {}
    with pytest.raises(ValueError, match="twice"):
        parse_extra_models(["a=/x", "a=/y"])
    with pytest.raises(ValueError, match="LABEL=PATH"):
        parse_extra_models(["a"])


def test_the_bf16_row_sits_beside_the_float32_one(scenes, tiny_model, tmp_path):
    out = tmp_path / "out"
    assert (
        _run("--root", scenes, "--model", tiny_model, "--model_label", "tiny", "--bfloat16_row", "--output_dir", out)
        == 0
    )
    payload = json.loads((out / "results.json").read_text())
    rows = payload["results"]["all scenes"]
    assert {"tiny", "tiny (bf16)"} <= set(rows) and payload["models"]["tiny (bf16)"] == str(tiny_model)
    # bf16 autocast of the same weights (a random net that costs 4 dB here): the gain agrees within 0.1 dB
    assert abs(rows["tiny (bf16)"]["gain"] - rows["tiny"]["gain"]) < 0.1
