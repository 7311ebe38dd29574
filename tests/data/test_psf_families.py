"""PSF families and the varied synthetic engine (DualPixelConfig.varied)."""

import math

import pytest
import torch

from defocusgan_hf.data.psf_families import (
    PSF_FAMILIES,
    FamilyPSFBank,
    PSFShape,
    combined_psf,
    sample_psf_shape,
)
from defocusgan_hf.data.render import render_layers
from defocusgan_hf.data.synthetic import DualPixelConfig, DualPixelRenderer
from defocusgan_hf.models.reblur import fft_convolve


def _second_moment(kernel: torch.Tensor) -> float:
    size = kernel.shape[-1]
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    r2 = x[None] ** 2 + x[:, None] ** 2
    return float((kernel.double() * r2).sum())


@pytest.mark.parametrize("family", PSF_FAMILIES)
def test_each_family_is_normalised_centred_and_grows_with_radius(family):
    shape = PSFShape(family, blades=5, rotation=0.3, rim=0.6, overlap=0.5)
    small, large = combined_psf(3.0, shape), combined_psf(9.0, shape)
    for kernel in (small, large):
        assert kernel.min() >= 0 and math.isclose(float(kernel.sum()), 1.0, abs_tol=1e-5)
        size = kernel.shape[-1]
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        centroid = (float((kernel.double().sum(0) * x).sum()), float((kernel.double().sum(1) * x).sum()))
        assert abs(centroid[0]) < 0.05 and abs(centroid[1]) < 0.05  # no family shifts the image
    assert _second_moment(large) > 4 * _second_moment(small)  # a CoC three times wider spreads light ~9x
    assert torch.equal(combined_psf(0.0, shape).nonzero(), torch.tensor([[combined_psf(0.0, shape).shape[0] // 2] * 2]))


def test_a_disc_of_radius_r_holds_its_light_inside_r():
    kernel = combined_psf(6.0, PSFShape("disc", edge=0.0)).double()
    size = kernel.shape[-1]
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    rho = torch.sqrt(x[None] ** 2 + x[:, None] ** 2)
    assert float(kernel[rho > 6.8].sum()) < 1e-9
    assert float(kernel[rho < 5].std()) < 1e-9  # uniform inside: a disc, not Eq. 3's Butterworth profile


def test_polygon_reaches_the_radius_at_its_corners_only():
    radius, blades, rotation = 12.0, 5, 0.4
    kernel = combined_psf(radius, PSFShape("polygon", blades=blades, rotation=rotation, edge=0.0))
    centre = (kernel.shape[-1] - 1) / 2

    def value(angle: float, distance: float) -> float:
        return float(kernel[round(centre + distance * math.sin(angle)), round(centre + distance * math.cos(angle))])

    for k in range(blades):
        corner = rotation + 2 * math.pi * k / blades
        edge_middle = corner + math.pi / blades
        assert value(corner, 0.92 * radius) > 0  # inside near a corner
        assert value(edge_middle, 0.92 * radius) == 0  # outside: the edge is at cos(pi / 5) = 0.81 of the radius
        assert value(edge_middle, 0.7 * radius) > 0


def test_spherical_rim_brightens_the_edge_or_the_centre():
    rim, soft = (
        combined_psf(10.0, PSFShape("spherical", rim=0.8, edge=0.0)),
        combined_psf(10.0, PSFShape("spherical", rim=-0.8, edge=0.0)),
    )
    c = rim.shape[-1] // 2
    assert rim[c, c + 8] > rim[c, c] and soft[c, c + 8] < soft[c, c]


def test_a_constant_radius_scene_blurs_as_its_psf_says():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    for family in PSF_FAMILIES:
        shape = PSFShape(family, blades=7, rotation=1.0)
        bank = FamilyPSFBank(shape, max_coc=8, softness=0.2, falloff=0.3)
        coc = torch.full((1, 1, 1, 64, 64), 5.0, dtype=torch.float64)
        left, right = render_layers(image[:, None], torch.ones_like(coc), coc, bank)
        expected = fft_convolve(image, combined_psf(5.0, shape).double()[None])[:, 0]
        # each view is the PSF times a half-aperture mask; their mean is the family's combined PSF
        assert torch.allclose((left + right) / 2, expected, atol=0.03), family
        assert float((left - right).abs().mean()) > 1e-3  # the two views differ: there is a DP disparity


def test_sampled_shapes_are_seeded_and_cover_the_families():
    draws = [sample_psf_shape(torch.Generator().manual_seed(i)) for i in range(60)]
    assert {d.family for d in draws} == set(PSF_FAMILIES)
    again = [sample_psf_shape(torch.Generator().manual_seed(i)) for i in range(60)]
    assert draws == again
    with pytest.raises(ValueError, match="subset"):
        sample_psf_shape(torch.Generator(), ("no_such_family",))


def _render(config, seed=0, size=48, grey=False):
    torch.manual_seed(123)
    sharp = torch.rand(3, 3, size, size)
    if grey:
        sharp = sharp.mean(1, keepdim=True).expand(3, 3, size, size).contiguous()
    return DualPixelRenderer(config)(sharp, torch.Generator().manual_seed(seed))


def test_varied_engine_is_seeded():
    config = DualPixelConfig.varied(max_coc=6)
    a, b = _render(config, seed=4), _render(config, seed=4)
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["blurred"], _render(config, seed=5)["blurred"])


def test_all_in_focus_scenes_have_nothing_to_undo():
    config = DualPixelConfig.varied(max_coc=6, all_in_focus_prob=1.0).clean()
    out = _render(config)
    assert float(out["coc"].abs().max()) == 0
    assert torch.allclose(out["blurred"], out["sharp"], atol=1e-5)


def test_grey_scenes_stay_grey_through_the_engine():
    config = DualPixelConfig.varied(max_coc=6, grey_prob=1.0, jpeg_prob=0.0)
    out = _render(config)
    for key in ("sharp", "blurred"):
        spread = out[key].amax(1) - out[key].amin(1)
        assert float(spread.max()) < 1e-5, key  # noise is drawn per channel only when the scene is not grey


def test_highlights_become_bokeh_discs():
    """A small light brighter than white in linear light blurs into a saturated disc, not a dim smudge."""
    sharp = torch.full((1, 3, 64, 64), 0.2)
    sharp[..., 30:34, 30:34] = 1.0
    base = DualPixelConfig.varied(max_coc=8, num_layers=(2, 2), aperture_range=(40, 40), in_focus_prob=0.0).clean()
    base = base.replace(background_in_focus_prob=0.0, all_in_focus_prob=0.0, grey_prob=0.0, tone_curve_range=(0, 0))
    dim = DualPixelRenderer(base.replace(highlight_prob=0.0))(sharp, torch.Generator().manual_seed(1))
    bright = DualPixelRenderer(base.replace(highlight_prob=1.0, highlight_gain_range=(8, 8)))(
        sharp, torch.Generator().manual_seed(1)
    )
    assert float(bright["blurred"].amax()) > float(dim["blurred"].amax()) + 0.2
    assert torch.equal(dim["sharp"], bright["sharp"])  # the target clips the light at white either way


def _constant_scene(coc: float, bank, size: int = 64):
    torch.manual_seed(1)
    image = torch.rand(1, 3, size, size, dtype=torch.float64)
    field = torch.full((1, 1, 1, size, size), coc, dtype=torch.float64)
    left, right = render_layers(image[:, None], torch.ones_like(field), field, bank)
    return image, left, right


def test_vertical_split_moves_the_disparity_to_y():
    from defocusgan_hf.pipelines.dual_pixel_views import detect_split

    shape = PSFShape("disc", edge=0.1)
    for vertical, expected in ((False, "horizontal"), (True, "vertical")):
        bank = FamilyPSFBank(shape, max_coc=8, softness=0.1, falloff=0.0, vertical=vertical)
        _, left, right = _constant_scene(5.0, bank)
        assert detect_split(left.float(), right.float())[0] == expected


def test_off_centre_split_gives_unequal_half_apertures():
    from defocusgan_hf.models.dual_pixel import aperture_masks

    centred = aperture_masks(21, 8.0, 0.1, 0.0)[0]
    shifted = aperture_masks(21, 8.0, 0.1, 0.0, offset=0.2)[0]
    assert float(shifted.sum()) > float(centred.sum())  # the left half-aperture grows when the split moves right
    assert torch.allclose(sum(aperture_masks(21, 8.0, 0.1, 0.3, offset=0.2)), torch.ones(21, 21))


def test_dp_view_search_finds_the_side_without_the_renderers_masks():
    """The stage-1 DP-view search assumes the default half-aperture model; the varied engine renders with other
    masks, split offsets and PSF shapes. The search must still tell near from far on such data."""
    from defocusgan_hf.models.blur_kernel import kernel_bank
    from defocusgan_hf.models.dual_pixel import dual_pixel_view_kernels
    from defocusgan_hf.models.reblur import search_signed_coc

    view_kernels = dual_pixel_view_kernels(kernel_bank(8)).double()  # the search's own (default) masks
    bank = FamilyPSFBank(PSFShape("polygon", blades=7, edge=0.2), max_coc=8, softness=0.35, falloff=0.5, offset=0.1)
    for coc in (5.0, -5.0):
        sharp, left, right = _constant_scene(coc, bank)
        found = search_signed_coc(sharp, left, right, view_kernels)[..., 12:-12, 12:-12]
        assert float((torch.sign(found) == math.copysign(1, coc)).double().mean()) > 0.9, coc
        assert abs(float(found.abs().median()) - 5.0) < 1.5


def test_varied_config_draws_masks_unlike_the_search_defaults():
    config = DualPixelConfig.varied()
    assert config.split_softness_range[1] > 0.15 * 2 and config.light_falloff_range[1] > 0.3
    assert config.split_offset_range != (0.0, 0.0)


def test_axial_chromatic_aberration_scales_red_and_blue_radii_and_keeps_focus_sharp():
    from defocusgan_hf.data.synthetic import _render_channels

    torch.manual_seed(0)
    image = torch.rand(1, 1, 3, 64, 64, dtype=torch.float64)
    bank = FamilyPSFBank(PSFShape("disc", edge=0.0), max_coc=10)
    coc = torch.full((1, 1, 1, 64, 64), 5.0, dtype=torch.float64)
    (plain,) = _render_channels(image, torch.ones_like(coc), coc, [bank], None)
    (fringed,) = _render_channels(image, torch.ones_like(coc), coc, [bank], (1.2, 1.0, 0.8))
    assert torch.equal(fringed[0][:, 1], plain[0][:, 1])  # green: unchanged
    for ch, radius in ((0, 6.0), (2, 4.0)):  # red blurred as a 6 px disc, blue as a 4 px one
        expected = fft_convolve(image[:, 0, ch : ch + 1], combined_psf(radius, bank.shape).double()[None])[:, 0]
        assert torch.allclose((fringed[0][:, ch] + fringed[1][:, ch]) / 2, expected[:, 0], atol=0.03)
    (in_focus,) = _render_channels(image, torch.ones_like(coc), coc * 0, [bank], (1.2, 1.0, 0.8))
    assert torch.equal(in_focus[0], image[:, 0]) and torch.equal(in_focus[1], image[:, 0])


def test_field_varying_psf_is_the_centre_psf_at_the_centre_and_a_radial_cat_eye_in_the_corners():
    from defocusgan_hf.data.synthetic import _cat_eye_banks, _field_varying, field_weights

    r2, weights = field_weights(64, 96)
    assert float(r2[31:33, 47:49].max()) < 0.01 and float(r2.max()) > 0.95
    assert torch.allclose(weights.sum(0), torch.ones(64, 96)) and float(weights.min()) >= 0
    # a grid of points blurred with a 6 px disc: near the centre a disc, in a corner narrow along the diagonal
    image = torch.zeros(1, 1, 3, 64, 96, dtype=torch.float64)
    image[..., 32, 48] = image[..., 6, 6] = 1.0
    coc = torch.full((1, 1, 1, 64, 96), 6.0, dtype=torch.float64)
    sample = (image, torch.ones_like(coc), coc)

    def bank_of(shape):
        return FamilyPSFBank(shape, max_coc=8, softness=0.05, falloff=0.0)

    disc = PSFShape("disc", edge=0.0)
    centre = render_layers(*sample, bank_of(disc))
    cat_eyes = [render_layers(*sample, bank) for bank in _cat_eye_banks(disc, 0.9, bank_of)]
    left, right = _field_varying(centre, cat_eyes)
    blurred = ((left + right) / 2)[0, 1]
    disc_spot = ((centre[0] + centre[1]) / 2)[0, 1, 26:39, 42:55]
    assert torch.allclose(blurred[26:39, 42:55], disc_spot, atol=0.03 * float(disc_spot.max()))  # r² < 0.03 there
    spot = blurred[0:14, 0:14].double()
    y, x = torch.meshgrid(torch.arange(14.0) - 6, torch.arange(14.0) - 6, indexing="ij")
    radial, tangential = (x + y) / math.sqrt(2), (x - y) / math.sqrt(2)
    total = spot.sum()
    # r² = 0.73 there: mostly the cat eye, whose narrow axis is the radial one (the diagonal)
    assert float((spot * radial**2).sum() / total) < 0.85 * float((spot * tangential**2).sum() / total)
    near_centre = blurred[26:39, 42:55].double()
    yc, xc = torch.meshgrid(torch.arange(13.0) - 6, torch.arange(13.0) - 6, indexing="ij")
    ratio = float((near_centre * xc**2).sum() / (near_centre * yc**2).sum())
    assert 0.9 < ratio < 1.1  # round at the centre


def test_varied_engine_turns_on_chromatic_aberration_and_field_varying_psfs():
    config = DualPixelConfig.varied()
    assert config.chromatic_prob > 0 and config.chromatic_range > 0 and config.field_varying_prob > 0
    everything = DualPixelConfig.varied(max_coc=6, chromatic_prob=1.0, field_varying_prob=1.0, grey_prob=0.0)
    plain = DualPixelConfig.varied(max_coc=6, chromatic_prob=0.0, field_varying_prob=0.0, grey_prob=0.0)
    a, b = _render(everything, seed=2), _render(plain, seed=2)
    assert torch.equal(a["sharp"], b["sharp"]) and torch.equal(a["coc"], b["coc"])  # the same scene and target
    assert not torch.equal(a["blurred"], b["blurred"])  # rendered with other PSFs
    with pytest.raises(ValueError, match="chromatic_range"):
        DualPixelConfig(chromatic_range=0.7)


def test_named_data_configs_are_the_flags_engines():
    assert DualPixelConfig.named("eq3", max_coc=6) == DualPixelConfig(max_coc=6)
    assert DualPixelConfig.named("varied", max_coc=6) == DualPixelConfig.varied(max_coc=6)
    with pytest.raises(ValueError, match="eq3"):
        DualPixelConfig.named("no_such_engine")
