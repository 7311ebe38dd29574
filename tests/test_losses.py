import time

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from defocusgan_hf.models.blur_kernel import LearnableBlurKernel
from defocusgan_hf.models.discriminator import PatchDiscriminator
from defocusgan_hf.models.reblur import reblur
from defocusgan_hf.perceptual.vgg import VGG19Features, VGGWeightsNotFoundError
from defocusgan_hf.training.losses import (
    GeneratorLoss,
    PerceptualLoss,
    critic_loss,
    defocus_map_loss,
    defocus_weights,
    generator_adversarial_loss,
    gradient_penalty,
    reblur_loss,
    smoothness_loss,
)


class LinearCritic(nn.Module):
    """D(x) = scale · <x, u> / |u| per sample: its input gradient has norm exactly ``scale`` everywhere."""

    def __init__(self, shape, scale=1.0):
        super().__init__()
        self.u = nn.Parameter(torch.randn(1, *shape, generator=torch.Generator().manual_seed(1)))
        self.scale = scale

    def forward(self, x):
        return self.scale * (x * self.u).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1) / self.u.norm()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return VGG19Features()


# ---- stage 1 --------------------------------------------------------------------------------------------------


def test_reblur_loss_is_zero_for_exact_reblur_and_reaches_coc_and_kernels():
    torch.manual_seed(0)
    bank = LearnableBlurKernel(max_radius=3)
    sharp = torch.rand(1, 3, 16, 16)
    coc = (torch.rand(1, 1, 16, 16) * 6 - 3).requires_grad_(True)
    with torch.no_grad():
        blurred = reblur(sharp, coc, bank())
    assert reblur_loss(sharp, blurred, coc, bank()).item() == pytest.approx(0.0, abs=1e-6)

    coc_guess = coc.detach().mul(0.7).requires_grad_(True)
    loss = reblur_loss(sharp, blurred, coc_guess, bank())
    loss.backward()
    assert loss.item() > 0
    assert coc_guess.grad.abs().sum() > 0
    assert bank.log_gain.grad.abs().sum() > 0


def test_smoothness_is_zero_for_constant_map_and_equals_ramp_slope():
    assert smoothness_loss(torch.full((2, 1, 8, 8), 3.0)).item() == 0.0
    ramp = torch.arange(8.0).mul(0.5).view(1, 1, 1, 8).expand(2, 1, 8, 8)
    assert smoothness_loss(ramp).item() == pytest.approx(0.5)  # |∂x| = 0.5 everywhere, ∂y = 0


def test_defocus_map_loss_combines_weighted_terms():
    torch.manual_seed(0)
    kernels = LearnableBlurKernel(max_radius=2)()
    sharp, blurred = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    coc = torch.rand(1, 1, 12, 12) * 2
    total, parts = defocus_map_loss(sharp, blurred, coc, kernels, smoothness_weight=0.5, reblur_weight=1000.0)
    assert total.item() == pytest.approx(1000.0 * parts["reblur"].item() + 0.5 * parts["smoothness"].item(), rel=1e-5)
    assert parts["reblur"].item() == pytest.approx(reblur_loss(sharp, blurred, coc, kernels).item())
    assert "search" not in parts  # the paper's objective unless asked


def test_search_term_pulls_the_map_to_the_searched_radius_and_leaves_the_kernel_alone():
    torch.manual_seed(0)
    module = LearnableBlurKernel(max_radius=6)
    sharp = torch.rand(1, 3, 32, 32)
    blurred = reblur(sharp, torch.full((1, 1, 32, 32), 4.0), module()).detach()
    coc = torch.full((1, 1, 32, 32), -1.0, requires_grad=True)  # the sign is free: the term compares |coc|
    total, parts = defocus_map_loss(
        sharp,
        blurred,
        coc,
        module(),
        smoothness_weight=0.0,
        reblur_weight=0.0,
        search_weight=2.0,
        search_window_sigma=2.0,
    )
    assert parts["search"].item() == pytest.approx(3.0, abs=0.15)
    assert total.item() == pytest.approx(2.0 * parts["search"].item())
    total.backward()
    assert (coc.grad > 0).all()  # gradient descent makes coc more negative: |coc| grows toward 4
    assert module.log_gain.grad is None or module.log_gain.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="search"):
        defocus_map_loss(sharp, blurred, coc, module(), search_weight=-1.0)


