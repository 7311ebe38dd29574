import json

import pytest
import torch

from defocusgan_hf.models import (
    DefocusDeblurNet,
    DualPixelDefocusNet,
    defocus_masks,
    guidance_weight_at,
)
from defocusgan_hf.models.blocks import ChannelAttention

TINY_DEBLUR = dict(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
TINY_DEFOCUS = dict(level_channels=(4, 8, 8), branch_depths=(1, 1))


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_generator_default_size_matches_the_paper():
    """The paper reports 4.59M parameters; the default configuration must be within 10 %."""
    assert abs(count(DefocusDeblurNet()) - 4.59e6) / 4.59e6 < 0.10


def test_defocus_net_default_size_matches_the_released_code():
    assert abs(count(DualPixelDefocusNet()) - 3.3e6) / 3.3e6 < 0.10


@pytest.mark.parametrize("size", [(32, 32), (37, 53), (16, 80)])
def test_generator_keeps_any_size_and_range(size):
    model = DefocusDeblurNet(**TINY_DEBLUR)
    torch.nn.init.normal_(model.tail.weight, std=0.5)  # leave the identity initialisation
    image = torch.rand(2, 3, *size)
    out = model(image).sample
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1


def test_generator_starts_as_the_identity():
    model = DefocusDeblurNet(**TINY_DEBLUR)
    image = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model(image).sample, image)


def test_generator_gradient_reaches_every_parameter():
    model = DefocusDeblurNet(**TINY_DEBLUR)
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    # Connectivity, not init luck: a 4-unit squeeze layer of channel attention can start with every ReLU off.
    for module in model.modules():
        if isinstance(module, ChannelAttention):
            torch.nn.init.constant_(module.gate[1].bias, 1.0)
    image = torch.rand(2, 3, 64, 64) * 0.5 + 0.25
    model(image, torch.randn(2, 1, 64, 64) * 5, guidance_weight=0.5).sample.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_inference_ignores_the_map_once_guidance_is_annealed():
    model = DefocusDeblurNet(**TINY_DEBLUR)
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    image, coc = torch.rand(1, 3, 32, 32), torch.randn(1, 1, 32, 32) * 8
    alone = model(image).sample
    torch.testing.assert_close(model(image, coc, guidance_weight=0.0).sample, alone)
    assert not torch.allclose(model(image, coc, guidance_weight=1.0).sample, alone)


def test_defocus_masks_bin_by_released_thresholds():
    coc = torch.tensor([0.0, -1.0, 1.9, -3.0, 4.5, 6.2, -20.0]).view(1, 1, 1, 7)
    masks = defocus_masks(coc, (1.9, 4.2, 6.2))
    assert masks.sum(1).eq(1).all()
    assert masks[0, :, 0].argmax(0).tolist() == [0, 0, 1, 1, 2, 3, 3]


def test_guidance_weight_schedule():
    assert guidance_weight_at(0) == 1.0
    assert guidance_weight_at(10_000) == pytest.approx(0.3679, abs=1e-4)
    assert guidance_weight_at(20_000) < 0.02
    assert guidance_weight_at(5, anneal_steps=0) == 0.0


def test_generator_single_scale_and_plain_conv_ablations():
    single = DefocusDeblurNet(level_channels=(4, 8, 8, 8), scales=(1,), levels_per_scale=(4,))
    plain = DefocusDeblurNet(**TINY_DEBLUR, block_type="conv")
    image = torch.rand(1, 3, 24, 24)
    assert single(image).sample.shape == plain(image).sample.shape == image.shape
    assert not any("attention" in n for n, _ in plain.named_parameters())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scales=(2, 4), levels_per_scale=(2, 2)), "powers of 2 starting at 1"),
        (dict(scales=(1, 3), levels_per_scale=(2, 2)), "powers of 2"),
        (dict(levels_per_scale=(4, 3)), "one entry"),
        (dict(mask_thresholds=(1.0, 2.0)), "increasing `mask_thresholds`"),
        (dict(level_channels=(8, 8)), "needs 5 positive entries"),
        (dict(block_type="transformer"), "block_type"),
        (dict(stem_stride=3), "`stem_stride` must be a power of 2"),
        (dict(stem_stride=4), "must all be >= 2 x `stem_stride`"),
    ],
)
def test_generator_rejects_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DefocusDeblurNet(**kwargs)


def test_default_generator_runs_no_branch_at_full_resolution():
    """The stride-2 stem: every branch unit sees at most a quarter of the input pixels (the cost of issue #2)."""
    model = DefocusDeblurNet()
    seen = []
    for module in model.block.modules():
        if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
            module.register_forward_hook(lambda m, i, o: seen.append(o.shape[-2] * o.shape[-1]))
    model(torch.rand(1, 3, 64, 64))
    assert seen and max(seen) == 32 * 32


def test_generator_layouts_share_state_dict_keys():
    """The default layout (stride-2 stem, DGB levels 4/3/3) keeps the keys of the first one (full-resolution
    stem, levels 4/3/2), so each checkpoint loads by its config alone (only head and tail change shape)."""
    first_layout = DefocusDeblurNet(**TINY_DEBLUR, stem_stride=1, levels_per_scale=(4, 3, 2))
    model = DefocusDeblurNet(**TINY_DEBLUR)
    assert model.state_dict().keys() == first_layout.state_dict().keys()
    assert (model.head.in_channels, model.tail.out_channels) == (12, 12)
    assert (first_layout.head.in_channels, first_layout.tail.out_channels) == (3, 3)


