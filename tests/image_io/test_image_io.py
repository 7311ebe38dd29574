"""Tests of defocusgan_hf.image_io: validated loading, conversions, 16-bit files, safe saving, defocus maps."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from defocusgan_hf.image_io import (
    ImageLoadError,
    LoadedImage,
    check_dual_pixel_pair,
    colorize_defocus_map,
    defocus_map_figure,
    load_defocus_map_png16,
    load_image,
    save_defocus_map_npy,
    save_defocus_map_png16,
    save_image,
    to_output,
    to_tensor,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def rgb8(rng):
    """A 20×30 (H×W) uint8 RGB image."""
    return rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.fixture
def srgb_icc():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A valid 16×16 PNG whose IHDR is patched to claim ``width × height`` (CRC fixed)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# --- loading -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_round_trip_is_exact(tmp_path, rng, suffix):
    values = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    path = save_image(values.astype(np.float32) / 65535, tmp_path / f"x{suffix}", bit_depth=16)
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.array.dtype == np.float32 and loaded.array.shape == (20, 30, 3)
    np.testing.assert_array_equal(np.round(loaded.array * 65535).astype(np.uint16), values)
    assert loaded.path == path


@pytest.mark.parametrize(("dtype", "suffix", "bit_depth"), [(np.uint8, ".jpg", 8), (np.uint16, ".png", 16)])
def test_pixels_stay_in_the_source_precision_and_array_is_their_float(tmp_path, rng, dtype, suffix, bit_depth):
    """``pixels`` keeps the decoded samples (1 or 2 bytes each), ``array`` is ``pixels / (2**bits - 1)`` in float32;
    ``save_image`` writes uint8 / uint16 samples of its bit depth as they are."""
    values = rng.integers(0, np.iinfo(dtype).max + 1, (20, 30, 3), dtype=dtype)
    loaded = load_image(save_image(values, tmp_path / f"x{suffix}", bit_depth=bit_depth))
    assert loaded.pixels.dtype == dtype and loaded.bit_depth == bit_depth
    np.testing.assert_array_equal(loaded.array, loaded.pixels.astype(np.float32) / np.iinfo(dtype).max)
    if suffix == ".png":
        np.testing.assert_array_equal(loaded.pixels, values)


@pytest.mark.parametrize("mode", ["RGB", "LA", "I;16"])
def test_pixels_read_band_by_band_equal_numpys_conversion(rng, mode):
    from defocusgan_hf.image_io.colour import _pil_to_numpy

    image = Image.fromarray(rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)).convert(mode)
    for band_pixels in (29 * 5, 1 << 22):  # bands of 5 rows; one band
        pixels = _pil_to_numpy(image, band_pixels)
        np.testing.assert_array_equal(pixels, np.asarray(image))
        assert pixels.flags.writeable


def test_save_image_converts_8_bit_samples_to_16_bits_exactly(tmp_path, rgb8):
    path = save_image(rgb8, tmp_path / "x.png", bit_depth=16)
    np.testing.assert_array_equal(load_image(path).pixels, rgb8.astype(np.uint16) * 257)


def test_8bit_png_round_trip_is_exact_and_8bit(tmp_path, rgb8):
    path = save_image(rgb8.astype(np.float32) / 255, tmp_path / "x.png")
    loaded = load_image(path)
    assert loaded.bit_depth == 8
    np.testing.assert_array_equal(np.round(loaded.array * 255).astype(np.uint8), rgb8)


def test_exif_orientation_6_swaps_the_shape_and_is_removed_from_exif(tmp_path, rgb8):
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb8).save(path, exif=exif_with_orientation(6))
    loaded = load_image(path)
    assert loaded.array.shape == (30, 20, 3)
    assert loaded.exif is not None
    exif = Image.Exif()
    exif.load(loaded.exif)
    assert 0x0112 not in exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_png_orientation_matches_pillow(tmp_path, rng, orientation):
    values = rng.integers(0, 65536, (12, 18, 3), dtype=np.uint16)
    path = save_image(values / 65535.0, tmp_path / "x.png", bit_depth=16, exif=exif_with_orientation(orientation))
    loaded = load_image(path, min_size=1)
    # Pillow reads this 48-bit PNG at 8 bits but applies the orientation itself: the reference.
    with Image.open(path) as image:
        reference = np.asarray(ImageOps.exif_transpose(image), dtype=np.float32) / 255
    assert loaded.bit_depth == 16 and loaded.array.shape == reference.shape
    np.testing.assert_allclose(loaded.array, reference, atol=1 / 255)


@pytest.mark.parametrize("orientation", [3, 6, 7])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_orientation_matches_pillow(tmp_path, rng, orientation, dtype):
    scale = np.iinfo(dtype).max
    values = rng.integers(0, scale + 1, (12, 18, 3) if dtype == np.uint8 else (12, 18), dtype=dtype)
    path = tmp_path / "x.tif"
    Image.fromarray(values).save(path, tiffinfo={274: orientation})
    loaded = load_image(path, min_size=1)
    # Pillow applies a TIFF's orientation while decoding (from bytes; from a path it can apply it twice).
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        image.load()
        reference = np.asarray(image).astype(np.float32) / scale
    reference = reference if reference.ndim == 3 else np.repeat(reference[..., None], 3, axis=2)
    assert loaded.bit_depth == (8 if dtype == np.uint8 else 16)
    assert loaded.array.shape == ((18, 12, 3) if orientation == 6 or orientation == 7 else (12, 18, 3))
    np.testing.assert_allclose(loaded.array, reference, atol=1e-7)


def test_grayscale_is_replicated(tmp_path, rgb8):
    path = tmp_path / "gray.png"
    Image.fromarray(rgb8[..., 0]).save(path)
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.array[..., 0], loaded.array[..., 2])
    np.testing.assert_allclose(loaded.array[..., 1], rgb8[..., 0] / 255, atol=1e-6)
    assert any("grayscale" in note for note in loaded.notes)


def test_16bit_grayscale_png_keeps_16_bits(tmp_path, rng):
    values = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    path = tmp_path / "gray16.png"
    cv2.imwrite(str(path), values)
    loaded = load_image(path)
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(np.round(loaded.array[..., 1] * 65535).astype(np.uint16), values)


def test_transparent_rgba_is_composited_over_white_with_a_warning(tmp_path, rgb8):
    rgba = np.dstack([rgb8, np.full(rgb8.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    with pytest.warns(UserWarning, match="composited over white"):
        loaded = load_image(path)
    np.testing.assert_allclose(loaded.array[0, 0], 1.0)
    np.testing.assert_allclose(loaded.array[1:], rgb8[1:] / 255, atol=1e-6)


def test_opaque_rgba_drops_alpha_silently(tmp_path, rgb8):
    path = tmp_path / "rgba.png"
    Image.fromarray(rgb8).convert("RGBA").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_image(path)
    np.testing.assert_allclose(loaded.array, rgb8 / 255, atol=1e-6)


def test_palette_and_cmyk_become_rgb(tmp_path, rgb8):
    palette = Image.fromarray(rgb8).convert("P")
    palette.save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png")
    np.testing.assert_allclose(loaded.array, np.asarray(palette.convert("RGB")) / 255, atol=1e-6)
    Image.fromarray(rgb8).convert("CMYK").save(tmp_path / "cmyk.jpg")
    with pytest.warns(UserWarning, match="CMYK"):
        cmyk = load_image(tmp_path / "cmyk.jpg")
    assert cmyk.array.shape == (20, 30, 3) and cmyk.icc_profile is None


def test_float32_tiff_that_pillow_cannot_open_is_read_by_opencv(tmp_path, rng):
    values = rng.random((20, 30, 3), dtype=np.float32)
    path = tmp_path / "float.tif"
    cv2.imwrite(str(path), values[..., ::-1])
    loaded = load_image(path)
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.array, values)
    cv2.imwrite(str(tmp_path / "hdr.tif"), (values * 4)[..., ::-1])
    with pytest.raises(ImageLoadError, match=r"must lie in \[0, 1\]"):
        load_image(tmp_path / "hdr.tif")


def test_bytes_file_objects_and_pil_images_are_accepted(tmp_path, rgb8):
    path = save_image(rgb8 / 255.0, tmp_path / "x.png")
    expected = load_image(path).array
    np.testing.assert_array_equal(load_image(path.read_bytes()).array, expected)
    with open(path, "rb") as file:
        np.testing.assert_array_equal(load_image(file).array, expected)
    np.testing.assert_array_equal(load_image(Image.open(path)).array, expected)


@pytest.mark.parametrize("cut", [0.5, 0.9])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_truncated_files_raise_a_clear_error(tmp_path, rgb8, cut, suffix):
    full = tmp_path / f"full{suffix}"
    Image.fromarray(np.kron(rgb8, np.ones((4, 4, 1), np.uint8))).save(full)
    data = full.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(path)


def test_truncated_16bit_png_raises(tmp_path, rng):
    path = save_image(rng.random((40, 40, 3), dtype=np.float32), tmp_path / "x.png", bit_depth=16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(path)


def test_non_images_missing_and_empty_files_raise(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, not an image\n")
    with pytest.raises(ImageLoadError, match="'.*notes.txt' is not an image Pillow or OpenCV can read"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(TypeError, match="int"):
        load_image(3)


@pytest.mark.parametrize("width,height", [(30000, 30000), (12000, 12000)])
def test_huge_header_is_refused_without_decoding(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_claimed_size(width, height))
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match=rf"{width * height / 1e6:.1f} megapixels.*the limit is 100.0 MP"):
        load_image(path)
    assert time.perf_counter() - start < 0.5


def test_max_pixels_and_min_size_are_enforced(tmp_path, rgb8):
    path = save_image(rgb8 / 255.0, tmp_path / "x.png")
    with pytest.raises(
        ImageLoadError, match=r"has 0.0 megapixels \(30×20 px\); the limit is 0.0 MP \(max_pixels=100\)"
    ):
        load_image(path, max_pixels=100)
    small = save_image(np.zeros((8, 8, 3), np.float32), tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match="is 8×8 px; at least 16×16 px is needed"):
        load_image(small)
    assert load_image(small, min_size=8).size == (8, 8)


# --- conversions -------------------------------------------------------------------------------------------------


def test_to_tensor_scales_dtypes_and_reports_bit_depths(rgb8):
    tensor, depths = to_tensor([rgb8, rgb8.astype(np.uint16) * 257, rgb8 / 255.0])
    assert tensor.shape == (3, 3, 20, 30) and tensor.dtype == torch.float32 and depths == [8, 16, 16]
    torch.testing.assert_close(tensor[0], tensor[1])
    torch.testing.assert_close(tensor[0], tensor[2])
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0


def test_to_tensor_handles_gray_alpha_and_torch_layouts(rgb8):
    gray, _ = to_tensor(rgb8[..., 0])
    torch.testing.assert_close(gray[:, 0], gray[:, 2])
    rgba = np.dstack([rgb8, np.zeros(rgb8.shape[:2], np.uint8)])
    with pytest.warns(UserWarning, match="white"):
        white, _ = to_tensor(rgba)
    torch.testing.assert_close(white, torch.ones_like(white))
    batch, depths = to_tensor(torch.rand(2, 1, 16, 17))
    assert batch.shape == (2, 3, 16, 17) and depths == [16, 16]
    from_uint8, depths = to_tensor(torch.from_numpy(rgb8).permute(2, 0, 1))
    assert depths == [8]
    torch.testing.assert_close(from_uint8, to_tensor(rgb8)[0])
    loaded = LoadedImage(rgb8 / np.float32(255), bit_depth=16)
    assert to_tensor(loaded)[1] == [16]


def test_to_tensor_errors_name_the_problem(rgb8):
    with pytest.raises(ValueError, match=r"\[-0.5, 2\]"):
        to_tensor(np.array([[-0.5, 2.0]] * 4, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        to_tensor(torch.full((3, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="30×20, 10×20"):
        to_tensor([rgb8, rgb8[:, :10]])
    with pytest.raises(TypeError, match="str"):
        to_tensor("image.png")
    with pytest.raises(TypeError, match="int64"):
        to_tensor(rgb8.astype(np.int64))
    with pytest.raises(ValueError, match=r"\(2, 5, 4, 4\)"):
        to_tensor(torch.rand(2, 5, 4, 4))


def test_to_output_types(rgb8):
    tensor, _ = to_tensor(rgb8)
    array = to_output(tensor, "np")
    assert array.shape == (1, 20, 30, 3) and array.dtype == np.float32
    (pil,) = to_output(tensor, "pil")
    assert pil.mode == "RGB" and pil.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(pil), rgb8)
    assert to_output(tensor, "pt") is not None
    with pytest.raises(ValueError, match="'jpg'"):
        to_output(tensor, "jpg")
    with pytest.raises(ValueError, match="bit_depths"):
        to_output(tensor, "np", bit_depths=[8, 8])


# --- saving ------------------------------------------------------------------------------------------------------


def test_save_image_never_overwrites_unless_asked(tmp_path, rgb8):
    path = tmp_path / "x.png"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists"):
        save_image(rgb8 / 255.0, path)
    assert path.read_bytes() == b"precious"
    path.chmod(0o640)
    save_image(rgb8 / 255.0, path, overwrite=True)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb8)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept


def test_overwritten_new_file_gets_the_usual_mode(tmp_path, rgb8):
    previous = os.umask(0o022)
    try:
        save_image(rgb8 / 255.0, tmp_path / "new.png", overwrite=True)
        save_image(rgb8 / 255.0, tmp_path / "plain.png")
    finally:
        os.umask(previous)
    assert (tmp_path / "new.png").stat().st_mode & 0o777 == (tmp_path / "plain.png").stat().st_mode & 0o777 == 0o644


def test_save_image_rejects_16bit_jpeg_and_unknown_extensions(tmp_path, rgb8):
    with pytest.raises(ValueError, match="16-bit output needs"):
        save_image(rgb8 / 255.0, tmp_path / "x.jpg", bit_depth=16)
    with pytest.raises(ValueError, match="'.gif'"):
        save_image(rgb8 / 255.0, tmp_path / "x.gif")


@pytest.mark.parametrize("suffix,bit_depth", [(".jpg", 8), (".png", 8), (".png", 16), (".webp", 8)])
def test_icc_profile_is_carried_from_load_to_save(tmp_path, rgb8, srgb_icc, suffix, bit_depth):
    source = tmp_path / f"in{suffix}"
    Image.fromarray(rgb8).save(source, icc_profile=srgb_icc)
    loaded = load_image(source)
    assert loaded.icc_profile == srgb_icc
    out = save_image(loaded.array, tmp_path / f"out{suffix}", bit_depth=bit_depth, icc_profile=loaded.icc_profile)
    assert load_image(out).icc_profile == srgb_icc
    with Image.open(out) as image:
        assert image.info.get("icc_profile") == srgb_icc


# --- dual-pixel pairs --------------------------------------------------------------------------------------------


def test_dual_pixel_pair_sizes_must_match(rng):
    left, right = rng.random((480, 640, 3)), rng.random((480, 642, 3))
    with pytest.raises(ValueError, match="left view is 640×480 but right view is 642×480"):
        check_dual_pixel_pair(left, right)
    check_dual_pixel_pair(left, rng.random((480, 640, 3)))
    with pytest.warns(UserWarning, match="identical"):
        check_dual_pixel_pair(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="2 left views but 1 right"):
        check_dual_pixel_pair([left, left], [right])


# --- defocus maps ------------------------------------------------------------------------------------------------


def test_defocus_map_png16_round_trip(tmp_path, rng):
    coc = rng.uniform(-25, 25, (20, 30)).astype(np.float32)
    path = save_defocus_map_png16(coc, tmp_path / "map.png")
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
    back = load_defocus_map_png16(path)
    assert back.shape == (20, 30) and back.dtype == np.float32
    np.testing.assert_allclose(back, coc, atol=25 / 65535 + 1e-6)
    with pytest.raises(ValueError, match="max_coc=25.0"):
        load_defocus_map_png16(path, max_coc=10.0)
    with pytest.raises(FileExistsError):
        save_defocus_map_png16(coc, path)


def test_unsigned_defocus_map_stores_magnitude(tmp_path):
    coc = np.array([[-5.0, 0.0, 5.0, 40.0]] * 2, dtype=np.float32)
    path = save_defocus_map_png16(coc[..., None], tmp_path / "abs.png", max_coc=10.0, signed=False)
    np.testing.assert_allclose(load_defocus_map_png16(path), [[5.0, 0.0, 5.0, 10.0]] * 2, atol=1e-3)


def test_defocus_map_npy_round_trip(tmp_path, rng):
    coc = rng.normal(size=(1, 1, 6, 7)).astype(np.float32)
    path = save_defocus_map_npy(torch.from_numpy(coc), tmp_path / "map.npy")
    np.testing.assert_array_equal(np.load(path), coc[0, 0])


def test_colorized_map_shows_sign_and_focus():
    coc = np.array([[-25.0, 0.0, 25.0]], dtype=np.float32)
    colours = colorize_defocus_map(coc).astype(int)
    assert colours.shape == (1, 3, 3) and colours.dtype == np.int64
    near, focus, far = colours[0]
    assert near[2] > near[0] and far[0] > far[2]  # near is blue, far is red
    assert focus.min() > 230  # in focus is nearly white
    magnitude = colorize_defocus_map(coc, signed=False)
    np.testing.assert_array_equal(magnitude[0, 0], magnitude[0, 2])  # |coc| ignores the sign
    with pytest.raises(ValueError, match="max_coc"):
        colorize_defocus_map(coc, max_coc=0)


def test_defocus_map_figure_is_an_rgb_image(rng):
    figure = defocus_map_figure(rng.uniform(-10, 10, (30, 40)), width_px=320)
    assert figure.mode == "RGB" and figure.size[0] == 320
    assert len(np.unique(np.asarray(figure).reshape(-1, 3), axis=0)) > 20  # a picture, not a blank canvas
