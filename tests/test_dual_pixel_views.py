"""Real DP conventions: split detection, brightness balance, single-channel views, and the swap-sign property."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline
from defocusgan_hf.pipelines.dual_pixel_views import (
    balance_brightness,
    detect_linear,
    detect_split,
    gamma_encode,
    prepare_views,
    resolve_linear,
    swap_symmetric,
)


def _texture(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random((h, w)), 1.0).astype(np.float32)


def _pair(shift=2, axis=-1, seed=0):
    """Two views of one texture displaced by ±shift px along ``axis`` (a DP disparity)."""
    base = torch.from_numpy(_texture(seed=seed))[None, None].expand(1, 3, -1, -1)
    return torch.roll(base, shift, dims=axis), torch.roll(base, -shift, dims=axis)


@pytest.mark.parametrize("axis, split", [(-1, "horizontal"), (-2, "vertical")])
def test_split_direction_is_detected_from_the_disparity(axis, split):
    left, right = _pair(axis=axis)
    found, gains = detect_split(left, right)
    assert found == split
    assert gains[split] > 0.5 > gains["vertical" if split == "horizontal" else "horizontal"]


def test_identical_views_default_to_horizontal():
    view = _pair()[0]
    assert detect_split(view, view)[0] == "horizontal"


def test_brightness_balance_removes_a_vignetting_ramp():
    left, right = _pair(shift=1)
    ramp = torch.linspace(0.8, 1.2, left.shape[-1]).view(1, 1, 1, -1)
    a, b, (low, high) = balance_brightness((0.2 + 0.6 * left) * ramp, (0.2 + 0.6 * right) / ramp)
    assert low < 0.75 and high > 1.3  # the fitted ratio spans the ramp's (0.8 / 1.2) ** 2 .. (1.2 / 0.8) ** 2
    # column by column, the balanced views' brightness ratio is the unvignetted pair's (the texture's own part)
    plain = (0.2 + 0.6 * left).mean(dim=(1, 2)) / (0.2 + 0.6 * right).mean(dim=(1, 2))
    ratio = a.mean(dim=(1, 2)) / b.mean(dim=(1, 2))
    assert float((ratio / plain - 1).abs().max()) < 0.03


def test_vertical_pairs_are_transposed_for_the_net():
    left, right = _pair(axis=-2)
    a, b, convention = prepare_views(left, right)
    assert convention.split == "vertical" and convention.detected and a.shape[-2:] == left.shape[-2:][::-1]
    with pytest.raises(ValueError, match="split"):
        prepare_views(left, right, split="diagonal")


def test_swap_symmetric_flips_exactly():
    forward, swapped = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    assert torch.equal(swap_symmetric(swapped, forward), -swap_symmetric(forward, swapped))
    assert torch.equal(swap_symmetric(forward, swapped).abs(), (forward.abs() + swapped.abs()) / 2)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1))
    torch.nn.init.normal_(defocus.tail.weight, std=0.5)
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    pipe = DefocusDeblurPipeline(deblur_net=deblur.eval(), defocus_net=defocus.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_pipeline_swapping_the_views_flips_the_sign(pipe):
    left, right = (v[0].permute(1, 2, 0).numpy() for v in _pair(seed=3))
    out = pipe.estimate_defocus_map(left, right)
    again = pipe.estimate_defocus_map(right, left)
    np.testing.assert_allclose(again.defocus_maps, -out.defocus_maps, atol=1e-6)
    assert out.dual_pixel_convention["split"] == "horizontal" and out.dual_pixel_convention["symmetric"]
    one_order = pipe.predict_defocus_map(left, right, symmetric=False)
    assert not np.allclose(pipe.predict_defocus_map(right, left, symmetric=False), -one_order, atol=1e-3)


def test_pipeline_vertical_pair_gives_the_transposed_map(pipe):
    left, right = (v[0].permute(1, 2, 0).numpy() for v in _pair(seed=4))
    horizontal = pipe.predict_defocus_map(left, right, split="horizontal", balance_brightness=False)[0, ..., 0]
    vertical, convention = pipe.predict_defocus_map(
        left.transpose(1, 0, 2), right.transpose(1, 0, 2), balance_brightness=False, return_convention=True
    )
    assert convention.split == "vertical" and convention.detected
    np.testing.assert_allclose(vertical[0, ..., 0], horizontal.T, atol=1e-5)


def test_single_channel_views_are_accepted(pipe):
    left, right = (v[0, 0].numpy() for v in _pair(seed=5))  # (H, W): one grey/green channel per view
    out = pipe.estimate_defocus_map(left, right)
    assert out.defocus_maps.shape == (1, *left.shape, 1) and np.isfinite(out.defocus_maps).all()
    rgb = pipe.estimate_defocus_map(np.repeat(left[..., None], 3, -1), np.repeat(right[..., None], 3, -1))
    np.testing.assert_allclose(out.defocus_maps, rgb.defocus_maps, atol=1e-6)


def _linear_capture(seed=6, shape=(32, 32)):
    """Linear-light views of a texture, 1 px disparity (a phone's), and their combined image ``(L + R) / 2``."""
    base = torch.from_numpy(0.05 + 0.9 * _texture(*shape, seed=seed) ** 2)[None, None].expand(1, 3, -1, -1)
    left, right = torch.roll(base, 1, dims=-1), torch.roll(base, -1, dims=-1)
    return left, right, (left + right) / 2


def _q16(x):
    """Quantised to 16 bits, as a stored PNG is."""
    return torch.round(x * 65535) / 65535


def test_views_whose_combined_image_is_their_mean_are_detected_linear():
    left, right, combined = (_q16(x) for x in _linear_capture())
    linear, fit = detect_linear(left, right, combined)
    assert linear is True and abs(fit) < 0.05


def test_the_gamma_encoded_capture_is_detected_gamma_encoded():
    left, right, combined = (_q16(gamma_encode(x)) for x in _linear_capture())
    linear, fit = detect_linear(left, right, combined)
    assert linear is False and abs(fit - 1) < 0.05


def test_tone_is_undecided_without_a_telling_combined_image():
    left, right, combined = _linear_capture()
    assert detect_linear(left, left, left) == (None, None)  # identical views: both hypotheses agree
    noise = torch.rand(combined.shape, generator=torch.Generator().manual_seed(0))
    assert detect_linear(left, right, noise)[0] is None  # a combined image the views do not explain
    assert resolve_linear(None, left, right, None) == (False, "assumed", None)
    assert resolve_linear(True, left, right, noise) == (True, "given", None)


def test_pipeline_gamma_encodes_linear_views_before_the_net(pipe):
    left, right, combined = (x[0].permute(1, 2, 0).numpy() for x in _linear_capture(shape=(48, 64)))
    encoded = pipe.predict_defocus_map(gamma_encode(left), gamma_encode(right), linear=False)
    given = pipe.predict_defocus_map(left, right, linear=True)
    found, convention = pipe.predict_defocus_map(left, right, combined=combined, return_convention=True)
    np.testing.assert_allclose(given, encoded, atol=1e-5)
    np.testing.assert_allclose(found, encoded, atol=1e-5)
    assert convention.linear and convention.linear_decision == "detected" and "linear views" in convention.describe()
    left_linear = pipe.predict_defocus_map(left, right, linear=False)  # the same views, taken as encoded
    assert not np.allclose(left_linear, encoded, atol=1e-3)
