"""Stage 1 against a relative defocus map on fabricated Pixel 4-like scenes: the reader, the tone convention, the
per-scene figures and ``defocusgan-eval --dataset real --dual_pixel`` end to end."""

import json

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from defocusgan_hf.evaluation.__main__ import main
from defocusgan_hf.evaluation.real_captures import load_scenes
from defocusgan_hf.evaluation.real_dual_pixel_ranked import evaluate_ranked_scene
from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.models.blur_kernel import kernel_bank
from defocusgan_hf.models.dual_pixel import dual_pixel_view_kernels
from defocusgan_hf.pipelines import DefocusDeblurPipeline

SHAPE = (32, 32)


def _save16(image, path):
    cv2.imwrite(str(path), (np.clip(image, 0, 1) * 65535 + 0.5).astype(np.uint16))


def _truth():
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return (x / (SHAPE[1] - 1)).astype(np.float32) * 0.8 + 0.2 * (y > SHAPE[0] // 2)


def _write_scenes(root, linear: bool, names=("001", "002")):
    """Pixel 4-like folders: 16-bit grey, views displaced by ±1 px, combined = (L + R) / 2 in linear light; stored
    linear, or gamma-encoded like the shared ones."""
    rng = np.random.default_rng(7)
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        sharp = 0.05 + 0.9 * ndimage.gaussian_filter(rng.random(SHAPE), 1.0)  # linear light
        left, right = np.roll(sharp, 1, axis=1), np.roll(sharp, -1, axis=1)
        encode = (lambda x: x) if linear else (lambda x: x ** (1 / 2.2))
        for file, image in (("sharp", sharp), ("blurred", (left + right) / 2), ("dp_a", left), ("dp_b", right)):
            _save16(encode(image), folder / f"{file}.png")
        cv2.imwrite(str(folder / "defocus_map.png"), (_truth() * 255).round().astype(np.uint8))
    return root


@pytest.fixture
def view_kernels():
    return dual_pixel_view_kernels(kernel_bank(3))


def test_pixel4_views_are_read_at_16_bits_as_identical_channels(tmp_path):
    root = _write_scenes(tmp_path / "pixel4", linear=False, names=("001",))
    (scene,) = load_scenes(root, with_dp_views=True)
    left = scene.dp_views[0]
    stored = cv2.imread(str(root / "001" / "dp_a.png"), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.ndim == 2
    assert left.shape == (*SHAPE, 3) and np.array_equal(left[..., 0], left[..., 1])
    np.testing.assert_allclose(left[..., 0], stored / 65535, atol=1e-7)  # no 8-bit rounding on the way
    assert scene.dp_a_is_left is True


@pytest.mark.parametrize("linear", [True, False])
def test_the_tone_is_detected_and_linear_views_reach_the_net_gamma_encoded(tmp_path, view_kernels, linear):
    (scene,) = load_scenes(_write_scenes(tmp_path / "p", linear, names=("001",)), with_dp_views=True)
    seen = []

    def predict(a, b):
        seen.append(a)
        return _truth(), None

    result, _ = evaluate_ranked_scene(scene, predict, view_kernels)
    convention = result.dual_pixel_convention
    assert convention["linear"] is linear and convention["linear_decision"] == "detected"
    expected = scene.dp_views[0] ** (1 / 2.2) if linear else scene.dp_views[0]
    np.testing.assert_allclose(seen[0], expected, atol=1e-6)
    assert ("linear views" in convention["description"]) is linear


def test_scene_figures_of_a_perfect_map_a_constant_map_and_the_search(tmp_path, view_kernels):
    (scene,) = load_scenes(_write_scenes(tmp_path / "p", False, names=("001",)), with_dp_views=True)
    left = scene.dp_views[0]

    def signed_truth(a, b):  # the reference map, negative and flipping sign with the view order
        return (-4.0 if np.array_equal(a, left) else 4.0) * (_truth() + 0.5), None

    result, arrays = evaluate_ranked_scene(scene, signed_truth, view_kernels, stride=2)
    assert result.rank_error_net == pytest.approx(0.0, abs=1e-9) and result.rho_net == pytest.approx(-1.0)
    assert result.rank_error_constant == 1.0 and result.sign_flip == 1.0
    assert arrays["search"].shape == SHAPE and 0.0 <= result.rank_error_search <= 1.0
    given, _ = evaluate_ranked_scene(scene, signed_truth, view_kernels, linear=True)
    assert given.dual_pixel_convention["linear_decision"] == "given"


def test_defocusgan_eval_dual_pixel_reports_ranks_on_pixel4_scenes(tmp_path):
    torch.manual_seed(0)
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1), max_coc=3.0)
    torch.nn.init.normal_(defocus.tail.weight, std=0.5)
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")
    DefocusDeblurPipeline(deblur_net=deblur.eval(), defocus_net=defocus.eval()).save_pretrained(tmp_path / "model")
    root = _write_scenes(tmp_path / "pixel4", linear=False)
    out = tmp_path / "out"
    argv = ["--dataset", "real", "--dual_pixel", "--root", str(root), "--model", str(tmp_path / "model"),
            "--subset", "choose=001", "--subset", "held_out=002", "--contact_sheet_images", "0",
            "--output_dir", str(out), "--no_progress"]  # fmt: skip
    assert main(argv) == 0
    block = json.loads((out / "results.json").read_text())["dual_pixel"]
    assert block["kind"] == "relative_reference" and block["rank_stride_px"] == 4
    assert set(block["summary"]) == {"all scenes", "choose", "held_out"}
    assert block["summary"]["held_out"]["scenes"] == 1 and block["summary"]["all scenes"]["rank_error_constant"] == 1
    scores = [s["rank_error_net"] for s in block["per_scene"]]
    assert block["summary"]["all scenes"]["rank_error_net"] == pytest.approx(np.mean(scores))
    assert all("gamma-encoded views (detected" in text for text in block["dual_pixel_convention"].values())
    report = (out / "results.md").read_text()
    assert "relative defocus maps" in report and "every 4th pixel" in report and "| held_out | 1 |" in report
    assert (out / "dual_pixel_001.png").is_file() and (out / "dual_pixel_002.png").is_file()
