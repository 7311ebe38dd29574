"""The generator's luma residual: grey stays grey, and converting an RGB net keeps its mean residual."""

import pytest
import torch

from defocusgan_hf.models.deblur_net import DefocusDeblurNet, to_luma_residual

TINY = dict(level_channels=(4, 6, 8, 8, 8), levels_per_scale=(2, 2, 2))


def _randomised(net: DefocusDeblurNet) -> DefocusDeblurNet:
    torch.manual_seed(0)
    with torch.no_grad():  # the tail starts at zero (the identity): give it small weights, a residual of ~0.1
        net.tail.weight.normal_(0, 0.003)
        net.tail.bias.normal_(0, 0.003)
    return net.eval()


def test_grey_in_grey_out_with_a_luma_residual():
    net = _randomised(DefocusDeblurNet(**TINY, output_residual="luma"))
    grey = torch.rand(2, 1, 40, 56).expand(2, 3, 40, 56)
    with torch.no_grad():
        out = net(grey).sample
    assert float((out - grey).abs().max()) > 1e-3  # the net does change the image
    assert float((out.amax(1) - out.amin(1)).max()) == 0.0


def test_colour_differences_are_the_inputs_where_nothing_clips():
    net = _randomised(DefocusDeblurNet(**TINY, output_residual="luma"))
    image = 0.3 + 0.4 * torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = net(image).sample
    inside = ((out > 0) & (out < 1)).all(1, keepdim=True)
    diff_in, diff_out = image[:, :1] - image[:, 1:2], out[:, :1] - out[:, 1:2]
    assert torch.allclose(diff_in[inside], diff_out[inside], atol=1e-6)


def test_conversion_averages_the_rgb_residual():
    rgb = _randomised(DefocusDeblurNet(**TINY))
    luma = to_luma_residual(rgb).eval()
    assert luma.config.output_residual == "luma" and rgb.config.output_residual == "rgb"
    assert sum(p.numel() for p in luma.parameters()) < sum(p.numel() for p in rgb.parameters())
    image = 0.3 + 0.4 * torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        residual = rgb(image).sample - image  # nothing clips for this tiny perturbed net on mid-grey input
        expected = (image + residual.mean(1, keepdim=True)).clamp(0, 1)
        assert torch.allclose(luma(image).sample, expected, atol=1e-5)
    assert to_luma_residual(luma) is luma


def test_luma_net_round_trips_through_save_pretrained(tmp_path):
    net = _randomised(DefocusDeblurNet(**TINY, output_residual="luma"))
    net.save_pretrained(tmp_path)
    again = DefocusDeblurNet.from_pretrained(tmp_path)
    image = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(net(image).sample, again(image).sample)


def test_unknown_residual_mode_is_refused():
    with pytest.raises(ValueError, match="output_residual"):
        DefocusDeblurNet(**TINY, output_residual="yuv")