def test_search_from_the_dp_views_gives_the_map_its_sign():
    """With search_views, the target is signed: a map of the right radius on the wrong side of focus is pulled
    through zero to the other side, where the combined-image search would call it right."""
    from defocusgan_hf.data.psf import dual_pixel_view_kernels

    torch.manual_seed(0)
    module = LearnableBlurKernel(max_radius=6)
    sharp = torch.rand(1, 3, 32, 32)
    views = dual_pixel_view_kernels(module().detach())  # (2, 13, K, K): the views of radii -6..6
    left, right = (reblur(sharp, torch.zeros(1, 1, 32, 32), views[v, 6 + 4][None, None]) for v in (0, 1))
    blurred = (left + right) / 2  # a scene 4 px behind the focal plane
    kwargs = dict(smoothness_weight=0.0, reblur_weight=0.0, search_weight=1.0, search_window_sigma=2.0)
    coc = torch.full((1, 1, 32, 32), -4.0, requires_grad=True)
    _, combined = defocus_map_loss(sharp, blurred, coc, module(), **kwargs)
    assert combined["search"].item() < 0.2  # |coc| is right
    total, signed = defocus_map_loss(sharp, blurred, coc, module(), search_views=(left, right), **kwargs)
    assert signed["search"].item() == pytest.approx(8.0, abs=0.2)  # the target is +4
    total.backward()
    assert (coc.grad < 0).all()  # gradient descent raises coc toward +4


# ---- φ(DM) -----------------------------------------------------------------------------------------------------


def test_defocus_weights_grow_with_radius_have_mean_one_and_ignore_sign():
    critic = PatchDiscriminator(base_channels=4)
    coc = torch.zeros(2, 1, 64, 64)
    coc[:, :, :, 32:] = 10.0
    coc[1] = -coc[1]  # in front of the focal plane: same radius, same weight
    size = critic.output_size(64, 64)
    w = defocus_weights(coc, size)
    assert w.shape == (2, 1, *size) == critic(torch.rand(2, 3, 64, 64)).shape
    assert torch.allclose(w.mean(dim=(-2, -1)), torch.ones(2, 1))
    assert w[:, :, :, -1].min() > w[:, :, :, 0].max()  # defocused patches outweigh in-focus ones
    torch.testing.assert_close(w[0], w[1])
    radii = torch.tensor([0.0, 2.0, 6.2, 25.0, 40.0]).view(1, 1, 1, 5)
    per_radius = defocus_weights(radii, (1, 5))[0, 0, 0]
    assert (per_radius.diff()[:3] > 0).all() and per_radius[4] == per_radius[3]  # monotone, saturates at max_coc
    assert per_radius[2] / per_radius[0] == pytest.approx(1 + 4 * 6.2 / 25)


def test_uniform_weights_are_ones_and_bad_mode_raises():
    coc = torch.rand(3, 1, 16, 16) * 20
    assert torch.equal(defocus_weights(coc, torch.empty(3, 1, 4, 5), mode="uniform"), torch.ones(3, 1, 4, 5))
    with pytest.raises(ValueError, match="'bins'"):
        defocus_weights(coc, (4, 4), mode="bins")


# ---- WGAN-GP ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale,expected", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_linear_critic_is_known(images, scale, expected):
    real, fake = images
    critic = LinearCritic(real.shape[1:], scale)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected, abs=1e-5)


def test_critic_loss_components_for_linear_critic(images):
    real, fake = images
    critic = LinearCritic(real.shape[1:], 2.0)
    total, parts = critic_loss(critic, real, fake, gp_weight=10.0)
    with torch.no_grad():
        expected_w = critic(real).mean() - critic(fake).mean()
    assert parts["wasserstein"].item() == pytest.approx(expected_w.item(), rel=1e-5)
    assert parts["gradient_penalty"].item() == pytest.approx(1.0, abs=1e-5)
    assert total.item() == pytest.approx(-expected_w.item() + 10.0, rel=1e-5)


def test_critic_loss_is_deterministic_with_generator_and_trains_only_the_critic(images):
    torch.manual_seed(0)
    critic = PatchDiscriminator(base_channels=4)
    real, fake = images
    fake = fake.clone().requires_grad_(True)
    runs = [critic_loss(critic, real, fake, generator=torch.Generator().manual_seed(5))[0] for _ in range(2)]
    assert runs[0].item() == runs[1].item()
    runs[0].backward()
    assert fake.grad is None  # the deblurring network gets nothing from the critic's step
    # Every conv weight learns (the output bias cancels between real and fake, so its gradient is exactly 0).
    assert all(p.grad.abs().sum() > 0 for name, p in critic.named_parameters() if name.endswith("weight"))


