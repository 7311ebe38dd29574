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
