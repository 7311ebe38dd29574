import pytest
import torch
import torch.nn.functional as F

from defocusgan_hf.models.blur_kernel import LearnableBlurKernel, kernel_bank
from defocusgan_hf.models.reblur import (
    bank_layers,
    fft_convolve,
    gaussian_window,
    layer_weights,
    reblur,
    search_coc,
)


@pytest.fixture
def sharp():
    return torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def kernels():
    return LearnableBlurKernel(max_radius=8)()


def test_zero_map_returns_the_input(sharp, kernels):
    coc = torch.zeros_like(sharp[:, :1])
    torch.testing.assert_close(reblur(sharp, coc, kernels), sharp, atol=1e-5, rtol=0)


@pytest.mark.parametrize("radius, side", [(3.0, 0), (7.0, 0), (-5.0, 1)])
def test_constant_map_equals_one_plain_convolution(sharp, kernels, radius, side):
    coc = torch.full_like(sharp[:, :1], radius)
    kernel = kernels[side, int(abs(radius))]
    K = kernel.shape[-1]
    padded = F.pad(sharp, (K // 2,) * 4, mode="reflect")
    expected = F.conv2d(padded, kernel.flip(-1, -2).expand(3, 1, K, K), groups=3)  # true convolution
    torch.testing.assert_close(reblur(sharp, coc, kernels), expected, atol=1e-5, rtol=0)


def test_fractional_radius_interpolates_between_layers(sharp, kernels):
    coc = torch.full_like(sharp[:, :1], 2.25)
    lo = reblur(sharp, torch.full_like(coc, 2.0), kernels)
    hi = reblur(sharp, torch.full_like(coc, 3.0), kernels)
    torch.testing.assert_close(reblur(sharp, coc, kernels), 0.75 * lo + 0.25 * hi, atol=1e-5, rtol=0)


def test_gradients_reach_map_and_kernel(sharp):
    module = LearnableBlurKernel(max_radius=8)
    coc = (torch.rand(2, 1, 40, 48) * 12 - 6).requires_grad_()
    target = reblur(sharp, torch.full_like(coc, 4.0), module()).detach()
    loss = (reblur(sharp, coc, module()) - target).abs().mean()
    loss.backward()
    assert coc.grad.abs().sum() > 0
    assert module.log_gain.grad.abs().sum() > 0


def test_reblur_gradient_points_toward_the_true_radius(sharp, kernels):
    """The soft layer assignment gives a useful gradient: too small a radius is pushed up, too large down."""
    kernels = kernels.detach()
    target = reblur(sharp, torch.full_like(sharp[:, :1], 5.0), kernels)
    for start, sign in [(3.5, -1), (6.5, 1)]:
        coc = torch.full_like(sharp[:, :1], start).requires_grad_()
        (reblur(sharp, coc, kernels) - target).abs().mean().backward()
        assert torch.sign(coc.grad.sum()) == sign


def test_map_is_clamped_to_the_largest_radius(sharp, kernels):
    big = reblur(sharp, torch.full_like(sharp[:, :1], 40.0), kernels)
    top = reblur(sharp, torch.full_like(sharp[:, :1], 8.0), kernels)
    torch.testing.assert_close(big, top)


def test_layer_weights_sum_to_one():
    radius = torch.rand(1, 1, 8, 8) * 5
    torch.testing.assert_close(layer_weights(radius, 6).sum(1), torch.ones(1, 8, 8))


def test_off_centre_psf_moves_light_like_a_camera():
    """fft_convolve is a convolution: a PSF whose light sits right of centre moves a point to the right."""
    image = torch.zeros(1, 1, 15, 15)
    image[..., 7, 7] = 1
    psf = torch.zeros(1, 5, 5)
    psf[0, 2, 4] = 1  # two pixels right of centre
    out = fft_convolve(image, psf)[0, 0, 0]
    assert out[7, 9] == pytest.approx(1.0, abs=1e-5)


def test_reblur_rejects_mismatched_shapes(sharp, kernels):
    with pytest.raises(ValueError, match="share batch and size"):
        reblur(sharp, torch.zeros(2, 1, 10, 10), kernels)
    with pytest.raises(ValueError, match="kernels"):
        reblur(sharp, torch.zeros(2, 1, 40, 48), kernels[None])


@pytest.mark.parametrize("radius", [0, 2, 5, 8])
def test_search_finds_a_uniform_blur_radius_despite_noise(sharp, kernels, radius):
    blurred = fft_convolve(sharp, kernels[0, radius : radius + 1])[:, 0]
    noisy = blurred + 0.05 * torch.randn(blurred.shape, generator=torch.Generator().manual_seed(2))
    found = search_coc(sharp, noisy, kernels, window_sigma=4.0)
    assert found.shape == (2, 1, 40, 48) and not found.requires_grad
    assert (found - radius).abs().mean() < 0.3
    assert (found - radius).abs().flatten().quantile(0.95) < 1.0
    if radius > 0:  # without the averaging window the noise wins
        assert (search_coc(sharp, noisy, kernels, window_sigma=0.5) - radius).abs().mean() > 1.0


def test_search_separates_two_blur_regions(sharp, kernels):
    left = fft_convolve(sharp, kernels[0, 2:3])[:, 0]
    right = fft_convolve(sharp, kernels[0, 6:7])[:, 0]
    blurred = torch.cat([left[..., :24], right[..., 24:]], dim=-1)
    found = search_coc(sharp, blurred, kernels, window_sigma=2.0)
    assert (found[..., :16] - 2).abs().max() < 0.5
    assert (found[..., 32:] - 6).abs().max() < 0.5


def test_search_escapes_the_minimum_that_stops_gradient_descent(sharp, kernels):
    """Gradient descent on Eq. 2 from 1 px toward a 7 px blur stalls short of it; the search does not."""
    kernels = kernels.detach()
    blurred = reblur(sharp, torch.full_like(sharp[:, :1], 7.0), kernels)
    coc = torch.full_like(sharp[:, :1], 1.0).requires_grad_()
    optimizer = torch.optim.Adam([coc], lr=0.1)
    for _ in range(60):
        optimizer.zero_grad()
        (reblur(sharp, coc, kernels) - blurred).abs().mean().backward()
        optimizer.step()
    assert (coc.detach() - 7).abs().mean() > 2
    assert (search_coc(sharp, blurred, kernels, window_sigma=2.0) - 7).abs().mean() < 0.1


def test_gaussian_window_is_normalised_and_checks_sigma():
    window = gaussian_window(2.0)
    assert window.shape == (1, 13, 13)
    torch.testing.assert_close(window.sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_window(0.0)


@pytest.mark.parametrize("two_sided", [False, True])
def test_shared_bank_layers_give_the_same_reblur_search_and_kernel_gradient(sharp, two_sided):
    """Layers computed once (as the stage-1 loss does with its search term) change nothing but the cost."""
    module = LearnableBlurKernel(max_radius=8, num_sides=2 if two_sided else 1)
    coc = torch.linspace(-3.4, 5.2, 48).expand(2, 1, 40, 48).contiguous()
    blurred = torch.rand(sharp.shape, generator=torch.Generator().manual_seed(2))
    results = []
    for shared in (False, True):
        module.zero_grad()
        kernels = module()
        layers = bank_layers(sharp, kernels) if shared else None
        assert layers is None or layers.shape == (2, kernels.shape[0], 9, 3, 40, 48)
        out = reblur(sharp, coc, kernels, layers)
        (out - blurred).abs().mean().backward()
        searched = search_coc(sharp, blurred, kernels.detach(), 2.0, None if layers is None else layers.detach())
        grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
        results.append((out.detach(), searched, grads))
    (out_a, search_a, grads_a), (out_b, search_b, grads_b) = results
    torch.testing.assert_close(out_b, out_a, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(search_b, search_a)
    assert grads_a and all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads_a, grads_b))


def test_layers_of_another_bank_are_rejected(sharp, kernels):
    wrong = bank_layers(sharp, kernels[:, :5])
    with pytest.raises(ValueError, match="bank_layers"):
        reblur(sharp, torch.ones_like(sharp[:, :1]), kernels, wrong)
    with pytest.raises(ValueError, match="bank_layers"):
        search_coc(sharp, sharp, kernels, 2.0, wrong)


def test_dual_pixel_view_kernels_split_each_radius_into_mirrored_halves():
    from defocusgan_hf.data.psf import dual_pixel_psf, dual_pixel_view_kernels

    bank = kernel_bank(6)
    views = dual_pixel_view_kernels(bank)
    assert views.shape == (2, 13, *bank.shape[-2:])
    torch.testing.assert_close(views.sum(dim=(-2, -1)), torch.ones(2, 13))
    torch.testing.assert_close(views[:, 6], bank[0].expand(2, -1, -1))  # radius 0: the combined kernel for both
    torch.testing.assert_close(views[0, 6 + 4], views[1, 6 - 4])  # the views swap at the focal plane
    torch.testing.assert_close(views[0, 6 + 4], views[1, 6 + 4].flip(-1))  # and mirror each other
    torch.testing.assert_close((views[0, 6 + 4] + views[1, 6 + 4]) / 2, bank[4], atol=1e-6, rtol=0)
    # The renderer's own view PSFs, for the Eq. 3 kernel: the same split (up to the support's zero padding).
    left, right = dual_pixel_psf(4.0)
    pad = (bank.shape[-1] - left.shape[-1]) // 2
    torch.testing.assert_close(views[0, 6 + 4, pad:-pad, pad:-pad], left, atol=1e-6, rtol=0)
    torch.testing.assert_close(views[1, 6 - 4, pad:-pad, pad:-pad], left, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="kernels"):
        dual_pixel_view_kernels(torch.ones(3, 5, 5, 5))


@pytest.mark.parametrize("coc", [-5.0, 3.0])
def test_signed_search_finds_the_side_of_focus_that_the_combined_image_cannot(sharp, coc):
    """Views rendered by the data engine's DP PSFs on either side of focus: the search against the combined image
    finds |CoC| only (the same for both signs); the search against the two views finds the sign too."""
    from defocusgan_hf.data import DualPixelPSFBank, render_layers
    from defocusgan_hf.data.psf import dual_pixel_view_kernels
    from defocusgan_hf.models.reblur import search_signed_coc

    layers, alpha = sharp[:, None], torch.ones_like(sharp[:, None, :1])
    left, right = render_layers(layers, alpha, torch.full_like(alpha, coc), DualPixelPSFBank(max_coc=8))
    bank = kernel_bank(8)
    unsigned = search_coc(sharp, (left + right) / 2, bank, window_sigma=3.0)
    assert (unsigned - abs(coc)).abs().mean() < 0.3
    signed = search_signed_coc(sharp, left, right, dual_pixel_view_kernels(bank), window_sigma=3.0)
    assert signed.shape == (2, 1, 40, 48) and (signed - coc).abs().mean() < 0.3
    flipped = search_signed_coc(sharp, right, left, dual_pixel_view_kernels(bank), window_sigma=3.0)
    assert (flipped + coc).abs().mean() < 0.3  # swapping the views swaps the side
    with pytest.raises(ValueError, match="view_kernels"):
        search_signed_coc(sharp, left, right, bank)
