"""The opt-in engine changes of ``ENGINE_CHANGES``: off by default (the default streams unchanged), each doing what
it says, and the brightness-bias diagnostic."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import defocusgan_hf.data.sources as sources_module
import defocusgan_hf.data.synthetic as synthetic
from defocusgan_hf.data import (
    DeadLeavesSource,
    DualPixelConfig,
    DualPixelRenderer,
    SyntheticDualPixelDataset,
    build_source,
)
from defocusgan_hf.data.config import ENGINE_CHANGES, REAL_COC_HISTOGRAM, coc_histogram_from_values
from defocusgan_hf.data.datasets import engine_source
from defocusgan_hf.data.diagnostics import brightness_bias
from defocusgan_hf.data.scene import histogram_edges, sample_from_histogram, sample_scene
from defocusgan_hf.data.sensor import bilateral_smear, phone_processing, unsharp_mask
from defocusgan_hf.data.sources import CUHK_TEST_PHOTOS, CUHKInFocusSource


def _sharp(batch=2, size=32, seed=0):
    noise = torch.rand(batch, 3, size + 1, size + 1, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool2d(noise, 2, 1)


def _render(config, sharp=None, seed=5):
    return DualPixelRenderer(config)(_sharp() if sharp is None else sharp, torch.Generator().manual_seed(seed))


RAISED_SHARES = {"more_in_focus_scenes"}  # changes that raise a share the varied engine already has
RETUNED_RANGES = {"phone_dual_pixel"}  # changes that retune ranges the engines already draw from
CHANGE_FIELDS = sorted(
    {field for name, change in ENGINE_CHANGES.items() if name not in RAISED_SHARES | RETUNED_RANGES for field in change}
)

# Means and standard deviations of each output of `_render` (2 x 32², seed 5, max_coc 6), measured at commit 977d246,
# before the changes existed. A changed random stream moves them by far more than the tolerance.
FINGERPRINTS = {
    "eq3": (
        {"sharp": 0.5209307, "blurred": 0.5425021, "left": 0.5407604, "right": 0.5426089, "coc": 3.7883613},
        {"sharp": 0.151259, "blurred": 0.0435035, "left": 0.0522664, "right": 0.0517871, "coc": 1.9381718},
    ),
    "varied": (
        {"sharp": 0.4643515, "blurred": 0.4868835, "left": 0.4855844, "right": 0.4858766, "coc": 3.7883613},
        {"sharp": 0.1563681, "blurred": 0.0661731, "left": 0.0749825, "right": 0.0730802, "coc": 1.9381718},
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# Off by default, named, serialisable
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eq3", "varied"])
def test_default_streams_match_the_engine_before_the_changes(name):
    out = _render(DualPixelConfig.named(name, max_coc=6))
    means, stds = FINGERPRINTS[name]
    for key, value in out.items():
        assert float(value.double().mean()) == pytest.approx(means[key], abs=2e-6), key
        assert float(value.double().std()) == pytest.approx(stds[key], abs=2e-6), key


def test_change_fields_are_off_in_the_defaults_and_in_varied():
    defaults = DualPixelConfig()
    for field in CHANGE_FIELDS:
        assert getattr(DualPixelConfig.varied(), field) == getattr(defaults, field), field
    assert defaults.in_focus_highlight_prob == defaults.phone_processing_prob == 0
    assert not defaults.energy_consistent_highlights
    assert defaults.cuhk_in_focus_root is None and defaults.coc_histogram is None


def test_change_fields_set_to_their_off_values_leave_the_output_bit_identical():
    config = DualPixelConfig.varied(max_coc=6)
    off = config.replace(
        in_focus_highlight_prob=0.0,
        energy_consistent_highlights=False,
        phone_processing_prob=0.0,
        coc_histogram=None,
        fine_pattern_weight=0.0,
        eight_bit_samples=False,
    )
    a, b = _render(config), _render(off)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_more_in_focus_scenes_raises_the_share_of_scenes_whose_target_is_the_input():
    config = DualPixelConfig.varied(max_coc=6)
    raised = config.with_change("more_in_focus_scenes")
    assert raised.all_in_focus_prob > config.all_in_focus_prob > 0
    renderer, sharp = DualPixelRenderer(raised), torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    out = renderer(sharp, torch.Generator().manual_seed(5))
    identity = (out["coc"].abs().flatten(1).amax(1) == 0).float().mean()
    base = DualPixelRenderer(config)(sharp, torch.Generator().manual_seed(5))["coc"].abs().flatten(1).amax(1) == 0
    assert float(identity) > float(base.float().mean())  # more samples with nothing to undo


def test_with_change_applies_a_named_change_on_top_of_varied():
    config = DualPixelConfig.varied().with_change("phone_processing")
    assert config == DualPixelConfig.varied().replace(**ENGINE_CHANGES["phone_processing"])
    assert DualPixelConfig.named("varied+phone_processing+in_focus_highlights") == config.with_change(
        "in_focus_highlights"
    )
    with pytest.raises(ValueError, match="no_such_change"):
        DualPixelConfig.varied().with_change("no_such_change")
    real = DualPixelConfig.varied().with_change("real_coc_distribution")  # the built-in real histogram
    assert real.coc_histogram == REAL_COC_HISTOGRAM and abs(sum(w for _, w in real.coc_histogram) - 1) < 1e-9
    with pytest.raises(ValueError, match="grey_prob"):
        DualPixelConfig.varied().with_change("phone_processing", grey_prob=1.0)
    bins = ((2.0, 1.0), (6.0, 3.0))
    assert DualPixelConfig.varied().with_change("real_coc_distribution", coc_histogram=bins).coc_histogram == bins


def test_configs_with_changes_survive_a_json_round_trip():
    config = DualPixelConfig.varied(
        coc_histogram=((1.5, 0.2), (4.0, 0.8)), cuhk_in_focus_root="/x", phone_processing_prob=0.3
    )
    assert DualPixelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# ---------------------------------------------------------------------------------------------------------------
# 1. In-focus highlights
# ---------------------------------------------------------------------------------------------------------------


def _capture_highlights(monkeypatch):
    captured = []
    original = synthetic.in_focus_highlight_layer

    def capture(*args, **kwargs):
        captured.append(original(*args, **kwargs))
        return captured[-1]

    monkeypatch.setattr(synthetic, "in_focus_highlight_layer", capture)
    return captured


def test_in_focus_highlights_are_bright_and_identical_in_input_and_target(monkeypatch):
    captured = _capture_highlights(monkeypatch)
    # Every sample gets highlights, and the highlight-to-bokeh gain is at its strongest: it must not reach them.
    config = DualPixelConfig.varied(
        max_coc=6, in_focus_highlight_prob=1.0, highlight_prob=1.0, highlight_gain_range=(8.0, 8.0), grey_prob=0.0
    ).replace(noise_prob=0.0, jpeg_prob=0.0, vignetting_range=(0.0, 0.0))
    out = _render(config, _sharp(batch=3, size=48))
    inside = captured[-1][1] >= 1  # (B, 1, H, W) fully covered pixels
    assert 0.002 < float(inside.float().mean()) < 0.5
    mask = inside.expand(-1, 3, -1, -1)
    for key in ("blurred", "left", "right"):
        assert torch.equal(out[key][mask], out["sharp"][mask]), key
    assert float(out["sharp"].amax(dim=1, keepdim=True)[inside].min()) > 0.7  # bright: near white in some channel
    assert torch.all(out["coc"][inside] == 0)


def test_in_focus_highlights_leave_the_rest_of_the_stream_alone(monkeypatch):
    captured = _capture_highlights(monkeypatch)
    config = DualPixelConfig.varied(max_coc=6).replace(noise_prob=0.0, jpeg_prob=0.0)
    plain, lit = _render(config), _render(config.replace(in_focus_highlight_prob=1.0))
    untouched = (captured[-1][1] == 0).expand(-1, 3, -1, -1)
    assert torch.equal(plain["sharp"][untouched], lit["sharp"][untouched])
    assert not torch.equal(plain["sharp"], lit["sharp"])


# ---------------------------------------------------------------------------------------------------------------
# 2. Energy-consistent highlights and the brightness bias
# ---------------------------------------------------------------------------------------------------------------


def _bright_spots(size=48):
    image = torch.full((1, 3, size, size), 0.2)
    for y, x in ((8, 8), (30, 14), (20, 36), (38, 38)):
        image[..., y : y + 4, x : x + 4] = 1.0
    return image


def _bright_patch(size=48):
    image = torch.full((1, 3, size, size), 0.2)
    image[..., 16:32, 16:32] = 1.0
    return image


def _light_difference(out):
    return 255 * float((out["blurred"] - out["sharp"]).mean())


def test_energy_consistent_highlights_keep_the_targets_light_in_the_input():
    config = DualPixelConfig(
        max_coc=6,
        mix_layer_content=False,
        aperture_range=(20.0, 20.0),
        highlight_prob=1.0,
        highlight_gain_range=(8.0, 8.0),
        gamma_range=(1.0, 1.0),
        exposure_range=(1.0, 1.0),
        vignetting_range=(0.0, 0.0),
        noise_prob=0.0,
        jpeg_prob=0.0,
    )
    matched = 0
    for image in (_bright_spots(), _bright_patch()):
        for seed in (5, 6, 7):
            spread = _light_difference(_render(config, image, seed))
            kept = _render(config.replace(energy_consistent_highlights=True), image, seed)
            no_gain = _light_difference(_render(config.replace(highlight_gain_range=(1.0, 1.0)), image, seed))
            assert spread > no_gain + 10  # clipped in the target, spread as bokeh in the input: the input is brighter
            # The same light as the target, unless the input is brighter even without the extra light (the layered
            # compositing's own mismatch): then none of it is kept.
            if abs(_light_difference(kept)) < 0.05:
                matched += 1
            else:
                assert _light_difference(kept) == pytest.approx(no_gain, abs=1e-3) and no_gain > 0
            assert torch.equal(kept["sharp"], _render(config, image, seed)["sharp"])  # the target as it was
    assert matched >= 1


def test_brightness_bias_reports_the_mean_difference_in_8_bit_levels():
    result = brightness_bias(DualPixelConfig.varied(max_coc=6, highlight_prob=0.5), n=3, size=24, seed=1)
    assert result["n"] == 3 and result["n_highlights"] + (result["no_highlights"] is not None) >= 1
    dataset = SyntheticDualPixelDataset(
        resolution=24, length=3, seed=1, config=DualPixelConfig.varied(max_coc=6, highlight_prob=0.5)
    )
    expected = np.mean([255 * float((s["blurred"].double() - s["sharp"].double()).mean()) for s in dataset])
    assert result["overall"] == pytest.approx(expected, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# 3. Phone processing
# ---------------------------------------------------------------------------------------------------------------


def test_phone_processing_changes_the_input_only():
    config = DualPixelConfig.varied(max_coc=6)
    plain, phone = _render(config), _render(config.replace(phone_processing_prob=1.0))
    assert not torch.equal(plain["blurred"], phone["blurred"])
    for key in ("sharp", "left", "right", "coc"):
        assert torch.equal(plain[key], phone[key]), key
    assert torch.equal(phone["blurred"], _render(config.replace(phone_processing_prob=1.0))["blurred"])  # seeded


def test_unsharp_mask_overshoots_at_edges_and_the_smear_lowers_noise():
    step = torch.zeros(1, 3, 16, 32)
    step[..., 16:] = 0.6
    sharpened = unsharp_mask(step, radius=2.0, amount=1.0)
    assert float(sharpened[..., 16:18].max()) > 0.65 and float(sharpened[..., 14:16].min()) == 0.0  # halo, clipped
    torch.testing.assert_close(sharpened[..., 28:], step[..., 28:])  # flat parts untouched
    noisy = 0.5 + 0.02 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(bilateral_smear(noisy, strength=1.0).std()) < 0.6 * float(noisy.std())
    kept = phone_processing(noisy, torch.Generator().manual_seed(0), prob=0.0)
    assert torch.equal(kept, noisy)


# ---------------------------------------------------------------------------------------------------------------
# 4. CUHK in-focus sources
# ---------------------------------------------------------------------------------------------------------------


def _fake_cuhk(root, count=45, size=80):
    """Photos 1-40 are not images (reading one fails); the others are red where blurred, blue in the mask's in-focus
    part within 15 px of its edge, green textured inside (the part a source may use)."""
    (root / "images").mkdir(parents=True)
    (root / "blur_masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(1, count + 1):
        name = f"out_of_focus{index:04d}"
        if index <= CUHK_TEST_PHOTOS:
            (root / "images" / f"{name}.png").write_bytes(b"test photo: never read")
            (root / "blur_masks" / f"{name}.png").write_bytes(b"test mask: never read")
            continue
        mask = np.full((size, size), 255, np.uint8)
        mask[10:70, 10:70] = 0  # in focus
        photo = np.zeros((size, size, 3), np.uint8)
        photo[..., 0] = 200
        photo[10:70, 10:70] = (0, 0, 200)
        photo[25:55, 25:55] = np.stack([np.zeros((30, 30)), rng.integers(50, 250, (30, 30)), np.zeros((30, 30))], -1)
        Image.fromarray(photo).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "blur_masks" / f"{name}.png")
    return root


def test_cuhk_source_crops_only_eroded_in_focus_parts_and_never_opens_the_test_photos(tmp_path, monkeypatch):
    root = _fake_cuhk(tmp_path / "cuhk")
    opened = []
    real_open = Image.open

    def recording_open(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", recording_open)
    source = CUHKInFocusSource(root)
    assert source.indices == [41, 42, 43, 44, 45] and set(source.max_side.values()) == {30}
    for seed in range(12):
        crop = source.sample(16, torch.Generator().manual_seed(seed))
        assert crop.shape == (3, 16, 16)
        assert float(crop[0].max()) < 0.02 and float(crop[2].max()) < 0.02  # neither blurred nor near the edge
    numbers = {int(name[-8:-4]) for name in opened}
    assert numbers and min(numbers) > CUHK_TEST_PHOTOS


def test_cuhk_source_refuses_the_test_photos_missing_folders_and_too_large_crops(tmp_path):
    root = _fake_cuhk(tmp_path / "cuhk")
    with pytest.raises(ValueError, match="in-focus test"):
        CUHKInFocusSource(root, indices=[40, 41])
    with pytest.raises(FileNotFoundError, match="blur_masks"):
        CUHKInFocusSource(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="30 px"):
        CUHKInFocusSource(root).sample(64, torch.Generator().manual_seed(0))


def test_cuhk_source_is_reachable_by_name_and_through_the_config(tmp_path):
    root = _fake_cuhk(tmp_path / "cuhk")
    assert isinstance(build_source(f"cuhk_in_focus:{root}"), CUHKInFocusSource)
    mixed = engine_source(
        "dead_leaves", DualPixelConfig.varied().with_change("cuhk_in_focus_sources", cuhk_in_focus_root=str(root))
    )
    assert isinstance(mixed, sources_module.MixedSource) and isinstance(mixed.sources[1], CUHKInFocusSource)
    assert not isinstance(engine_source("dead_leaves", DualPixelConfig.varied()), sources_module.MixedSource)


# ---------------------------------------------------------------------------------------------------------------
# 5. A CoC-scale histogram
# ---------------------------------------------------------------------------------------------------------------


def _histogram_cdf(bins, x):
    edges, weights = histogram_edges(bins)
    cdf = np.concatenate([[0.0], np.cumsum(weights)])
    return np.interp(x, edges, cdf)


def test_coc_scales_drawn_from_a_histogram_follow_it():
    bins = ((1.0, 0.1), (3.0, 0.5), (8.0, 0.0), (15.0, 0.4))
    draws = sample_from_histogram(torch.Generator().manual_seed(0), bins, 20_000).numpy()
    edges, _ = histogram_edges(bins)
    assert edges[0] <= draws.min() and draws.max() <= edges[-1]
    grid = np.sort(draws)
    ks = np.abs(np.arange(1, grid.size + 1) / grid.size - _histogram_cdf(bins, grid)).max()
    assert ks < 0.015  # Kolmogorov-Smirnov distance; the 1 % critical value at n = 20,000 is 0.0115
    assert not ((draws > 5.5) & (draws < 11.5)).any()  # a bin of weight 0 gets nothing


def test_scenes_take_their_aperture_from_the_histogram_and_keep_the_rest():
    bins = ((4.0, 1.0), (5.0, 1.0))
    g, h = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    plain = sample_scene(64, 16, 16, torch.Generator().manual_seed(1))
    drawn = sample_scene(64, 16, 16, g, coc_histogram=bins, histogram_generator=h)
    assert torch.equal(plain.alpha, drawn.alpha) and torch.equal(plain.focus, drawn.focus)
    assert float(drawn.aperture.min()) >= 3.5 and float(drawn.aperture.max()) <= 5.5
    out = _render(DualPixelConfig.varied(max_coc=6, coc_histogram=((0.5, 1.0),)).clean())
    assert float(out["coc"].abs().max()) <= 0.75  # |coc| <= A <= 0.75 px


def test_a_histogram_built_from_coc_values_reproduces_their_distribution():
    values = np.exp(np.random.default_rng(0).uniform(np.log(0.5), np.log(20.0), 50_000))
    bins = coc_histogram_from_values(values, num_bins=24)
    assert sum(w for _, w in bins) == pytest.approx(1.0)
    draws = sample_from_histogram(torch.Generator().manual_seed(0), bins, 20_000).numpy()
    for q in (0.1, 0.5, 0.9):
        assert np.quantile(draws, q) == pytest.approx(np.quantile(values, q), rel=0.08)
    with pytest.raises(ValueError, match="finite"):
        coc_histogram_from_values([np.nan])


# ---------------------------------------------------------------------------------------------------------------
# Fine periodic patterns
# ---------------------------------------------------------------------------------------------------------------


def _high_frequency_share(image: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of an image's grey power spectrum above ``cutoff`` cycles per pixel (radially)."""
    grey = image.mean(0).double().numpy()
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    return float(power[np.hypot(fy, fx) > cutoff].sum() / power.sum())


