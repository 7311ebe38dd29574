"""Real DP captures for stage 1: both layouts, view-order detection, and the crops."""

import numpy as np
import pytest
import torch
from PIL import Image

from defocusgan_hf.data.psf_families import FamilyPSFBank, PSFShape
from defocusgan_hf.data.real_dual_pixel import RealDualPixelDataset, detect_view_order, load_real_dual_pixel
from defocusgan_hf.data.render import render_layers


def _save(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def _far_capture(seed=0, size=64, coc=4.0):
    """A scene behind the focal plane (coc > 0): (sharp, left, right, blurred) as (H, W, 3) arrays."""
    torch.manual_seed(seed)
    sharp = torch.rand(1, 3, size, size)
    field = torch.full((1, 1, 1, size, size), coc)
    bank = FamilyPSFBank(PSFShape("disc", edge=0.1), max_coc=8, softness=0.1, falloff=0.2)
    left, right = render_layers(sharp[:, None], torch.ones_like(field), field, bank)
    arrays = [x[0].permute(1, 2, 0).numpy() for x in (sharp, left, right, (left + right) / 2)]
    return arrays


def test_view_order_is_detected_from_the_far_prior():
    sharp, left, right, _ = _far_capture()
    assert detect_view_order(sharp, left, right)[0] is False
    swap, fraction = detect_view_order(sharp, right, left)
    assert swap is True and fraction < 0.5


def test_scene_folders_are_loaded_with_their_views_ordered(tmp_path):
    for name, swap in (("00", False), ("01", True)):
        sharp, left, right, blurred = _far_capture(seed=int(name))
        first, second = (right, left) if swap else (left, right)
        for file, image in (("dp_a", first), ("dp_b", second), ("sharp", sharp), ("blurred", blurred)):
            _save(image, tmp_path / "scenes" / name / f"{file}.png")
    captures = load_real_dual_pixel(tmp_path / "scenes")
    assert [c.name for c in captures] == ["00", "01"] and [c.swapped for c in captures] == [False, True]
    for capture in captures:  # after detection the left view is the one rendered as left
        _, left, _, _ = _far_capture(seed=int(capture.name))
        assert np.abs(capture.left - left).max() < 1 / 255 + 1e-6
    assert [c.name for c in load_real_dual_pixel(tmp_path / "scenes", names=["01"])] == ["01"]
    with pytest.raises(ValueError, match="no DP scene folders"):
        load_real_dual_pixel(tmp_path / "scenes", names=["07"])


def test_dpdd_layout_keeps_its_named_views(tmp_path):
    sharp, left, right, blurred = _far_capture()
    root = tmp_path / "dd_dp_dataset_canon"
    for folder, image in (("train_l/source", left), ("train_r/source", right), ("train_c/source", blurred),
                          ("train_c/target", sharp)):  # fmt: skip
        _save(image, root / folder / "1P0A0001.png")
    (capture,) = load_real_dual_pixel(tmp_path)
    assert capture.name == "1P0A0001" and not capture.swapped and capture.far_fraction is None


def test_crops_are_seeded_and_a_flip_swaps_the_views(tmp_path):
    sharp, left, right, blurred = _far_capture()
    from defocusgan_hf.data.real_dual_pixel import RealDualPixelCapture

    capture = RealDualPixelCapture("s", left, right, blurred, sharp)
    data = RealDualPixelDataset([capture], resolution=32, length=16, seed=1)
    a, b = data[3], data[3]
    assert all(torch.equal(a[k], b[k]) for k in a) and a["left"].shape == (3, 32, 32)
    data.set_epoch(1)
    assert any(not torch.equal(a[k], data[3][k]) for k in a)
    plain = RealDualPixelDataset([capture], resolution=64, length=64, seed=0, flip=False)[0]
    flipped = [RealDualPixelDataset([capture], resolution=64, length=64, seed=0)[i] for i in range(16)]
    mirrored = next(s for s in flipped if not torch.equal(s["sharp"], plain["sharp"]))
    assert torch.equal(mirrored["left"], plain["right"].flip(-1))
    with pytest.raises(ValueError, match="smaller"):
        RealDualPixelDataset([capture], resolution=128)


def _save_grey16(array, path):
    """A 16-bit grey PNG of channel 0 (as the Pixel 4 scenes are stored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(array[..., 0], 0, 1) * 65535 + 0.5).astype(np.uint16)).save(path)


def _grey16_scenes(root, scenes):
    """Scene folders of 16-bit grey images; ``scenes``: ``{name: swap}`` (swap: dp_a holds the right view)."""
    for name, swap in scenes.items():
        sharp, left, right, blurred = _far_capture(seed=int(name))
        first, second = (right, left) if swap else (left, right)
        for file, image in (("dp_a", first), ("dp_b", second), ("sharp", sharp), ("blurred", blurred)):
            _save_grey16(image, root / name / f"{file}.png")


def test_grey_16_bit_scenes_load_as_three_float_channels_and_a_left_skips_detection(tmp_path):
    _grey16_scenes(tmp_path / "pixel4", {"001": False, "002": True})
    captures = load_real_dual_pixel(tmp_path / "pixel4", view_order="a_left")
    assert [c.name for c in captures] == ["001", "002"]
    for capture in captures:
        assert not capture.swapped and capture.far_fraction is None  # no detection ran
        for image in (capture.left, capture.right, capture.sharp, capture.blurred):
            assert image.shape == (64, 64, 3) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
            assert np.array_equal(image[..., 0], image[..., 2])
        first = np.asarray(Image.open(tmp_path / "pixel4" / capture.name / "dp_a.png"), dtype=np.float64) / 65535
        assert np.abs(capture.left[..., 0] - first).max() < 1e-6  # dp_a kept as left, at 16-bit precision
    # "detect" on the same folders finds that 002's dp_a is the right view
    detected = load_real_dual_pixel(tmp_path / "pixel4", view_order="detect")
    assert [c.swapped for c in detected] == [False, True]
    _, left, _, _ = _far_capture(seed=2)
    assert np.abs(detected[1].left - left[..., :1]).max() < 1e-4
    with pytest.raises(ValueError, match="view_order"):
        load_real_dual_pixel(tmp_path / "pixel4", view_order="b_left")


def test_captures_of_two_roots_pool_with_their_own_view_orders(tmp_path):
    _grey16_scenes(tmp_path / "gif", {"00": True, "01": False})
    _grey16_scenes(tmp_path / "pixel4", {"003": True})  # a_left keeps dp_a as left even where it is not
    pooled = load_real_dual_pixel(tmp_path / "gif", ["00"]) + load_real_dual_pixel(
        tmp_path / "pixel4", ["003"], view_order="a_left"
    )
    assert [(c.name, c.swapped) for c in pooled] == [("00", True), ("003", False)]
    data = RealDualPixelDataset(pooled, resolution=32, length=4, seed=0, flip=False)
    assert {tuple(data[i]["left"].shape) for i in range(4)} == {(3, 32, 32)}
