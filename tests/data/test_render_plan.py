"""The planned renderer (one grid plan per batch, sub-layers summed in the frequency domain, the forward FFTs
shared by the banks of a field-varying rendering) gives the outputs of the former per-sub-layer path
(``_render_layers_per_sublayer``, one bank at a time) and leaves the random stream as it was."""

import dataclasses

import pytest
import torch

import defocusgan_hf.data.synthetic as synthetic
from defocusgan_hf.data import DualPixelConfig, DualPixelPSFBank, DualPixelRenderer, render_layers
from defocusgan_hf.data.psf_families import FamilyPSFBank, PSFShape
from defocusgan_hf.data.render import _render_layers_per_sublayer, render_layers_with_banks

TOLERANCE = 1e-5


def _renders(config, sharp, seed, monkeypatch):
    renderer = DualPixelRenderer(config)
    with monkeypatch.context() as patch:
        patch.setattr(synthetic, "render_layers", _render_layers_per_sublayer)
        patch.setattr(
            synthetic,
            "render_layers_with_banks",
            lambda layers, alpha, coc, banks: [_render_layers_per_sublayer(layers, alpha, coc, b) for b in banks],
        )
        reference_generator = torch.Generator().manual_seed(seed)
        reference = renderer(sharp, reference_generator)
    generator = torch.Generator().manual_seed(seed)
    planned = renderer(sharp, generator)
    return reference, planned, reference_generator, generator


def _field_varying_always(name):
    return dataclasses.replace(DualPixelConfig.named(name), field_varying_prob=1.0, chromatic_prob=0.5)


@pytest.mark.parametrize("name", ["eq3", "varied", "varied field-varying"])
@pytest.mark.parametrize("seed", [0, 3])
def test_renderer_matches_the_per_sublayer_path(name, seed, monkeypatch):
    sharp = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(100 + seed))
    config = _field_varying_always("varied") if name.endswith("field-varying") else DualPixelConfig.named(name)
    reference, planned, g_ref, g_new = _renders(config, sharp, seed, monkeypatch)
    assert planned.keys() == reference.keys()
    for key in reference:
        assert planned[key].dtype == torch.float32
        difference = (planned[key] - reference[key]).abs().max().item()
        assert difference <= TOLERANCE, (key, difference)
    # The same number of draws: the generators end in the same state.
    assert torch.equal(g_ref.get_state(), g_new.get_state())


def _random_layers(B, L, H, W, seed, max_coc):
    g = torch.Generator().manual_seed(seed)
    layers = torch.rand(B, L, 3, H, W, generator=g)
    alpha = (torch.rand(B, L, 1, H, W, generator=g) > 0.5).float() * torch.rand(B, L, 1, 1, 1, generator=g)
    alpha[:, 0] = 1
    alpha[0, 1] = 0  # a layer absent from one scene of the batch
    base = (torch.rand(B, L, 1, 1, 1, generator=g) * 2 - 1) * max_coc
    ramp = torch.linspace(-3, 3, W).view(1, 1, 1, 1, W)  # a CoC varying inside each layer: several sub-layers
    coc = (base + ramp).clamp(-max_coc, max_coc).expand(B, L, 1, H, W).clone()
    coc[1, 2] = 0  # an in-focus layer (identity sub-layer only)
    return layers, alpha, coc


@pytest.mark.parametrize(
    "bank, shape",
    [
        (DualPixelPSFBank(max_coc=12), (3, 4, 48, 40)),
        (DualPixelPSFBank(max_coc=9, step=0.5), (2, 3, 32, 32)),
        (FamilyPSFBank(PSFShape("cat_eye", rotation=0.7), max_coc=10, offset=0.1, vertical=True), (2, 3, 40, 40)),
        (DualPixelPSFBank(max_coc=20), (2, 3, 12, 16)),  # kernels wider than the image: replicated borders
    ],
)
def test_render_layers_matches_the_per_sublayer_path(bank, shape):
    B, L, H, W = shape
    layers, alpha, coc = _random_layers(B, L, H, W, seed=B * H + W, max_coc=bank.max_coc)
    for reference, planned in zip(
        _render_layers_per_sublayer(layers, alpha, coc, bank), render_layers(layers, alpha, coc, bank)
    ):
        assert (planned - reference).abs().max().item() <= TOLERANCE
    # A second call reuses the cached kernel spectra and gives the same result.
    again = render_layers(layers, alpha, coc, bank)
    assert torch.equal(again[0], render_layers(layers, alpha, coc, bank)[0])


