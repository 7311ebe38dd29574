"""The do-no-harm battery: deterministic, every category at 8 and 16 bits, and figures that mean what they say."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from defocusgan_hf.evaluation.__main__ import main
from defocusgan_hf.evaluation.battery import (
    CATEGORIES,
    PSNR_CAP,
    SIZE,
    battery_images,
    evaluate_battery,
    summarise,
)
from defocusgan_hf.models import DefocusDeblurNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline


@pytest.fixture(scope="module")
def images():
    return battery_images(seed=0)


def test_generation_is_bit_identical_and_covers_every_category(images):
    again = battery_images(seed=0)
    assert all(np.array_equal(a.image, b.image) and a.name == b.name for a, b in zip(images, again))
    assert {i.category for i in images} == set(CATEGORIES)
    assert {i.bits for i in images} == {8, 16}
    for item in images:
        assert item.image.shape == (SIZE, SIZE, 3) and item.image.dtype == np.float32
        assert 0 <= item.image.min() and item.image.max() <= 1
        levels = 2**item.bits - 1
        assert np.allclose(item.image * levels, np.round(item.image * levels), atol=1e-3)
    grey = [i for i in images if i.category == "grey"]
    assert all(np.array_equal(i.image[..., 0], i.image[..., 2]) for i in grey)
    assert not np.array_equal(battery_images(seed=1)[0].image, images[0].image)


def test_identity_and_a_brightness_offset(images):
    rows, _ = evaluate_battery(lambda image: image, images)
    summary = summarise(rows)
    assert all(c["psnr_mean"] == PSNR_CAP and c["shift_worst"] == 0 for c in summary["categories"].values())
    offset = [i for i in images if i.category == "gradients_flat"]
    rows, _ = evaluate_battery(lambda image: image + np.float32(1 / 255), offset)
    category = summarise(rows)["categories"]["gradients_flat"]
    assert category["shift_mean"] == pytest.approx(1.0, abs=1e-3)
    assert category["psnr_mean"] == pytest.approx(48.13, abs=0.01)  # 20 log10(255)


def test_a_blur_harms_text_and_stripes_more_than_flat_areas(images):
    rows, _ = evaluate_battery(lambda image: ndimage.gaussian_filter(image, (1.5, 1.5, 0)), images)
    categories = summarise(rows)["categories"]
    assert categories["text"]["psnr_mean"] < categories["gradients_flat"]["psnr_mean"] - 10
    assert categories["stripes_checker"]["psnr_mean"] < categories["gradients_flat"]["psnr_mean"] - 10
    assert summarise(rows)["overall"]["worst_category"] in ("text", "stripes_checker", "point_lights")


def identity_model(folder):
    """A tiny untrained luma-residual pipeline saved to ``folder``: its zero tail makes it the identity."""
    torch.manual_seed(0)
    net = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")
    DefocusDeblurPipeline(deblur_net=net.eval()).save_pretrained(folder)


def test_the_cli_writes_the_table_json_and_contact_sheet(tmp_path):
    identity_model(tmp_path / "model")
    out = tmp_path / "out"
    assert main(["--dataset", "battery", "--model", str(tmp_path / "model"), "--model_label", "tiny",
                 "--output_dir", str(out)]) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    # the untrained net starts as the identity (zero tail): nothing changes, no brightness shift
    assert results["results"]["tiny"]["overall"]["psnr_mean"] == PSNR_CAP
    assert "bright_discs" in (out / "results.md").read_text() and (out / "contact_sheet.png").is_file()
    assert main(["--dataset", "battery", "--model", str(tmp_path / "model"), "--output_dir", str(out)]) == 2


@pytest.mark.parametrize(
    "flag, row",
    [
        # a zero residual added to the float32 image: exact (bf16 weights would round the image to 8 mantissa bits)
        ("--bfloat16_row", "tiny (bf16)"),
        # flips and quarter turns of an identity net, undone and averaged: still the identity
        ("--self_ensemble", "tiny + x8 self-ensemble"),
    ],
)
def test_an_extra_row_of_the_same_net_keeps_an_identity_net_exact(tmp_path, flag, row):
    identity_model(tmp_path / "model")
    out = tmp_path / "out"
    assert main(["--dataset", "battery", "--model", str(tmp_path / "model"), "--model_label", "tiny",
                 flag, "--output_dir", str(out)]) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"tiny", row}
    assert results[row]["overall"]["psnr_mean"] == PSNR_CAP