def test_weighted_critic_scores_follow_eq7(images):
    real, fake = images
    critic = PatchDiscriminator(base_channels=4)
    h, w = critic.output_size(32, 32)
    weights = torch.rand(2, 1, h, w)
    loss = generator_adversarial_loss(critic, fake, weights)
    with torch.no_grad():
        assert loss.item() == pytest.approx(-(weights * critic(fake)).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="output_size"):
        generator_adversarial_loss(critic, fake, torch.ones(2, 1, h + 1, w))


def test_generator_adversarial_loss_reaches_fake_but_not_critic(images):
    torch.manual_seed(0)
    critic = PatchDiscriminator(base_channels=4)
    fake = images[1].clone().requires_grad_(True)
    generator_adversarial_loss(critic, fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())  # restored after the call


# ---- perceptual + generator loss -------------------------------------------------------------------------------


def test_perceptual_loss_zero_for_identical_positive_otherwise(vgg, images):
    loss = PerceptualLoss(vgg)
    sharp, other = images
    assert loss(sharp, sharp).item() == 0.0
    restored = other.clone().requires_grad_(True)
    value = loss(restored, sharp)
    value.backward()
    assert value.item() > 0 and restored.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_generator_loss_is_weighted_sum_of_its_terms(vgg, images):
    torch.manual_seed(0)
    critic = PatchDiscriminator(base_channels=4)
    restored, sharp = images
    loss = GeneratorLoss(
        content_weight=0.5, perceptual_weight=0.006, adversarial_weight=0.001, perceptual=PerceptualLoss(vgg)
    )
    total, parts = loss(restored, sharp, critic=critic)
    expected = 0.5 * parts["content"] + 0.006 * parts["perceptual"] + 0.001 * parts["adversarial"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["content"].item() == pytest.approx((restored - sharp).abs().mean().item())


def test_generator_loss_without_perceptual_needs_no_vgg(images):
    restored, sharp = images
    total, parts = GeneratorLoss(perceptual_weight=0.0)(restored, sharp)  # no critic: adversarial term left out
    assert parts["perceptual"].item() == 0.0 and parts["adversarial"].item() == 0.0
    assert total.item() == pytest.approx(parts["content"].item())
    with pytest.raises(ValueError, match="perceptual weight to 0"):
        GeneratorLoss(perceptual_weight=0.012)


# ---- VGG19 weights ---------------------------------------------------------------------------------------------


def test_vgg_keeps_torchvision_indices_up_to_conv3_3_and_is_frozen(vgg):
    convs = sorted({int(k.split(".")[1]) for k in vgg.state_dict()})
    assert convs == [0, 2, 5, 7, 10, 12, 14]
    assert vgg(torch.rand(1, 3, 32, 32)).shape == (1, 256, 8, 8)
    assert not any(p.requires_grad for p in vgg.parameters())
    assert not vgg.train().training


def _timm_layout_file(path, vgg):
    """A timm-layout file: our keys with random values, plus later-layer and classifier keys (placeholders)."""
    tensors = {k: torch.randn_like(v) for k, v in vgg.state_dict().items()}
    extra = ["features.16.weight", "features.34.bias", "pre_logits.fc1.weight", "pre_logits.fc2.bias", "head.fc.weight"]
    tensors.update({k: torch.zeros(2) for k in extra})
    save_file(tensors, str(path))
    return tensors


def test_vgg_loads_timm_layout_file_and_folder_bit_exactly(vgg, tmp_path):
    tensors = _timm_layout_file(tmp_path / "model.safetensors", vgg)
    for source in (tmp_path / "model.safetensors", tmp_path):
        loaded = VGG19Features.from_pretrained(source)
        assert all(torch.equal(v, tensors[k]) for k, v in loaded.state_dict().items())


def test_vgg_rejects_foreign_keys_with_their_names(vgg, tmp_path):
    tensors = {k: v for k, v in vgg.state_dict().items() if k != "features.14.bias"}
    tensors["encoder.conv.weight"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"features\.14\.bias.*encoder\.conv\.weight"):
        VGG19Features.from_pretrained(tmp_path / "bad.safetensors")


def test_vgg_absent_file_says_how_to_provide_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="--vgg_weights"):
        VGG19Features.from_pretrained(tmp_path / "missing.safetensors")
    with pytest.raises(VGGWeightsNotFoundError, match="timm/vgg19.tv_in1k"):
        VGG19Features.from_pretrained(tmp_path)  # a folder without model.safetensors


def test_vgg_offline_hub_id_fails_fast_with_instructions(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    # huggingface_hub reads both at import; its download code reads `constants.HF_HUB_CACHE` at call time.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(VGGWeightsNotFoundError, match="perceptual weight 0") as info:
        VGG19Features.from_pretrained("timm/vgg19.tv_in1k")
    assert time.perf_counter() - start < 5.0
    assert "offline" in str(info.value)
