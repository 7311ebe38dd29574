"""Decoding and validation: :func:`load_image` reads a path, bytes, a file object or a PIL image and checks it.

Conventions: images are float32 in [0, 1], arrays ``(H, W, 3)``, tensors ``(B, 3, H, W)``; defocus (CoC) maps are
signed radii in pixels (``coc > 0`` far, ``coc < 0`` near). Sizes in messages are written width×height.

Everything a user hands in is checked and gets an :class:`ImageLoadError` (a ``ValueError``) with a sentence
naming the file, never a traceback from a decoder; nothing is ever written over an existing file unless asked.

Decoders: Pillow detects the format, reads the header (size, EXIF orientation, ICC profile) and decodes 8-bit
images. Pillow reduces 48/64-bit PNGs and 16-bit RGB TIFFs to 8 bits, so those (and float TIFFs, which Pillow
cannot open) are decoded by OpenCV, after the size check on the header.

Colour conversions (each one is recorded in ``LoadedImage.notes``):
- grayscale (1-, 8- or 16-bit) -> the gray value replicated to R, G and B;
- palette -> RGB (RGBA when the palette has transparency);
- alpha (RGBA, LA, palette with transparency) -> composited over **white**, the way most viewers show it; a
  ``UserWarning`` is issued when the alpha is not fully opaque (a fully opaque alpha is simply dropped);
- CMYK -> sRGB through the embedded ICC profile when there is one (Pillow's naive formula otherwise);
- ICC profiles that do not describe RGB data (gray, CMYK) are dropped, since the output is RGB.


"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin, UnidentifiedImageError

from .colour import _apply_orientation, _cv2_to_rgb, _pil_to_rgb, _rgb_icc_or_none, _warn
from .types import (
    _ICC_TIFF_TAG,
    _ORIENTATION_TAG,
    _SIGNATURES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIZE,
    SUPPORTED_FORMATS,
    ImageLoadError,
    LoadedImage,
)


def load_image(
    source: str | os.PathLike | bytes | BinaryIO | Image.Image | LoadedImage,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> LoadedImage:
    """Read an image from a path, bytes, a binary file object or a PIL image, and validate it.

    The pixel count is checked on the header, before anything is decoded. ``max_pixels=None`` lifts this
    function's limit (Pillow's own decompression-bomb limit, ``2 * PIL.Image.MAX_IMAGE_PIXELS``, still applies).
    Raises :class:`ImageLoadError` for missing, non-image, truncated, too large or too small inputs.
    """
    if isinstance(source, LoadedImage):
        _check_min_size("the image", *source.size, min_size)
        return source
    if isinstance(source, Image.Image):
        return _load_pil(source, "the image", None, None, max_pixels, min_size)
    name, path, data = _resolve_source(source)
    try:
        with warnings.catch_warnings():
            # This function applies its own `max_pixels`; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path if data is None else io.BytesIO(data))
    except Image.DecompressionBombError as err:
        match = re.search(r"\((\d+) pixels\)", str(err))
        pixels = int(match.group(1)) if match else None
        if pixels is not None and max_pixels is not None and pixels > max_pixels:
            raise ImageLoadError(_too_many_pixels_message(name, pixels, None, max_pixels)) from err
        raise ImageLoadError(
            f"{name} is larger than Pillow's decompression-bomb limit ({err}); raise PIL.Image.MAX_IMAGE_PIXELS "
            "to read it"
        ) from err
    except UnidentifiedImageError:
        return _load_unidentified(name, path, data, max_pixels, min_size)
    except OSError as err:
        raise ImageLoadError(f"{name} cannot be read: {err}") from err
    with image:
        return _load_pil(image, name, path, data, max_pixels, min_size)


def _resolve_source(source: Any) -> tuple[str, Path | None, bytes | None]:
    """Return ``(name for messages, path, bytes)``; exactly one of path and bytes is set."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = f"'{source}'"
        if not path.exists():
            raise ImageLoadError(f"{name} does not exist")
        if path.is_dir():
            raise ImageLoadError(f"{name} is a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{name} is an empty file")
        return name, path, None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the image data"
    elif hasattr(source, "read"):
        file_name = getattr(source, "name", None)
        name = f"'{file_name}'" if isinstance(file_name, str) else "the uploaded file"
        data = source.read()
        if not isinstance(data, bytes):
            raise TypeError(f"{name} must be opened in binary mode ('rb'), got {type(data).__name__} from read()")
    else:
        raise TypeError(
            "an image must be a path, bytes, a binary file object, a PIL image or a LoadedImage, "
            f"got {type(source).__name__}"
        )
    if not data:
        raise ImageLoadError(f"{name} is empty")
    return name, None, data