def test_dead_leaves_default_stream_is_the_one_before_fine_patterns_existed():
    image = DeadLeavesSource().sample(48, torch.Generator().manual_seed(0)).double()
    # Measured at commit 87e7da5, before the option existed.
    assert float(image.mean()) == pytest.approx(0.3796465418, abs=1e-7)
    assert float(image.std()) == pytest.approx(0.2485547153, abs=1e-7)


def test_fine_patterns_put_more_power_near_the_sampling_limit_and_stay_in_range():
    shares = {True: [], False: []}
    for seed in range(4):
        for fine in shares:
            image = DeadLeavesSource(fine_patterns=fine).sample(128, torch.Generator().manual_seed(seed))
            assert 0 <= float(image.min()) and float(image.max()) <= 1
            shares[fine].append(_high_frequency_share(image))
    assert np.mean(shares[True]) > 1.5 * np.mean(shares[False])  # measured: 0.109 against 0.058


def test_fine_pattern_sources_mix_fine_dead_leaves_under_the_cuhk_crops(tmp_path):
    root = _fake_cuhk(tmp_path / "cuhk")
    config = DualPixelConfig.varied().with_change("fine_pattern_sources")
    mixed = engine_source("dead_leaves", config)
    assert isinstance(mixed, sources_module.MixedSource) and mixed.sources[1].fine_patterns
    assert float(mixed.weights[1]) == pytest.approx(config.fine_pattern_weight)
    both = engine_source("dead_leaves", config.replace(cuhk_in_focus_root=str(root)))
    assert isinstance(both.sources[0], sources_module.MixedSource) and isinstance(both.sources[1], CUHKInFocusSource)
    with pytest.raises(ValueError, match="fine_pattern_weight"):
        DualPixelConfig(fine_pattern_weight=1.5)


