import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline, DefocusDeblurPipelineOutput


def tiny_pipeline(with_defocus_net=True):
    torch.manual_seed(0)
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    torch.nn.init.normal_(deblur.tail.weight, std=0.05)
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1)) if with_defocus_net else None
    if defocus is not None:
        torch.nn.init.normal_(defocus.tail.weight, std=0.5)
    pipe = DefocusDeblurPipeline(deblur_net=deblur.eval(), defocus_net=None if defocus is None else defocus.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture
def image():
    return np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)


def test_pipeline_equals_direct_model_call(pipe, image):
    out = pipe(image, output_type="pt")
    with torch.no_grad():
        direct = pipe.deblur_net(torch.from_numpy(image).permute(2, 0, 1)[None]).sample
    assert isinstance(out, DefocusDeblurPipelineOutput)
    torch.testing.assert_close(out.images, direct)


def test_output_types(pipe, image):
    pil = pipe(image).images
    assert isinstance(pil, list) and isinstance(pil[0], PIL.Image.Image) and pil[0].size == (56, 40)
    arr = pipe(image, output_type="np").images
    assert arr.shape == (1, 40, 56, 3) and arr.dtype == np.float32
    (tensor,) = pipe(image, output_type="pt", return_dict=False)
    assert tensor.shape == (1, 3, 40, 56)


def test_uint8_uint16_and_float_inputs_agree(pipe, image):
    as16 = np.round(image * 65535).astype(np.uint16)
    out16 = pipe(as16, output_type="np")
    outf = pipe(as16.astype(np.float32) / 65535, output_type="np")
    np.testing.assert_allclose(out16.images, outf.images, atol=1e-6)
    assert out16.bit_depths == [16]
    assert pipe(np.round(image * 255).astype(np.uint8), output_type="np").bit_depths == [8]


def test_batch_of_images(pipe, image):
    out = pipe([image, image[::-1].copy()], output_type="np")
    assert out.images.shape == (2, 40, 56, 3)
    np.testing.assert_allclose(out.images[0], pipe(image, output_type="np").images[0], atol=1e-6)


def test_grayscale_and_rgba_are_converted(pipe, image):
    gray = (image[..., 0] * 255).astype(np.uint8)
    rgba = np.concatenate([image, np.ones_like(image[..., :1])], axis=-1)
    assert pipe(gray, output_type="np").images.shape == (1, 40, 56, 3)
    assert pipe(rgba, output_type="np").images.shape == (1, 40, 56, 3)


def test_tiled_equals_untiled_when_the_image_fits_one_tile(pipe, image):
    whole = pipe(image, tile_size=None, output_type="pt").images
    tiled = pipe(image, tile_size=64, tile_overlap=16, output_type="pt").images
    assert torch.equal(whole, tiled)


def test_tiled_inference_covers_large_images_seamlessly():
    """A net that is exactly local (no global attention) gives the same result tiled and whole."""
    pipe = tiny_pipeline(with_defocus_net=False)
    pipe.deblur_net.eval()
    image = np.random.default_rng(1).random((150, 170, 3), dtype=np.float32)
    local = DefocusDeblurPipeline(
        deblur_net=DefocusDeblurNet(level_channels=(4, 4, 4, 4, 4), branch_depths=(0, 0, 0, 0))
    )
    local.set_progress_bar_config(disable=True)
    torch.nn.init.normal_(local.deblur_net.tail.weight, std=0.05)
    local.deblur_net.eval()
    whole = local(image, tile_size=None, output_type="pt").images
    tiled = local(image, tile_size=96, tile_overlap=32, output_type="pt").images
    assert tiled.shape == whole.shape
    # Tiles see reflected borders instead of context, so a thin seam differs slightly; the blend keeps it small.
    assert (tiled - whole).abs().mean() < 0.02


def test_estimate_defocus_map(pipe, image):
    right = np.roll(image, 1, axis=1)
    out = pipe.estimate_defocus_map(image, right, output_type="np")
    assert out.defocus_maps.shape == (1, 40, 56, 1)
    assert np.abs(out.defocus_maps).max() <= 25
    assert out.images.shape == (1, 40, 56, 3)
    pt = pipe.estimate_defocus_map(image, right, output_type="pt")
    assert pt.defocus_maps.shape == (1, 1, 40, 56)