def test_generator_rejects_bad_inputs():
    model = DefocusDeblurNet(**TINY_DEBLUR)
    with pytest.raises(ValueError, match="Expected image"):
        model(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="`coc` must be"):
        model(torch.rand(1, 3, 16, 16), torch.rand(1, 1, 8, 8), guidance_weight=1.0)


def test_defocus_net_output_is_signed_bounded_and_full_size():
    model = DualPixelDefocusNet(**TINY_DEFOCUS, max_coc=25.0)
    torch.nn.init.normal_(model.tail.weight, std=50.0)
    left, right = torch.rand(2, 3, 30, 44), torch.rand(2, 3, 30, 44)
    coc = model(left, right).defocus_map
    assert coc.shape == (2, 1, 30, 44)
    assert coc.abs().max() <= 25.0 and coc.min() < 0 < coc.max()


def test_defocus_net_rejects_mismatched_views():
    model = DualPixelDefocusNet(**TINY_DEFOCUS)
    with pytest.raises(ValueError, match="same size|one size"):
        model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 18))


@pytest.mark.parametrize("cls, kwargs", [(DefocusDeblurNet, TINY_DEBLUR), (DualPixelDefocusNet, TINY_DEFOCUS)])
def test_save_load_round_trip_is_bit_exact(tmp_path, cls, kwargs):
    model = cls(**kwargs)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = cls.from_pretrained(tmp_path)
    assert not loaded.training
    inputs = (torch.rand(1, 3, 32, 32),) if cls is DefocusDeblurNet else (torch.rand(1, 3, 32, 32),) * 2
    model.eval()
    with torch.no_grad():
        a, b = model(*inputs, return_dict=False)[0], loaded(*inputs, return_dict=False)[0]
    assert torch.equal(a, b)


def test_config_change_does_not_silently_load_mismatched_weights(tmp_path):
    DefocusDeblurNet(**TINY_DEBLUR).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["level_channels"] = [4, 4, 8, 8, 16]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises((ValueError, RuntimeError), match="size|shape"):
        DefocusDeblurNet.from_pretrained(tmp_path)


def test_unknown_config_key_is_reported(tmp_path, caplog):
    DefocusDeblurNet(**TINY_DEBLUR).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_brnaches"] = 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_brnaches"):
        DefocusDeblurNet.from_pretrained(tmp_path)


def test_defocus_net_learns_from_the_reblur_loss_at_initialisation():
    """The reblur loss sees |map|; a net that started at exactly 0 would get no gradient at all."""
    from defocusgan_hf.models import LearnableBlurKernel
    from defocusgan_hf.training.losses import reblur_loss

    model = DualPixelDefocusNet(**TINY_DEFOCUS, max_coc=6.0)
    sharp = torch.rand(1, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, stride=1, padding=2, count_include_pad=False)
    coc = model(blurred, blurred).defocus_map
    loss = reblur_loss(sharp, blurred, coc, LearnableBlurKernel(max_radius=6)())
    loss.backward()
    assert model.tail.weight.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0


def test_gaussian_lowpass_keeps_constants_and_the_mean():
    from defocusgan_hf.models.deblur_net import gaussian_lowpass

    flat = torch.full((1, 1, 20, 30), 0.3)
    assert torch.allclose(gaussian_lowpass(flat, 4.0), flat, atol=1e-6)
    noise = torch.rand(2, 3, 64, 80)
    smooth = gaussian_lowpass(noise, 3.0)
    assert smooth.shape == noise.shape
    assert smooth.std() < 0.3 * noise.std()  # low-passed
    assert abs(float(smooth.mean() - noise.mean())) < 2e-3
    assert gaussian_lowpass(torch.rand(1, 1, 5, 7), 8.0).shape == (1, 1, 5, 7)  # smaller than the kernel


def test_residual_lowpass_keeps_local_brightness():
    """A net whose residual darkens everything: with ``residual_lowpass_sigma`` the output keeps the input's local
    mean (blur keeps it; so must deblurring), while the high-frequency part of the residual stays."""
    torch.manual_seed(0)
    kwargs = dict(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")
    plain = DefocusDeblurNet(**kwargs)
    torch.nn.init.normal_(plain.tail.weight, std=0.003)
    torch.nn.init.constant_(plain.tail.bias, -0.05)  # a darkening offset
    preserving = DefocusDeblurNet(**kwargs, residual_lowpass_sigma=4.0)
    preserving.load_state_dict(plain.state_dict())
    image = 0.25 + 0.5 * torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        dark, kept = plain(image).sample, preserving(image).sample
    assert float((dark - image).mean()) * 255 < -5  # the plain net darkens by > 5 levels
    assert abs(float((kept - image).mean()) * 255) < 0.2
    assert float((kept - image).abs().mean()) > 1e-3  # it still changes detail
    with pytest.raises(ValueError, match="residual_lowpass_sigma"):
        DefocusDeblurNet(**kwargs, residual_lowpass_sigma=0)


def test_a_grown_net_starts_as_the_net_it_grew_from_and_learns_detail():
    from defocusgan_hf.models.deblur_net import grow_refinement

    torch.manual_seed(0)
    net = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    grown = grow_refinement(net, 6)
    image = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        assert torch.equal(grown(image).sample, net(image).sample)  # bit-exact at initialisation
    loss = (grown(image).sample - image.flip(-1)).abs().mean()
    loss.backward()
    assert grown.refine[-1].weight.grad.abs().sum() > 0  # the new level gets a gradient
    assert grown.config.refine_channels == 6
    with pytest.raises(ValueError, match="already"):
        grow_refinement(grown, 4)