def test_eight_bit_samples_round_every_image_to_8_bit_levels_and_keep_the_rest_of_the_stream():
    config = DualPixelConfig.varied(max_coc=6)
    plain, rounded = _render(config), _render(config.with_change("eight_bit_samples"))
    for key in ("sharp", "blurred", "left", "right"):
        levels = rounded[key] * 255
        assert torch.allclose(levels, levels.round(), atol=1e-4), key
        assert float((plain[key] - rounded[key]).abs().max()) <= 0.5 / 255 + 1e-6, key
        assert not torch.equal(plain[key], rounded[key]), key
    assert torch.equal(plain["coc"], rounded["coc"])


# ---------------------------------------------------------------------------------------------------------------
# Phone-like dual pixels
# ---------------------------------------------------------------------------------------------------------------


def test_phone_dual_pixel_composes_with_varied_and_retunes_only_its_ranges():
    config = DualPixelConfig.named("varied+phone_dual_pixel")
    assert config == DualPixelConfig.varied().replace(**ENGINE_CHANGES["phone_dual_pixel"])
    assert config.aperture_range == (1.0, 8.0) and config.split_softness_range == (0.3, 0.8)
    assert config.vignetting_range == (0.1, 0.3)
    assert DualPixelConfig.named("varied+phone_dual_pixel+eight_bit_samples").eight_bit_samples
    assert DualPixelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_phone_dual_pixel_draws_small_radii_and_leaves_the_default_stream_alone():
    plain = DualPixelConfig.named("varied", max_coc=6)
    before = _render(plain)  # (the fingerprint test above pins this stream to the one before the changes)
    phone = DualPixelConfig.named("varied+phone_dual_pixel", max_coc=25)
    sharp = torch.rand(16, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    out = DualPixelRenderer(phone)(sharp, torch.Generator().manual_seed(5))
    assert float(out["coc"].abs().max()) <= 8.0 + 1e-5 and float(out["coc"].abs().max()) > 0.5
    wide = DualPixelRenderer(DualPixelConfig.named("varied", max_coc=25))(sharp, torch.Generator().manual_seed(5))
    assert float(wide["coc"].abs().max()) > 8.0  # the plain engine reaches larger radii on the same draws
    assert torch.equal(out["sharp"], wide["sharp"]) and torch.equal(out["coc"] == 0, wide["coc"] == 0)  # paired
    scenes = DualPixelRenderer(phone).sample_scene(256, 8, 8, torch.Generator().manual_seed(1))
    assert float(scenes.aperture.min()) >= 1.0 - 1e-6 and float(scenes.aperture.max()) <= 8.0 + 1e-6
    after = _render(plain)  # building the phone engine changed nothing in the plain one
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_phone_dual_pixel_vignetting_darkens_the_views_towards_opposite_edges():
    phone = (
        DualPixelConfig.named("eq3+phone_dual_pixel", max_coc=6)
        .clean()
        .replace(vignetting_range=(0.3, 0.3), aperture_range=(1.0, 1.0))
    )
    flat = torch.full((1, 3, 32, 32), 0.5)
    out = DualPixelRenderer(phone)(flat, torch.Generator().manual_seed(0))
    left, right = out["left"].mean((0, 1, 2)), out["right"].mean((0, 1, 2))
    assert left[0] > left[-1] and right[0] < right[-1]  # 1 - s x and 1 + s x: opposite fall-off
    assert float(left[0] / left[-1]) == pytest.approx(1.3 / 0.7, rel=0.05)
