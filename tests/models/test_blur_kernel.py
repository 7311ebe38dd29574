import pytest
import torch

from defocusgan_hf.models.blur_kernel import (
    LearnableBlurKernel,
    butterworth_disc_kernel,
    gaussian_kernel,
    kernel_bank,
    kernel_size,
)


@pytest.mark.parametrize("radius", [0.0, 0.5, 1.0, 3.3, 12.0, 25.0])
def test_butterworth_kernel_is_normalised_and_non_negative(radius):
    kernel = butterworth_disc_kernel(radius, kernel_size(25))
    assert kernel.min() >= 0
    torch.testing.assert_close(kernel.sum(), torch.tensor(1.0))


def test_zero_radius_is_a_delta():
    kernel = butterworth_disc_kernel(0.0, 9)
    assert kernel[4, 4] == 1 and kernel.sum() == 1


def test_butterworth_kernel_is_a_high_pass_disc():
    """Eq. 3: the centre of the disc is darker than its rim, and nothing lies far outside the radius."""
    size = kernel_size(25)
    kernel = butterworth_disc_kernel(10.0, size)
    c = size // 2
    assert kernel[c, c] < 0.5 * kernel[c, c + 8]
    assert kernel[c, c + 14 :].sum() < 1e-4


def test_kernel_spread_grows_with_radius():
    size = kernel_size(25)
    coords = torch.arange(size) - size // 2
    r2 = coords[None] ** 2 + coords[:, None] ** 2

    def spread(k):
        return (k * r2).sum()

    spreads = [spread(butterworth_disc_kernel(float(r), size)) for r in (1, 4, 9, 16)]
    assert all(a < b for a, b in zip(spreads, spreads[1:]))
    assert spread(gaussian_kernel(4.0, size)) < spread(gaussian_kernel(8.0, size))


def test_kernel_bank_rejects_unknown_family():
    with pytest.raises(ValueError, match="Unknown kernel family"):
        kernel_bank(5, family="box")


@pytest.mark.parametrize("mode", ["shared", "bank"])
def test_learnable_kernel_starts_at_b_init(mode):
    module = LearnableBlurKernel(max_radius=6, mode=mode)
    kernels = module()
    assert kernels.shape == (2, 7, module.size, module.size)
    torch.testing.assert_close(kernels[1], kernel_bank(6, size=module.size), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["shared", "bank"])
def test_learnable_kernel_stays_valid_after_wild_updates(mode):
    module = LearnableBlurKernel(max_radius=6, mode=mode)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 50)
    kernels = module()
    assert kernels.min() >= 0
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(2, 7))
    assert kernels[:, 0, module.size // 2, module.size // 2].eq(1).all()  # radius 0 stays a delta


def test_shared_mode_couples_all_radii():
    """Gradient from one radius's kernel moves the one shared base, hence every other radius too."""
    module = LearnableBlurKernel(max_radius=6, mode="shared")
    optimizer = torch.optim.SGD(module.parameters(), lr=100.0)
    before = module().detach()
    c = module.size // 2
    module()[0, 6, c, c].backward()  # ask for more light at the centre of the r=6 kernel only
    optimizer.step()
    after = module().detach()
    assert (after[0, 2] - before[0, 2]).abs().sum() > 1e-4
    assert torch.equal(after[1], before[1])  # the other side of focus has its own base


def test_frozen_kernel_has_no_trainable_parameters():
    module = LearnableBlurKernel(max_radius=4, learnable=False, init="gaussian")
    assert not any(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("kwargs", [{"mode": "sparse"}, {"init": "box"}, {"num_sides": 3}, {"max_radius": 0}])
def test_learnable_kernel_rejects_bad_config(kwargs):
    with pytest.raises(ValueError):
        LearnableBlurKernel(**kwargs)
