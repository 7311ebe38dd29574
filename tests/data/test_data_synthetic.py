"""Properties of the synthetic dual-pixel engine: DP PSFs, layered rendering, scenes, sensor effects, datasets."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from defocusgan_hf.data import (
    DeadLeavesSource,
    DualPixelConfig,
    DualPixelPSFBank,
    DualPixelRenderer,
    FolderSource,
    SharpImageDataset,
    SkimageSource,
    SyntheticDualPixelDataset,
    TextSource,
    augment,
    dual_pixel_psf,
    jpeg_compress,
    poisson_gaussian_noise,
    render_layers,
    sample_scene,
)
from defocusgan_hf.data.sources import SKIMAGE_SPLITS
from defocusgan_hf.image_io import save_image
from defocusgan_hf.models.blur_kernel import butterworth_disc_kernel, kernel_bank
from defocusgan_hf.models.reblur import reblur


def _texture(size=64, seed=0, batch=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(batch, 3, size + 1, size + 1, generator=generator), 2, 1)


def _single_layer(image, coc, bank):
    """Render ``image`` (B, 3, H, W) as one fronto-parallel layer of constant signed CoC."""
    B, _, H, W = image.shape
    alpha = torch.ones(B, 1, 1, H, W)
    return render_layers(image[:, None], alpha, torch.full((B, 1, 1, H, W), float(coc)), bank)


def _horizontal_shift(a, b):
    """Sub-pixel horizontal shift of ``b`` relative to ``a`` (pixels), by circular cross-correlation."""
    a, b = a - a.mean(), b - b.mean()
    corr = torch.fft.irfft2(torch.fft.rfft2(b).conj() * torch.fft.rfft2(a), s=a.shape[-2:]).sum(dim=(0, 1))
    row = corr[0]
    peak = int(row.argmax())
    left, centre, right = row[peak - 1], row[peak], row[(peak + 1) % row.numel()]
    offset = 0.5 * float(left - right) / float(left - 2 * centre + right)
    shift = peak + offset
    return -(shift if shift < row.numel() / 2 else shift - row.numel())


# ---------------------------------------------------------------------------------------------------------------
# PSFs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coc", [0.5, 1.0, 3.0, 7.5, 25.0, -4.0])
def test_left_and_right_psfs_average_to_the_paper_kernel(coc):
    left, right = dual_pixel_psf(coc)
    torch.testing.assert_close((left + right) / 2, butterworth_disc_kernel(abs(coc)), atol=1e-7, rtol=0)
    assert left.min() >= 0 and right.min() >= 0
    torch.testing.assert_close(left.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(right.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_zero_coc_psfs_are_deltas():
    left, right = dual_pixel_psf(0.0)
    torch.testing.assert_close(left, butterworth_disc_kernel(0.0))
    torch.testing.assert_close(right, left)
    assert left.max() == 1.0


def test_psf_centroids_grow_with_radius_and_flip_sign_across_focus():
    def centroid(kernel):
        x = torch.arange(kernel.shape[-1]) - (kernel.shape[-1] - 1) / 2
        return float((kernel * x).sum())

    radii = [1.0, 2.0, 4.0, 8.0, 16.0, 25.0]
    far = [centroid(dual_pixel_psf(r)[0]) for r in radii]
    assert all(b < a < 0 for a, b in zip(far, far[1:], strict=False)), far  # left view: light moved left
    for r in radii:
        left_near, right_near = dual_pixel_psf(-r)
        left_far, _ = dual_pixel_psf(r)
        assert centroid(left_near) == pytest.approx(-centroid(left_far), abs=1e-5)
        torch.testing.assert_close(left_near, right_near.flip(-1))


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def test_zero_coc_renders_both_views_equal_to_the_sharp_image():
    image = _texture()
    left, right = _single_layer(image, 0.0, DualPixelPSFBank())
    assert torch.equal(left, image) and torch.equal(right, image)


def test_measured_disparity_grows_with_coc_and_changes_sign_across_focus():
    image, bank = _texture(64), DualPixelPSFBank()
    shifts = {}
    for coc in (-10.0, -4.0, -1.0, 1.0, 4.0, 10.0):
        left, right = _single_layer(image, coc, bank)
        shifts[coc] = _horizontal_shift(left, right)  # right view relative to the left view, px
    assert 0 < shifts[1.0] < shifts[4.0] < shifts[10.0], shifts
    assert 0 > shifts[-1.0] > shifts[-4.0] > shifts[-10.0], shifts
    for r in (1.0, 4.0, 10.0):
        assert shifts[-r] == pytest.approx(-shifts[r], abs=0.1)


@pytest.mark.parametrize("coc", [2.0, 5.0, 9.0])
def test_left_plus_right_reproduces_the_combined_reblur(coc):
    image = _texture(48, seed=3)
    left, right = _single_layer(image, coc, DualPixelPSFBank(max_coc=10))
    expected = reblur(image, torch.full_like(image[:, :1], coc), kernel_bank(10))  # Eq. 4 with the paper kernel
    torch.testing.assert_close((left + right) / 2, expected, atol=2e-5, rtol=0)


def test_fractional_coc_is_split_between_the_two_nearest_sublayers():
    image, bank = _texture(40, seed=4), DualPixelPSFBank(max_coc=8)
    lo, hi, mid = (_single_layer(image, c, bank) for c in (3.0, 4.0, 3.25))
    for view in range(2):
        torch.testing.assert_close(mid[view], 0.75 * lo[view] + 0.25 * hi[view], atol=2e-5, rtol=0)


def _two_layers(near_coc, far_coc, size=48):
    far = _texture(size, seed=5)
    near = torch.ones(1, 3, size, size)  # a white square in front
    alpha = torch.zeros(1, 2, 1, size, size)
    alpha[:, 0] = 1
    alpha[:, 1, :, 16:32, 16:32] = 1
    coc = torch.stack([torch.full((1, 1, size, size), far_coc), torch.full((1, 1, size, size), near_coc)], 1)
    return torch.stack([far, near], 1), alpha, coc


def test_a_blurred_near_object_spills_over_the_sharp_background():
    layers, alpha, coc = _two_layers(near_coc=-5.0, far_coc=0.0)
    left, right = render_layers(layers, alpha, coc, DualPixelPSFBank(max_coc=8))
    blurred, background = (left + right) / 2, layers[:, 0]
    ring = blurred[..., 13:16, 16:32] - background[..., 13:16, 16:32]  # 1-3 px outside the square
    assert float(ring.mean()) > 0.1  # the white object's blur covers the background there
    torch.testing.assert_close(blurred[..., :4, :], background[..., :4, :], atol=1e-5, rtol=0)  # far away: untouched


def test_a_blurred_background_does_not_bleed_into_a_sharp_near_object():
    layers, alpha, coc = _two_layers(near_coc=0.0, far_coc=5.0)
    bank = DualPixelPSFBank(max_coc=8)
    left, right = render_layers(layers, alpha, coc, bank)
    # Inside the sharp object: exactly the object, in both views.
    torch.testing.assert_close(left[..., 16:32, 16:32], torch.ones(1, 3, 16, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(right[..., 16:32, 16:32], torch.ones(1, 3, 16, 16), atol=1e-5, rtol=0)
    # Outside it: the blurred background alone (the object is sharp, so nothing of it spreads).
    background_left, _ = _single_layer(layers[:, 0], 5.0, bank)
    torch.testing.assert_close(left[..., :, :12], background_left[..., :, :12], atol=1e-5, rtol=0)


def test_clean_renderer_outputs_match_their_definitions():
    config = DualPixelConfig(max_coc=8, aperture_range=(2.0, 12.0)).clean()
    renderer = DualPixelRenderer(config)
    sharp = _texture(40, batch=3)
    out = renderer(sharp, torch.Generator().manual_seed(0))
    assert set(out) == {"sharp", "blurred", "left", "right", "coc"}
    for key in ("sharp", "blurred", "left", "right"):
        assert out[key].shape == (3, 3, 40, 40) and out[key].dtype == torch.float32
    assert out["coc"].shape == (3, 1, 40, 40)
    torch.testing.assert_close(out["blurred"], (out["left"] + out["right"]) / 2, atol=1e-6, rtol=0)
    assert float(out["coc"].abs().max()) <= 8.0


def test_renderer_without_content_mixing_keeps_the_sharp_input():
    config = DualPixelConfig(max_coc=6, mix_layer_content=False).clean()
    sharp = _texture(32, batch=2)
    out = DualPixelRenderer(config)(sharp, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out["sharp"], sharp, atol=1e-6, rtol=0)


def test_renderer_is_deterministic_under_a_seed_and_varies_across_seeds():
    renderer = DualPixelRenderer(DualPixelConfig(max_coc=8, jpeg_prob=1.0, noise_prob=1.0))
    sharp = _texture(32, batch=2)
    a = renderer(sharp, torch.Generator().manual_seed(7))
    b = renderer(sharp, torch.Generator().manual_seed(7))
    c = renderer(sharp, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["coc"], c["coc"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rendering_on_cuda_matches_the_cpu():
    layers, alpha, coc = _two_layers(near_coc=-3.0, far_coc=4.0)
    bank = DualPixelPSFBank(max_coc=8)
    cpu = render_layers(layers, alpha, coc, bank)
    gpu = render_layers(layers.cuda(), alpha.cuda(), coc.cuda(), bank)
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)
    out = DualPixelRenderer()(_texture(32, batch=2).cuda(), torch.Generator("cuda").manual_seed(0))
    assert out["blurred"].device.type == "cuda"


# ---------------------------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------------------------


def test_scenes_have_in_focus_regions_both_sides_of_focus_and_depth_edges():
    scene = sample_scene(32, 48, 48, torch.Generator().manual_seed(0), max_coc=25.0)
    coc = scene.composite_coc()
    assert scene.alpha.shape == (32, 5, 1, 48, 48) and torch.all(scene.alpha[:, 0] == 1)
    assert float(coc.abs().max()) <= 25.0
    assert 2 <= int(scene.num_layers.min()) and int(scene.num_layers.max()) <= 5
    assert float((coc.abs() < 1).float().mean()) > 0.1  # in focus
    assert float((coc <= -1).float().mean()) > 0.02 and float((coc >= 1).float().mean()) > 0.2  # near and far
    jumps = (coc[..., 1:] - coc[..., :-1]).abs()
    assert float((jumps > 2).float().mean()) > 0.001  # sharp depth edges
    assert float(((jumps > 0.01) & (jumps < 0.5)).float().mean()) > 0.05  # gradual transitions


def test_scene_sampling_is_reproducible():
    a = sample_scene(2, 32, 32, torch.Generator().manual_seed(3))
    b = sample_scene(2, 32, 32, torch.Generator().manual_seed(3))
    assert torch.equal(a.coc, b.coc) and torch.equal(a.alpha, b.alpha)


# ---------------------------------------------------------------------------------------------------------------
# Sensor effects
# ---------------------------------------------------------------------------------------------------------------


def test_poisson_gaussian_noise_has_the_modelled_variance():
    image = torch.full((1, 3, 64, 64), 0.5)
    shot, read = torch.tensor([0.01]), torch.tensor([0.02])
    noisy = poisson_gaussian_noise(image, shot, read, torch.Generator().manual_seed(0))
    assert float((noisy - image).var()) == pytest.approx(0.01 * 0.5 + 0.02**2, rel=0.05)


def test_jpeg_error_falls_with_quality_and_keeps_the_range():
    image = _texture(48, seed=2, batch=1)
    errors = [float((jpeg_compress(image, torch.tensor([q])) - image).abs().mean()) for q in (10.0, 50.0, 95.0)]
    assert errors[0] > errors[1] > errors[2] > 0
    out = jpeg_compress(image, torch.tensor([30.0]))
    assert out.shape == image.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_jpeg_like_compression_matches_a_real_jpeg_codec():
    image = DeadLeavesSource().sample(64, torch.Generator().manual_seed(0))
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    image = torch.from_numpy(array / 255.0).permute(2, 0, 1)[None].float()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=75, subsampling=2)  # 4:2:0, like ours
    reference = torch.from_numpy(np.asarray(Image.open(buffer)) / 255.0).permute(2, 0, 1)[None].float()
    ours = jpeg_compress(image, torch.tensor([75.0]))
    assert float((ours - reference).abs().mean()) < 0.25 * float((reference - image).abs().mean())


def test_noise_only_touches_the_inputs_not_the_target():
    sharp = _texture(32, batch=2)
    noisy_config = DualPixelConfig(max_coc=6, noise_prob=1.0, shot_noise_range=(0.01, 0.01), jpeg_prob=0.0)
    clean = DualPixelRenderer(noisy_config.replace(noise_prob=0.0))(sharp, torch.Generator().manual_seed(0))
    noisy = DualPixelRenderer(noisy_config)(sharp, torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy["sharp"], clean["sharp"])
    torch.testing.assert_close(noisy["coc"], clean["coc"])
    assert float((noisy["left"] - clean["left"]).std()) > 0.01


# ---------------------------------------------------------------------------------------------------------------
# Sources and datasets
# ---------------------------------------------------------------------------------------------------------------


def test_validation_photos_are_held_out_from_training():
    assert not set(SKIMAGE_SPLITS["train"]) & set(SKIMAGE_SPLITS["val"])
    crop = SkimageSource("val").sample(32, torch.Generator().manual_seed(0))
    assert crop.shape == (3, 32, 32) and 0 <= float(crop.min()) and float(crop.max()) <= 1


@pytest.mark.parametrize("source", [DeadLeavesSource(), TextSource()], ids=["dead_leaves", "text"])
def test_procedural_sources_are_seeded_varied_and_in_range(source):
    a = source.sample(48, torch.Generator().manual_seed(0))
    b = source.sample(48, torch.Generator().manual_seed(0))
    c = source.sample(48, torch.Generator().manual_seed(1))
    assert a.shape == (3, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 1 and float(a.std()) > 0.02


def test_folder_source_searches_recursively_and_rejects_empty_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    save_image(torch.rand(40, 50, 3).numpy(), tmp_path / "a" / "b" / "x.png")
    source = FolderSource(tmp_path)
    assert len(source.files) == 1
    assert source.sample(32, torch.Generator().manual_seed(0)).shape == (3, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        FolderSource(tmp_path / "empty")


def test_augment_flips_and_jitters_within_range():
    image = _texture(16)[0]
    out = augment(image, torch.Generator().manual_seed(0), color_jitter=0.3)
    assert out.shape == image.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert torch.equal(augment(image, torch.Generator().manual_seed(0), flip=False, color_jitter=0.0), image)


def _tiny_dataset(**kwargs):
    config = DualPixelConfig(max_coc=6.0, num_layers=(2, 3))
    return SyntheticDualPixelDataset(
        "dead_leaves", resolution=32, length=4, seed=11, config=config, max_coc=6.0, **kwargs
    )


def test_synthetic_dataset_returns_float32_samples_in_range():
    sample = _tiny_dataset()[0]
    assert set(sample) == {"sharp", "blurred", "left", "right", "coc"}
    for key in ("sharp", "blurred", "left", "right"):
        assert sample[key].shape == (3, 32, 32) and sample[key].dtype == torch.float32
        assert 0 <= float(sample[key].min()) and float(sample[key].max()) <= 1
    assert sample["coc"].shape == (1, 32, 32) and float(sample["coc"].abs().max()) <= 6.0


def test_synthetic_dataset_is_deterministic_across_worker_counts():
    dataset = _tiny_dataset()
    serial = list(DataLoader(dataset, batch_size=2, num_workers=0))
    parallel = list(DataLoader(dataset, batch_size=2, num_workers=2))
    for a, b in zip(serial, parallel, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    assert not torch.equal(dataset[0]["sharp"], dataset[1]["sharp"])
    other_seed = SyntheticDualPixelDataset("dead_leaves", resolution=32, length=4, seed=12, max_coc=6.0)
    assert not torch.equal(dataset[0]["sharp"], other_seed[0]["sharp"])


def test_sharp_dataset_changes_crops_with_the_epoch():
    dataset = SharpImageDataset("skimage", resolution=32, length=2, seed=0)
    first = dataset[0]["sharp"]
    assert torch.equal(first, dataset[0]["sharp"])
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0]["sharp"])


def test_bad_arguments_raise_errors_that_quote_them():
    with pytest.raises(ValueError, match="1.5"):
        DualPixelConfig(coc_step=1.5)
    with pytest.raises(ValueError, match="8"):
        SharpImageDataset("text", resolution=8)
    with pytest.raises(ValueError, match=r"\(3, 32, 32\)"):
        DualPixelRenderer()(torch.rand(3, 32, 32), torch.Generator())
    assert math.isfinite(DualPixelConfig().max_coc)