def _load_pil(
    image: Image.Image, name: str, path: Path | None, data: bytes | None, max_pixels: int | None, min_size: int
) -> LoadedImage:
    width, height = image.size  # from the header: nothing is decoded yet
    _check_pixels(name, width, height, max_pixels)
    bit_depth = _stored_bit_depth(image)  # first: reading the EXIF of a PNG may decode it and drop this information
    notes: list[str] = []
    if getattr(image, "n_frames", 1) > 1:
        _warn(notes, f"{name} has {image.n_frames} frames or pages; only the first is used")
    icc_profile = image.info.get("icc_profile") or None
    array = None
    if bit_depth > 8 and image.format in ("PNG", "TIFF") and (data is not None or path is not None):
        orientation = _orientation(image)
        decoded = _cv2_decode(data if data is not None else path.read_bytes(), image.format, orientation)
        if decoded is not None:
            array, bit_depth = _cv2_to_rgb(decoded, name, notes)
            array = _apply_orientation(array, orientation)
        else:
            notes.append(f"OpenCV could not decode the {bit_depth}-bit data of {name}; it was read at 8 bits")
            bit_depth = 8
    if array is None:
        try:
            image.load()
            # exif_transpose copies an image it leaves as it is: 96 MB more for a 24 MP photo
            turned = image.getexif().get(_ORIENTATION_TAG, 1) in range(2, 9)
            upright = ImageOps.exif_transpose(image) if turned else image
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as err:
            raise ImageLoadError(f"{name} is truncated or corrupt ({err})") from err
        array, icc_profile = _pil_to_rgb(upright, name, icc_profile, notes)
        if upright.mode.startswith("I;16") or upright.mode in ("I", "F"):
            bit_depth = 16
        elif bit_depth > 8:  # a PIL image of a 16-bit file: Pillow decoded 8 bits, and only those are here
            _warn(notes, f"Pillow decoded {name} at 8 bits although the file holds 16; pass the file path to keep 16")
            bit_depth = 8
    exif = _exif_without_orientation(image)
    icc_profile = _rgb_icc_or_none(icc_profile, name, notes)
    _check_min_size(name, array.shape[1], array.shape[0], min_size)
    return LoadedImage(array, bit_depth, icc_profile, exif, path, notes)


def _load_unidentified(
    name: str, path: Path | None, data: bytes | None, max_pixels: int | None, min_size: int
) -> LoadedImage:
    """Files Pillow cannot identify: multi-channel float TIFFs go to OpenCV, anything else is an error."""
    raw = data if data is not None else path.read_bytes()
    kind = next((kind for signature, kind in _SIGNATURES if raw.startswith(signature)), None)
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        kind = "WebP"
    if kind != "TIFF":
        if kind is not None:
            raise ImageLoadError(f"{name} is truncated or corrupt (it starts like a {kind} file but cannot be read)")
        raise ImageLoadError(
            f"{name} is not an image Pillow or OpenCV can read (supported: {', '.join(SUPPORTED_FORMATS)})"
        )
    try:
        tags = _tiff_first_ifd(raw)
        width, height = int(tags[256]), int(tags[257])
    except Exception as err:  # any parse failure of a damaged header means the same thing to the user
        raise ImageLoadError(f"{name} is truncated or corrupt (its TIFF header cannot be read)") from err
    _check_pixels(name, width, height, max_pixels)
    orientation = int(tags.get(274, 1))
    decoded = _cv2_decode(raw, "TIFF", orientation)
    if decoded is None:
        raise ImageLoadError(f"{name} is truncated or corrupt (neither Pillow nor OpenCV can decode this TIFF)")
    notes: list[str] = []
    array, bit_depth = _cv2_to_rgb(decoded, name, notes)
    array = _apply_orientation(array, orientation)
    icc_profile = _rgb_icc_or_none(tags.get(_ICC_TIFF_TAG) or None, name, notes)
    _check_min_size(name, array.shape[1], array.shape[0], min_size)
    return LoadedImage(array, bit_depth, icc_profile, None, path, notes)


