"""Real Pixel 4-like scene folders (16-bit grey, known view order, a relative defocus map), the shift-tolerant
PSNR, the brightness shift and the contact sheet's shared crop."""

import json

import cv2
import numpy as np
import pytest
from scipy import ndimage

from defocusgan_hf.evaluation.__main__ import main
from defocusgan_hf.evaluation.contact_sheets import shared_crop
from defocusgan_hf.evaluation.metrics import psnr
from defocusgan_hf.evaluation.real_captures import detect_scene_format, load_scenes, reference_rows
from defocusgan_hf.evaluation.real_scoring import best_shift_psnr, brightness_shift, shift_tolerant_psnr


def _save16(image, path):
    cv2.imwrite(str(path), (np.clip(image, 0, 1) * 65535 + 0.5).astype(np.uint16))


@pytest.fixture
def pixel4_root(tmp_path):
    """Two fabricated Pixel 4-like scenes: 16-bit grey PNGs, the five files of ../shared/real/pixel4."""
    rng = np.random.default_rng(3)
    root = tmp_path / "pixel4"
    for name in ("001", "002"):
        folder = root / name
        folder.mkdir(parents=True)
        sharp = ndimage.gaussian_filter(rng.random((48, 64)), 1.0)
        left, right = np.roll(sharp, 1, axis=1), np.roll(sharp, -1, axis=1)
        for file, image in (("sharp", sharp), ("blurred", (left + right) / 2), ("dp_a", left), ("dp_b", right)):
            _save16(image, folder / f"{file}.png")
        cv2.imwrite(str(folder / "defocus_map.png"), (rng.random((48, 64)) * 255).astype(np.uint8))
    return root


def test_pixel4_scenes_load_as_rgb_with_their_map_and_view_order(pixel4_root):
    assert detect_scene_format(pixel4_root) == "pixel4"
    scenes = load_scenes(pixel4_root, with_dp_views=True)
    assert [s.name for s in scenes] == ["001", "002"]
    scene = scenes[0]
    assert scene.image.shape == (48, 64, 3) and np.array_equal(scene.image[..., 0], scene.image[..., 2])
    assert scene.image.dtype == np.float32 and len(np.unique(scene.image)) > 256  # read at 16 bits
    assert scene.dp_a_is_left is True and scene.dp_views is not None
    assert scene.defocus_map is not None and scene.defocus_map.shape == (48, 64)
    assert scene.references == {} and reference_rows(scenes) == {}  # the map is not a method's output


def test_dpdd_like_scenes_keep_the_unknown_view_order(real_scenes):
    root = real_scenes(dp_views=lambda sharp: (sharp, sharp))
    assert detect_scene_format(root) == "scenes"
    assert load_scenes(root, with_dp_views=True)[0].dp_a_is_left is None


def test_a_shifted_image_scores_high_only_with_the_tolerance():
    rng = np.random.default_rng(0)
    target = ndimage.gaussian_filter(rng.random((64, 80, 3)), (1.5, 1.5, 0))
    shifted = np.roll(target, (1, -2), axis=(0, 1))  # output[y + 1, x - 2] == target[y, x]
    plain = shift_tolerant_psnr(shifted, target, 0)
    assert plain == pytest.approx(psnr(shifted, target))  # 0: today's whole-frame PSNR
    value, shift = best_shift_psnr(shifted, target, 2)
    assert shift == (1, -2) and value > plain + 40  # the wrapped roll matches exactly inside the 8-px border
    assert shift_tolerant_psnr(shifted, target, 1) < value  # too small a tolerance misses it
    with pytest.raises(ValueError, match=">= 0"):
        best_shift_psnr(shifted, target, -1)


def test_brightness_shift_is_in_8_bit_levels():
    image = np.full((8, 8, 3), 0.5, np.float32)
    assert brightness_shift(image + 2 / 255, image) == pytest.approx(2.0, abs=1e-4)
    assert brightness_shift(image - 0.5 / 255, image) == pytest.approx(-0.5, abs=1e-4)


def test_the_shared_crop_is_where_the_outputs_change_the_input_on_average():
    image = np.zeros((64, 64, 3))
    a, b = image.copy(), image.copy()
    a[40:56, 40:56] = 1.0  # model A changes the bottom right a lot
    b[42:54, 42:54] = 0.5  # model B there too, less
    b[0:8, 0:8] = 0.6  # and a little elsewhere
    top, left, side = shared_crop(image, [a, b], 16)
    assert side == 16 and 36 <= top <= 44 and 36 <= left <= 44


def test_defocusgan_eval_scores_pixel4_with_a_shift_tolerance(pixel4_root, tmp_path):
    from defocusgan_hf.models import DefocusDeblurNet
    from defocusgan_hf.pipelines import DefocusDeblurPipeline

    net = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")
    DefocusDeblurPipeline(deblur_net=net.eval()).save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    argv = ["--dataset", "real", "--root", str(pixel4_root), "--model", str(tmp_path / "model"), "--model_label",
            "tiny", "--shift_tolerance", "2", "--subset", "choose=001", "--output_dir", str(out),
            "--no_progress"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["shift_tolerance_px"] == 2 and "±2 px" in results["protocol"]
    summary = results["results"]["choose"]["tiny"]
    assert summary["images"] == 1 and summary["brightness_shift_worst"] == pytest.approx(0.0, abs=1e-6)
    assert "Brightness mean / worst" in (out / "results.md").read_text()
