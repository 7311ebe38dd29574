"""Named generator layouts: the paper's, ours, and those in between."""

import pytest
import torch

from defocusgan_hf.models.deblur_net import GENERATOR_PRESETS, DefocusDeblurNet


def _params(net):
    return sum(p.numel() for p in net.parameters())


def test_presets_have_the_documented_sizes():
    sizes = {name: _params(DefocusDeblurNet.from_preset(name)) / 1e6 for name in GENERATOR_PRESETS}
    assert sizes["lean"] == pytest.approx(4.69, abs=0.01)  # the default config
    assert sizes["full_res"] == pytest.approx(sizes["lean"], abs=0.01)  # same channels, another stride
    assert sizes["paper"] == pytest.approx(5.02, abs=0.02)  # released code: ~4.93M (facts.md)
    assert sizes["full_res16"] == pytest.approx(6.99, abs=0.02)


def test_full_resolution_presets_learn_at_full_resolution():
    for name in ("full_res", "full_res16", "paper"):
        assert DefocusDeblurNet.from_preset(name).config.stem_stride == 1
    assert DefocusDeblurNet.from_preset("lean").config.stem_stride == 2
    assert DefocusDeblurNet.from_preset("paper").config.level_channels == (64,) * 5


def test_a_preset_runs_and_takes_overrides():
    net = DefocusDeblurNet.from_preset("full_res", level_channels=(4, 4, 8, 8, 8)).eval()
    assert net.config.stem_stride == 1 and net.config.level_channels == (4, 4, 8, 8, 8)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 20, 36)).sample
    assert out.shape == (1, 3, 20, 36)


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="choose from"):
        DefocusDeblurNet.from_preset("huge")
