"""The flat-memory tiled path: one image kept in its own 8 or 16 bits, converted to float a tile at a time and written
back into a uint8/uint16 output, gives what the float32 tensor path (a batch of one) gives, without the float
copies."""

import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image
from test_pipeline import tiny_pipeline

from defocusgan_hf.image_io import load_image, save_image
from defocusgan_hf.image_io.conversion import to_pixels
from defocusgan_hf.models import DefocusDeblurNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline
from defocusgan_hf.pipelines.tiling import tiled_apply, tiled_apply_array

# (height, width, tile, overlap): several tiles with overlap, last tiles close to their neighbours (3 tiles share
# rows and columns), one tile row, and an image that fits one tile
TILINGS = [(150, 190, 64, 16), (100, 120, 48, 20), (120, 130, 64, 16), (40, 200, 64, 16), (40, 56, 64, 16)]


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(with_defocus_net=False)


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), TILINGS)
def test_uint8_image_gives_the_tensor_path_result_bit_for_bit(pipe, height, width, tile, overlap):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor_path = pipe(image[None], tile_size=tile, tile_overlap=overlap, output_type="np").images[0]
    expected = np.round(tensor_path * 255).astype(np.uint8)
    flat = pipe(image, tile_size=tile, tile_overlap=overlap, output_type="np", output_bit_depth=8).images
    assert flat.dtype == np.uint8 and flat.shape == (1, height, width, 3)
    np.testing.assert_array_equal(flat[0], expected)
    as_float = pipe(image, tile_size=tile, tile_overlap=overlap, output_type="np").images[0]
    np.testing.assert_array_equal(as_float, tensor_path)
    pil = pipe(Image.fromarray(image), tile_size=tile, tile_overlap=overlap).images[0]
    np.testing.assert_array_equal(np.asarray(pil), expected)


def test_tiled_apply_array_matches_tiled_apply_for_another_net():
    """Any local function, blended: the band sums equal the full-size sums (3 output channels from 3 inputs)."""
    image = np.random.default_rng(1).random((130, 170, 3), dtype=np.float32)

    def net(x):
        return torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2) ** 2

    full = tiled_apply(net, (torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(),), 3, 48, 12)
    out = tiled_apply_array(net, image, np.empty_like(image), 48, 12)
    np.testing.assert_array_equal(out, full[0].clamp(0, 1).permute(1, 2, 0).numpy())


def test_16_bit_input_round_trips_at_16_bits(tmp_path):
    """An identity net (the untrained generator) tiled with overlap gives back every 16-bit value, through the file."""
    torch.manual_seed(0)
    identity = DefocusDeblurPipeline(DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1)))
    identity.set_progress_bar_config(disable=True)
    values = np.random.default_rng(2).integers(0, 65536, (90, 110, 3), dtype=np.uint16)
    save_image(values, tmp_path / "in.png", bit_depth=16)
    loaded = load_image(tmp_path / "in.png")
    assert loaded.pixels.dtype == np.uint16 and loaded.bit_depth == 16
    out = identity(loaded, tile_size=48, tile_overlap=16, output_type="np", output_bit_depth=16)
    assert out.images.dtype == np.uint16 and out.bit_depths == [16]
    np.testing.assert_array_equal(out.images[0], values)
    save_image(out.images[0], tmp_path / "out.png", bit_depth=16)
    np.testing.assert_array_equal(load_image(tmp_path / "out.png").pixels, values)


def test_no_full_size_float_copy_of_the_image_is_made(pipe):
    """NumPy's peak allocation during a tiled uint8 -> uint8 call, the output included, stays below one float32 copy
    of the image (4 bytes per sample): only the output (1 byte) and band-sized temporaries are allocated."""
    image = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        pipe(image, tile_size=64, tile_overlap=16, output_type="np", output_bit_depth=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * image.size, f"peak {peak / 1e6:.1f} MB for a {image.nbytes / 1e6:.1f} MB uint8 image"


def test_to_pixels_keeps_the_dtype_and_matches_the_float_conversion():
    rng = np.random.default_rng(4)
    rgb8, gray16 = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    pixels, depth = to_pixels(rgb8)
    assert pixels is rgb8 and depth == 8
    pixels, depth = to_pixels([gray16])
    assert pixels.dtype == np.uint16 and pixels.shape == (20, 30, 3) and depth == 16
    np.testing.assert_array_equal(pixels[..., 2], gray16)
    with pytest.raises(TypeError, match="to_tensor"):
        to_pixels(torch.zeros(3, 20, 30))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_pixels(np.full((20, 30, 3), 2.0, dtype=np.float32))


def test_output_bit_depth_is_checked_and_works_on_batches(pipe):
    image = np.random.default_rng(5).random((2, 40, 56, 3), dtype=np.float32)
    batch = pipe(image, tile_size=None, output_type="np", output_bit_depth=16).images
    assert batch.dtype == np.uint16 and batch.shape == (2, 40, 56, 3)
    with pytest.raises(ValueError, match="output_bit_depth"):
        pipe(image[0], output_type="pil", output_bit_depth=8)
    with pytest.raises(ValueError, match="output_bit_depth"):
        pipe(image[0], output_type="np", output_bit_depth=12)