def test_mismatched_dual_pixel_views_are_rejected(pipe, image):
    with pytest.raises(ValueError, match="left view"):
        pipe.estimate_defocus_map(image, image[:, :50])


def test_defocus_map_needs_a_defocus_net(image):
    with pytest.raises(ValueError, match="no `defocus_net`"):
        tiny_pipeline(with_defocus_net=False).estimate_defocus_map(image, image)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ("not an image", TypeError, "got str"),
        (np.full((20, 20, 3), 2.0, dtype=np.float32), ValueError, r"\[0, 1\]"),
        (np.zeros((20, 20, 5), dtype=np.uint8), ValueError, "C in 1, 3, 4"),
        (object(), TypeError, "object"),
    ],
)
def test_bad_inputs_raise_clear_errors(pipe, bad, error, match):
    with pytest.raises(error, match=match):
        pipe(bad)


def test_bad_call_options(pipe, image):
    with pytest.raises(ValueError, match="output_type"):
        pipe(image, output_type="latent")
    with pytest.raises(ValueError, match="tile_overlap"):
        pipe(image, tile_size=64, tile_overlap=40)


def test_save_load_round_trip(tmp_path, pipe, image):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["deblur_net"] == ["defocusgan_hf.models.deblur_net", "DefocusDeblurNet"]
    for sub in ("deblur_net", "defocus_net"):
        assert sorted(p.name for p in (tmp_path / sub).iterdir()) == [
            "config.json",
            "diffusion_pytorch_model.safetensors",
        ]
    loaded = DefocusDeblurPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(loaded(image, output_type="pt").images, pipe(image, output_type="pt").images)


def test_learned_blur_kernel_travels_with_the_pipeline(tmp_path):
    from defocusgan_hf.models import LearnableBlurKernel

    pipe = tiny_pipeline()
    kernel = LearnableBlurKernel(max_radius=4)
    with torch.no_grad():
        kernel.log_gain.normal_()
    pipe = DefocusDeblurPipeline(deblur_net=pipe.deblur_net, defocus_net=pipe.defocus_net, blur_kernel=kernel)
    pipe.save_pretrained(tmp_path)
    loaded = DefocusDeblurPipeline.from_pretrained(tmp_path)
    assert torch.equal(loaded.blur_kernel(), kernel())


def test_pipeline_without_defocus_net_round_trips(tmp_path, image):
    pipe = tiny_pipeline(with_defocus_net=False)
    pipe.save_pretrained(tmp_path)
    loaded = DefocusDeblurPipeline.from_pretrained(tmp_path)
    assert loaded.defocus_net is None


def _lay_out_hub_cache(hf_home, repo_id, folder):
    repo_dir = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("0" * 40)


def test_offline_hub_cache_loading_and_missing_repo(tmp_path, monkeypatch, pipe, image):
    import huggingface_hub.constants as hub_constants

    pipe.save_pretrained(tmp_path / "saved")
    hf_home = tmp_path / "hf_home"
    _lay_out_hub_cache(hf_home, "someone/defocusgan-test", tmp_path / "saved")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    loaded = DefocusDeblurPipeline.from_pretrained("someone/defocusgan-test", cache_dir=hf_home / "hub")
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(loaded(image, output_type="pt").images, pipe(image, output_type="pt").images)
    with pytest.raises(OSError, match="neither a pipeline folder"):
        DefocusDeblurPipeline.from_pretrained("someone/not-there", cache_dir=hf_home / "hub")


def test_missing_local_folder_gives_one_clear_error(tmp_path):
    with pytest.raises(OSError, match="neither a pipeline folder"):
        DefocusDeblurPipeline.from_pretrained(str(tmp_path / "no" / "such" / "folder"))


def test_rejects_wrong_component_types():
    with pytest.raises(TypeError, match="deblur_net"):
        DefocusDeblurPipeline(deblur_net=torch.nn.Identity())


def test_channels_last_pipeline_gives_the_same_result(image):
    default, fast = tiny_pipeline(), tiny_pipeline().enable_channels_last()
    assert fast.deblur_net.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.defocus_net is not None
    np.testing.assert_allclose(fast(image, output_type="np").images, default(image, output_type="np").images, atol=1e-5)
    left, right = image, np.roll(image, 1, axis=1)
    np.testing.assert_allclose(
        fast.estimate_defocus_map(left, right, output_type="np").defocus_maps,
        default.estimate_defocus_map(left, right, output_type="np").defocus_maps,
        atol=1e-4,
    )