def _tiff_first_ifd(raw: bytes) -> dict[int, Any]:
    header = TiffImagePlugin.ImageFileDirectory_v2(ifh=raw[:16] if raw[2:4] in (b"+\x00", b"\x00+") else raw[:8])
    ifd_file = io.BytesIO(raw)
    ifd_file.seek(header.next)
    header.load(ifd_file)
    return dict(header)


def _check_pixels(name: str, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(_too_many_pixels_message(name, width * height, (width, height), max_pixels))


def _too_many_pixels_message(name: str, pixels: int, size: tuple[int, int] | None, max_pixels: int) -> str:
    dims = f" ({size[0]}×{size[1]} px)" if size else ""
    return (
        f"{name} has {pixels / 1e6:.1f} megapixels{dims}; the limit is {max_pixels / 1e6:.1f} MP "
        f"(max_pixels={max_pixels})"
    )


def _check_min_size(name: str, width: int, height: int, min_size: int) -> None:
    if min(width, height) < min_size:
        raise ImageLoadError(f"{name} is {width}×{height} px; at least {min_size}×{min_size} px is needed")


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8 from the header; for PNGs only an eXIf chunk before the pixel data counts (Pillow's
    ``getexif`` would decode the whole image to look for one after it)."""
    try:
        if image.format == "PNG":
            exif = Image.Exif()
            exif.load(image.info.get("exif", b""))
        else:
            exif = image.getexif()
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block must not stop the image from loading; the pixels are fine
        return 1
    return value if 1 <= value <= 8 else 1


def _exif_without_orientation(image: Image.Image) -> bytes | None:
    """The image's EXIF block (JPEG/PNG/WebP ``info["exif"]``) with the orientation removed, or None.

    TIFF tags are not EXIF blocks (they hold strip offsets etc.) and are not carried.
    """
    raw = image.info.get("exif")
    if not raw:
        return None
    try:
        exif = Image.Exif()
        exif.load(raw)
        exif.pop(_ORIENTATION_TAG, None)
        return exif.tobytes()
    except Exception:  # an unreadable EXIF block is dropped rather than copied into outputs
        return None


def _stored_bit_depth(image: Image.Image) -> int:
    """Bits per channel in the file (8 or 16), read from the mode, TIFF tags or the PNG decoder's raw mode."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return 16
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 if max(bits) > 8 else 8
    for tile in getattr(image, "tile", None) or ():  # only images read from a file (ImageFile) have tiles
        rawmode = tile.args if isinstance(tile.args, str) else (tile.args[0] if tile.args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return 16
    return 8


def _cv2_decode(raw: bytes, file_format: str, orientation: int) -> np.ndarray | None:
    if file_format == "TIFF" and orientation != 1:
        raw = _tiff_with_orientation_reset(raw)
    try:
        decoded = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    return decoded if decoded is not None and decoded.size else None


def _tiff_with_orientation_reset(raw: bytes) -> bytes:
    """A copy of a TIFF file whose first-IFD Orientation tag is set to 1 (top-left).

    Hand-rolled because OpenCV's TIFF decoder applies the orientation itself (its PNG decoder does not) and has
    no flag to turn that off; resetting the tag in memory lets this module apply it the same way for every file.
    """
    endian = {b"II": "<", b"MM": ">"}.get(raw[:2])
    if endian is None:
        return raw
    try:
        big = struct.unpack_from(endian + "H", raw, 2)[0] == 43
        offset = struct.unpack_from(endian + ("Q" if big else "I"), raw, 8 if big else 4)[0]
        count = struct.unpack_from(endian + ("Q" if big else "H"), raw, offset)[0]
        first, entry_size = offset + (8 if big else 2), (20 if big else 12)
        for index in range(count):
            entry = first + index * entry_size
            tag, value_type = struct.unpack_from(endian + "HH", raw, entry)
            if tag == 274 and value_type == 3:  # SHORT, stored inline after the count
                patched = bytearray(raw)
                struct.pack_into(endian + "H", patched, entry + (12 if big else 8), 1)
                return bytes(patched)
    except struct.error:
        pass
    return raw
