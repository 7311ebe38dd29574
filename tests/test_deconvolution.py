import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from defocusgan_hf.evaluation.deconvolution import deconvolve, layered_deconvolution
from defocusgan_hf.evaluation.metrics import psnr
from defocusgan_hf.models import kernel_bank, reblur

MAX_RADIUS = 6


@pytest.fixture(scope="module")
def sharp():
    """A 64×64 crop of a natural photo, float64 (H, W, 3) in [0, 1]."""
    return resize(data.astronaut()[100:356, 150:406], (64, 64), anti_aliasing=True)


@pytest.fixture(scope="module")
def bank():
    return kernel_bank(MAX_RADIUS).double()


def blur(sharp, coc, bank):
    """Eq. 4's layered reblur of an (H, W, 3) image by an (H, W) map."""
    image = torch.from_numpy(sharp).permute(2, 0, 1)[None]
    return reblur(image, torch.as_tensor(coc)[None, None], bank)[0].permute(1, 2, 0).numpy()


def test_an_all_in_focus_map_returns_the_blurred_image_unchanged(sharp, bank):
    np.testing.assert_array_equal(layered_deconvolution(sharp, np.zeros(sharp.shape[:2]), bank), sharp)


@pytest.mark.parametrize("method, gain_db", [("wiener", 3.0), ("richardson_lucy", 1.5)])
def test_deconvolution_with_the_true_uniform_map_restores_detail(sharp, bank, method, gain_db):
    coc = np.full(sharp.shape[:2], 4.0)
    blurred = blur(sharp, coc, bank)
    restored = layered_deconvolution(blurred, coc, bank, method=method, balance=1e-3, num_iter=15)
    assert psnr(restored, sharp) > psnr(blurred, sharp) + gain_db


def test_a_fractional_radius_blends_the_two_neighbouring_layers(sharp, bank):
    coc = np.full(sharp.shape[:2], 2.25)
    expected = 0.75 * deconvolve(sharp, bank[2].numpy()) + 0.25 * deconvolve(sharp, bank[3].numpy())
    np.testing.assert_allclose(layered_deconvolution(sharp, coc, bank), np.clip(expected, 0, 1), atol=1e-10)


def test_a_two_sided_bank_uses_side_0_behind_and_side_1_in_front_of_focus(sharp, bank):
    other = kernel_bank(MAX_RADIUS, family="gaussian").double()
    coc = np.where(np.arange(64)[None, :] < 32, -3.0, 3.0) * np.ones((64, 1))
    out = layered_deconvolution(sharp, coc, torch.stack([bank, other]))
    np.testing.assert_allclose(out[:, :32], layered_deconvolution(sharp, np.abs(coc), other)[:, :32], atol=1e-12)
    np.testing.assert_allclose(out[:, 32:], layered_deconvolution(sharp, np.abs(coc), bank)[:, 32:], atol=1e-12)
    assert np.abs(out[:, :32] - layered_deconvolution(sharp, np.abs(coc), bank)[:, :32]).max() > 0.01


def test_radii_beyond_the_bank_are_clamped_to_its_largest_kernel(sharp, bank):
    far = layered_deconvolution(sharp, np.full((64, 64), 50.0), bank)
    np.testing.assert_allclose(far, layered_deconvolution(sharp, np.full((64, 64), float(MAX_RADIUS)), bank))


def test_bad_inputs_raise_errors_that_quote_them(sharp, bank):
    with pytest.raises(ValueError, match="one size"):
        layered_deconvolution(sharp, np.zeros((8, 8)), bank)
    with pytest.raises(ValueError, match="K odd"):
        layered_deconvolution(sharp, np.zeros((64, 64)), torch.ones(3, 4, 4))
    with pytest.raises(ValueError, match="'unsharp'"):
        deconvolve(sharp, bank[1].numpy(), method="unsharp")


def test_kernels_larger_than_the_image_still_deconvolve(sharp):
    small = sharp[:16, :16]
    coc = np.full((16, 16), 12.0)  # kernel_bank() kernels are 59 px wide, the mirrored image only 32
    restored = layered_deconvolution(blur(small, coc, kernel_bank().double()), coc)
    assert restored.shape == small.shape and np.isfinite(restored).all()