# (top, left, height, width) of an object: inside the frame, at each border, in a corner, a one-pixel sliver.
OBJECT_BOXES = [(20, 18, 9, 12), (0, 10, 7, 20), (50, 5, 14, 30), (15, 0, 20, 6), (30, 58, 10, 14), (0, 60, 5, 12)]


@pytest.mark.parametrize("bank", [DualPixelPSFBank(max_coc=9), DualPixelPSFBank(max_coc=25)])
def test_objects_smaller_than_the_frame_are_blurred_as_over_the_whole_frame(bank):
    # Each object layer is transformed in its window only (its box widened by the support, reflected where the
    # window meets the frame's border); the result is that of blurring over the whole frame.
    B, H, W = 2, 64, 72
    L = len(OBJECT_BOXES) // B + 1
    g = torch.Generator().manual_seed(11)
    layers = torch.rand(B, L, 3, H, W, generator=g)
    alpha = torch.zeros(B, L, 1, H, W)
    alpha[:, 0] = 1
    for i, (top, left, height, width) in enumerate(OBJECT_BOXES):
        alpha[i % B, 1 + i // B, :, top : top + height, left : left + width] = 0.5 + 0.5 * torch.rand(1, generator=g)
    alpha[1, 0, :, 0, 0] = 1
    alpha[0, -1, :, 40, 40] = 1  # one pixel of a second object, far from the rest of its layer in the other scene
    ramp = torch.linspace(-4, 4, W).view(1, 1, 1, 1, W)  # several sub-layers per object
    base = torch.tensor([[-20.0, 6.0, -2.5, 0.0], [3.0, -8.0, 24.0, 11.0]])[:, :L].view(B, L, 1, 1, 1)
    coc = (base + ramp).clamp(-bank.max_coc, bank.max_coc).expand(B, L, 1, H, W).clone()
    for reference, planned in zip(
        _render_layers_per_sublayer(layers, alpha, coc, bank), render_layers(layers, alpha, coc, bank)
    ):
        assert (planned - reference).abs().max().item() <= TOLERANCE


def test_banks_share_the_forward_ffts_and_give_each_banks_rendering():
    # Kernels of different supports (a disc, a cat eye, a Gaussian-edged disc): the FFT size fits the largest.
    banks = [
        FamilyPSFBank(PSFShape("disc", edge=0.0), max_coc=10),
        FamilyPSFBank(PSFShape("cat_eye", rotation=0.3, overlap=0.5), max_coc=10, softness=0.2),
        DualPixelPSFBank(max_coc=10),
    ]
    layers, alpha, coc = _random_layers(2, 3, 40, 48, seed=5, max_coc=10)
    shared = render_layers_with_banks(layers, alpha, coc, banks)
    assert len(shared) == len(banks)
    for bank, views in zip(banks, shared):
        for reference, planned in zip(_render_layers_per_sublayer(layers, alpha, coc, bank), views):
            assert planned.shape == reference.shape
            assert (planned - reference).abs().max().item() <= TOLERANCE


def test_banks_must_share_one_sub_layer_grid():
    layers, alpha, coc = _random_layers(2, 3, 16, 16, seed=0, max_coc=4)
    with pytest.raises(ValueError, match="share"):
        render_layers_with_banks(layers, alpha, coc, [DualPixelPSFBank(max_coc=4), DualPixelPSFBank(max_coc=6)])
    with pytest.raises(ValueError, match="at least one"):
        render_layers_with_banks(layers, alpha, coc, [])


def test_render_layers_shape_check():
    bank = DualPixelPSFBank(max_coc=4)
    with pytest.raises(ValueError, match="must be"):
        render_layers(torch.rand(1, 2, 3, 8, 8), torch.ones(1, 1, 1, 8, 8), torch.zeros(1, 2, 1, 8, 8), bank)