def test_self_ensemble_is_flip_and_turn_equivariant_and_changes_the_result(pipe, image):
    """The x8 average makes the output follow a flip or a quarter turn of the input exactly, which the plain
    generator does not; on a non-square image, so a turn changes the shape the net sees."""

    def run(x, ensemble):
        return pipe(x, tile_size=None, output_type="np", self_ensemble=ensemble).images[0]

    restored = run(image, True)
    assert restored.shape == image.shape
    np.testing.assert_allclose(run(image[:, ::-1].copy(), True), restored[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(run(np.rot90(image).copy(), True), np.rot90(restored), atol=1e-5)
    plain = run(image, False)
    assert np.abs(run(image[:, ::-1].copy(), False) - plain[:, ::-1]).max() > 1e-3
    assert np.abs(restored - plain).max() > 1e-3


def test_self_ensemble_runs_tile_by_tile(pipe):
    large = np.random.default_rng(1).random((150, 110, 3), dtype=np.float32)
    tiled = pipe(large, tile_size=64, tile_overlap=16, output_type="np", self_ensemble=True).images[0]
    assert tiled.shape == large.shape and np.isfinite(tiled).all()


def test_bf16_autocast_keeps_the_image_in_float32_where_bf16_weights_do_not():
    """bf16 has 8 mantissa bits: bf16 *weights* cast the input image too, so even a net that changes nothing
    moves a bright gradient; autocast runs only the convolutions in bf16 and adds the residual to the float32
    image, so such a net returns the image exactly."""
    ramp = np.linspace(0.55, 0.95, 64, dtype=np.float32)
    gradient = np.repeat(np.repeat(ramp[None, :, None], 48, 0), 3, 2)

    def identity_pipeline():  # the tail zeroed: residual 0, output = input
        pipe = tiny_pipeline()
        torch.nn.init.zeros_(pipe.deblur_net.tail.weight)
        torch.nn.init.zeros_(pipe.deblur_net.tail.bias)
        return pipe

    autocast = identity_pipeline().enable_autocast(torch.bfloat16)
    assert autocast.deblur_net.dtype == torch.float32
    out = autocast(gradient, output_type="np").images[0]
    assert out.dtype == np.float32 and np.array_equal(out, gradient)
    weights = identity_pipeline()
    weights.deblur_net.to(torch.bfloat16)
    assert np.abs(weights(gradient, output_type="np").images[0] - gradient).max() > 0.25 / 255  # up to half a level
    # a net that does change the image: autocast close to float32, brightness kept
    reference = tiny_pipeline()(gradient, output_type="np").images
    fast = tiny_pipeline().enable_autocast(torch.bfloat16)(gradient, output_type="np").images
    assert np.abs(fast - reference).max() < 0.05 and abs(float((fast - reference).mean())) * 255 < 0.5
    views = np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)
    left, right = views, np.roll(views, 1, axis=1)
    maps = [
        pipe.estimate_defocus_map(left, right, output_type="np").defocus_maps
        for pipe in (tiny_pipeline().enable_autocast(torch.bfloat16), tiny_pipeline())
    ]
    assert maps[0].dtype == np.float32 and np.abs(maps[0] - maps[1]).mean() < 0.25  # px of CoC (|map| <= 25)
    assert np.array_equal(autocast.enable_autocast(None)(gradient, output_type="np").images[0], gradient)
    with pytest.raises(ValueError, match="dtype"):
        autocast.enable_autocast(torch.float64)


def test_cli_bfloat16_loads_float32_weights_under_autocast(tmp_path):
    from defocusgan_hf.cli.common import _load_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "tiny")
    pipe = _load_pipeline(str(tmp_path / "tiny"), "cpu", "bfloat16", quiet=True)
    assert pipe.deblur_net.dtype == torch.float32 and pipe._autocast_dtype == torch.bfloat16
    assert pipe.deblur_net.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert _load_pipeline(str(tmp_path / "tiny"), "cpu", "float32", quiet=True)._autocast_dtype is None
