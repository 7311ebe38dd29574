"""Image input/output: validated loading, PIL / NumPy / torch conversions, 16-bit files, safe saving, defocus maps.

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
import math
import os
import re
import struct
import tempfile
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 100_000_000
"""Default `max_pixels`: 100 MP covers every current camera; a 100 MP image takes 1.2 GB as float32 RGB."""
DEFAULT_MIN_SIZE = 16
"""Default `min_size`: the shorter side of an image must have at least this many pixels."""
SUPPORTED_FORMATS = ("JPEG", "PNG", "TIFF", "WebP", "BMP")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
HIGH_BIT_DEPTH_SUFFIXES = (".png", ".tif", ".tiff")
DEFAULT_MAX_COC = 25.0
"""Default largest CoC radius (px) of maps: the paper's kernel bank covers radii 0..25."""

_ORIENTATION_TAG = 0x0112
_ICC_TIFF_TAG = 34675
_PIL_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
    (b"GIF8", "GIF"),
)
_MAP_MAX_COC_KEY = "defocusgan:max_coc"
_MAP_ENCODING_KEY = "defocusgan:encoding"
_FLOAT_TOLERANCE = 1e-4  # float inputs may stray this far outside [0, 1] (rounding) and are then clamped


class ImageLoadError(ValueError):
    """A file or object given as an image cannot be used; the message says which one and why."""


@dataclass
class LoadedImage:
    """An image read by :func:`load_image`.

    Args:
        array: ``(H, W, 3)`` float32 RGB in [0, 1], EXIF orientation already applied.
        bit_depth: bits per channel of the source (8 or 16; float TIFFs count as 16).
        icc_profile: the embedded ICC profile (RGB profiles only), or None.
        exif: the EXIF block with the orientation tag removed (the pixels are upright), or None.
        path: the file it came from, or None.
        notes: conversions that were made (grayscale replicated, alpha composited, ...).
    """

    array: np.ndarray
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, like ``PIL.Image.size``."""
        return self.array.shape[1], self.array.shape[0]


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------


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
            upright = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as err:
            raise ImageLoadError(f"{name} is truncated or corrupt ({err})") from err
        array, icc_profile = _pil_to_rgb(upright, name, icc_profile, notes)
        if upright.mode.startswith("I;16") or upright.mode in ("I", "F"):
            bit_depth = 16
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


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=4)


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
    for tile in image.tile:
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


def _cv2_to_rgb(decoded: np.ndarray, name: str, notes: list[str]) -> tuple[np.ndarray, int]:
    """OpenCV's ``(H, W[, C])`` BGR(A) uint8/uint16/float array -> ``(H, W, 3)`` RGB float32 and bit depth."""
    values, bit_depth = _scale_to_unit(decoded, name)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        values = values[..., [2, 1, 0, 3][: values.shape[2]]]  # BGR(A) -> RGB(A)
    return _channels_to_rgb(values, name, notes), bit_depth


def _scale_to_unit(values: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """uint8 / uint16 / float in [0, 1] -> float32 in [0, 1] and the bit depth (8, or 16 for uint16 and float)."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255.0, 8
    if values.dtype == np.uint16:
        return values.astype(np.float32) / 65535.0, 16
    if np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageLoadError(f"{name} contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
            raise ImageLoadError(f"{name} has float values in [{low:.4g}, {high:.4g}]; they must lie in [0, 1]")
        return np.clip(values, 0.0, 1.0), 16
    raise ImageLoadError(f"{name} has {values.dtype} samples; only 8-bit, 16-bit and float images are supported")


def _channels_to_rgb(values: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` float in [0, 1], C in {1, 2, 3, 4} (gray, gray+alpha, RGB, RGBA) -> ``(H, W, 3)``."""
    if values.ndim == 2:
        values = values[..., None]
    channels = values.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageLoadError(f"{name} has {channels} channels; expected 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)")
    if channels in (2, 4):
        values = _flatten_alpha(values[..., :-1], values[..., -1:], name, notes)
    if values.shape[2] == 1:
        notes.append(f"{name} is grayscale; the gray value was copied to R, G and B")
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(values, dtype=np.float32)


def _flatten_alpha(color: np.ndarray, alpha: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """Composite over white (what viewers show); a fully opaque alpha is just dropped."""
    if alpha.min() >= 1.0:
        notes.append(f"{name} has a fully opaque alpha channel; it was dropped")
        return color
    _warn(notes, f"{name} has transparent pixels; they were composited over white")
    return color * alpha + (1.0 - alpha)


def _pil_to_rgb(
    image: Image.Image, name: str, icc_profile: bytes | None, notes: list[str]
) -> tuple[np.ndarray, bytes | None]:
    """A decoded PIL image of any mode -> ``(H, W, 3)`` float32 RGB in [0, 1], and the ICC profile to keep."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.float32) / 255.0, icc_profile
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float32)
        if values.min() < 0 or values.max() > 65535:
            raise ImageLoadError(f"{name} has 32-bit integer samples outside 0..65535")
        return _channels_to_rgb(values / 65535.0, name, notes), icc_profile
    if mode == "F":
        return _channels_to_rgb(_scale_to_unit(np.asarray(image), name)[0], name, notes), icc_profile
    if mode == "P":
        notes.append(f"{name} is a palette image; it was converted to RGB")
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "CMYK":
        return _cmyk_to_rgb(image, name, icc_profile, notes), None
    elif mode in ("1", "L"):
        image = image.convert("L")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA" if mode in ("PA", "RGBa") else "LA")
    elif mode != "RGBA":
        notes.append(f"{name} has Pillow mode {mode!r}; it was converted to RGB")
        image = image.convert("RGB")
    return _channels_to_rgb(np.asarray(image, dtype=np.float32) / 255.0, name, notes), icc_profile


def _cmyk_to_rgb(image: Image.Image, name: str, icc_profile: bytes | None, notes: list[str]) -> np.ndarray:
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            rgb = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            notes.append(f"{name} is CMYK; it was converted to sRGB with its ICC profile")
            return np.asarray(rgb, dtype=np.float32) / 255.0
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    _warn(notes, f"{name} is CMYK without a usable ICC profile; colours were converted with a generic formula")
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _rgb_icc_or_none(icc_profile: bytes | None, name: str, notes: list[str]) -> bytes | None:
    """Keep an ICC profile only if it describes RGB data: the loaded pixels are always RGB."""
    if not icc_profile:
        return None
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)).profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, AttributeError):
        notes.append(f"the ICC profile of {name} cannot be parsed; it was dropped")
        return None
    if space != "RGB":
        notes.append(f"the ICC profile of {name} describes {space} data, not RGB; it was dropped")
        return None
    return icc_profile


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an ``(H, W, C)`` array, as ``PIL.ImageOps.exif_transpose`` does."""
    transforms = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180°
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # rotated 90° clockwise to display
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transversed
        8: lambda a: np.rot90(a, 1),  # rotated 90° counter-clockwise to display
    }
    transform = transforms.get(orientation)
    return array if transform is None else np.ascontiguousarray(transform(array))


# ----------------------------------------------------------------------------------------------------------------
# Conversions between PIL / NumPy / torch
# ----------------------------------------------------------------------------------------------------------------


def to_tensor(images: Any, min_size: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Convert images to a ``(B, 3, H, W)`` float32 tensor in [0, 1] and the list of their bit depths.

    Accepted, alone or in a list (all the same size): a PIL image; a :class:`LoadedImage`; a NumPy array
    ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` with C in {1, 3, 4}, of uint8, uint16 or float in [0, 1];
    a torch tensor ``(C, H, W)`` or ``(B, C, H, W)`` with C in {1, 3}, uint8 or float in [0, 1]. Gray is
    replicated, alpha composited over white. Float inputs count as 16-bit. Tensors keep their device.
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise ValueError("no images were given (an empty list)")
    tensors, bit_depths = [], []
    for index, item in enumerate(items):
        name = "the image" if len(items) == 1 else f"image {index}"
        tensor, depth = _one_to_tensor(item, name)
        tensors.append(tensor)
        bit_depths.extend([depth] * tensor.shape[0])
    sizes = [(t.shape[-1], t.shape[-2]) for t in tensors]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"{w}×{h}" for w, h in sizes)
        raise ValueError(f"all images of a batch must have the same size, got {listed} (width×height)")
    if min_size is not None:
        _check_min_size("the image" if len(items) == 1 else "each image", *sizes[0], min_size)
    device = tensors[0].device
    batch = torch.cat([t.to(device) for t in tensors]) if len(tensors) > 1 else tensors[0]
    return batch.contiguous(), bit_depths


def _one_to_tensor(item: Any, name: str) -> tuple[torch.Tensor, int]:
    if isinstance(item, LoadedImage):
        return torch.from_numpy(np.ascontiguousarray(item.array, dtype=np.float32)).permute(2, 0, 1)[
            None
        ], item.bit_depth
    if isinstance(item, Image.Image):
        loaded = load_image(item, max_pixels=None, min_size=1)
        return _one_to_tensor(loaded, name)
    if isinstance(item, np.ndarray):
        return _array_to_tensor(item, name)
    if isinstance(item, torch.Tensor):
        return _torch_to_tensor(item, name)
    raise TypeError(
        f"{name} must be a PIL image, a NumPy array, a torch tensor or a LoadedImage, got {type(item).__name__}"
    )


def _array_to_tensor(array: np.ndarray, name: str) -> tuple[torch.Tensor, int]:
    if array.ndim == 4:
        parts = [_array_to_tensor(a, f"{name}[{i}]") for i, a in enumerate(array)]
        return torch.cat([p[0] for p in parts]), parts[0][1]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{name} must be an array (H, W), (H, W, C) or (B, H, W, C) with C in 1, 3, 4, got shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if array.dtype not in (np.uint8, np.uint16) and not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} has dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    try:
        values, depth = _scale_to_unit(array, name)
        rgb = _channels_to_rgb(values, name, [])
    except ImageLoadError as err:
        raise ValueError(str(err)) from None
    return torch.from_numpy(rgb).permute(2, 0, 1)[None], depth


def _torch_to_tensor(tensor: torch.Tensor, name: str) -> tuple[torch.Tensor, int]:
    shape = tuple(tensor.shape)
    if tensor.dim() == 3:
        tensor = tensor[None]
    if tensor.dim() != 4 or tensor.shape[1] not in (1, 3) or tensor.numel() == 0:
        raise ValueError(f"{name} must be a tensor (3, H, W), (B, 3, H, W) or (B, 1, H, W), got shape {shape}")
    tensor = tensor.detach()
    if tensor.dtype == torch.uint8:
        tensor, depth = tensor.float() / 255.0, 8
    elif tensor.dtype == torch.uint16:
        tensor, depth = tensor.float() / 65535.0, 16
    elif tensor.is_floating_point():
        tensor, depth = tensor.float(), 16
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        low, high = tensor.min().item(), tensor.max().item()
        if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
            raise ValueError(f"{name} has values in [{low:.4g}, {high:.4g}]; float images must lie in [0, 1]")
        tensor = tensor.clamp(0.0, 1.0)
    else:
        raise TypeError(f"{name} has dtype {tensor.dtype}; use uint8 or float in [0, 1]")
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    return tensor, depth


def to_output(
    images: torch.Tensor, output_type: str = "pil", bit_depths: Sequence[int] | None = None
) -> list[Image.Image] | np.ndarray | torch.Tensor:
    """Convert a ``(B, 3, H, W)`` tensor in [0, 1] to ``output_type``.

    ``"pt"``: the tensor (clamped to [0, 1]); ``"np"``: float32 ``(B, H, W, 3)``; ``"pil"``: a list of 8-bit RGB
    PIL images (PIL has no 16-bit RGB mode: write 16-bit files with :func:`save_image` from the ``"np"`` output).
    ``bit_depths`` (one per image, as returned by :func:`to_tensor`) is only checked here; pass it on to
    :func:`save_image`.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"`images` must be a torch tensor (B, 3, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if bit_depths is not None:
        if len(bit_depths) != images.shape[0] or any(d not in (8, 16) for d in bit_depths):
            raise ValueError(
                f"`bit_depths` must hold 8 or 16 for each of the {images.shape[0]} images, got {bit_depths}"
            )
    images = images.detach().float().clamp(0.0, 1.0)
    if output_type == "pt":
        return images
    array = images.permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        return [Image.fromarray(_quantize(a, 8)) for a in array]
    raise ValueError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}")


def _quantize(array: np.ndarray, bit_depth: int) -> np.ndarray:
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    return np.round(np.clip(array, 0.0, 1.0) * scale).astype(dtype)


# ----------------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------------


def save_image(
    image: np.ndarray | Any,
    path: str | os.PathLike,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one image; returns the path. The format follows the extension (.png .jpg .jpeg .tif .tiff .webp .bmp).

    ``image``: ``(H, W, 3)`` float in [0, 1] (or anything :func:`to_tensor` takes, for one image).
    16-bit output (``bit_depth=16``) is for .png/.tif/.tiff and is written by OpenCV; the ICC profile and EXIF
    go into 16-bit PNGs too (not into 16-bit TIFFs: a warning says so). 8-bit output goes through Pillow
    (JPEG at quality 95 without chroma subsampling, WebP lossless). Refuses to replace an existing file unless
    ``overwrite=True``; an overwrite goes through a temporary file, so an existing file is never half-written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _PIL_FORMATS:
        raise ValueError(f"cannot save '{path}': unknown extension {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    if bit_depth not in (8, 16):
        raise ValueError(f"`bit_depth` must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and suffix not in HIGH_BIT_DEPTH_SUFFIXES:
        raise ValueError(f"16-bit output needs a .png, .tif or .tiff file, not {suffix!r} ('{path}')")
    array = _as_rgb_array(image)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' already exists; pass overwrite=True (--overwrite) to replace it")
    if bit_depth == 16:
        ok, encoded = cv2.imencode(suffix, _quantize(array, 16)[..., ::-1])
        if not ok:
            raise OSError(f"OpenCV could not encode '{path}'")
        data = encoded.tobytes()
        if suffix == ".png":
            data = _png_with_chunks(data, icc_profile=icc_profile, exif=exif)
        elif icc_profile or exif:
            warnings.warn(f"'{path}': 16-bit TIFFs are written without the ICC profile and EXIF", stacklevel=2)
    else:
        file_format = _PIL_FORMATS[suffix]
        options: dict[str, Any] = {}
        if icc_profile and file_format != "BMP":
            options["icc_profile"] = icc_profile
        if exif and file_format in ("JPEG", "PNG", "WEBP", "TIFF"):
            options["exif"] = exif
        if file_format == "JPEG":
            options.update(quality=95, subsampling=0)
        elif file_format == "WEBP":
            options.update(lossless=True)
        buffer = io.BytesIO()
        Image.fromarray(_quantize(array, 8)).save(buffer, format=file_format, **options)
        data = buffer.getvalue()
    _write_bytes(path, data, overwrite)
    return path


def _as_rgb_array(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32:
        if not np.isfinite(image).all():
            raise ValueError("the image to save contains NaN or infinite values")
        return image
    tensor, _ = to_tensor(image)
    if tensor.shape[0] != 1:
        raise ValueError(f"save_image writes one image, got a batch of {tensor.shape[0]}")
    return tensor[0].permute(1, 2, 0).cpu().numpy()


def _png_with_chunks(png: bytes, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """Insert iCCP / eXIf chunks after IHDR.

    Hand-rolled (a few lines of the PNG spec) because OpenCV writes 16-bit RGB PNGs but no ICC profile or EXIF,
    and Pillow writes ICC/EXIF but cannot hold 16-bit RGB.
    """
    chunks = []
    if icc_profile:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        chunks.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC
    parts = [png[:ihdr_end]]
    for chunk_type, body in chunks:
        parts.append(
            struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", zlib.crc32(chunk_type + body))
        )
    parts.append(png[ihdr_end:])
    return b"".join(parts)


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path``: exclusively (never replacing a file) or, with ``overwrite``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        try:
            with open(path, "xb") as file:
                file.write(data)
        except FileExistsError:
            raise FileExistsError(f"'{path}' already exists; pass overwrite=True (--overwrite) to replace it") from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        # mkstemp creates 0600 files: keep the replaced file's mode, or take the one a plain open() would give.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------------------------
# Dual-pixel pairs
# ----------------------------------------------------------------------------------------------------------------


def check_dual_pixel_pair(left: Any, right: Any) -> None:
    """Raise ``ValueError`` unless the left and right DP views have the same size (and batch size).

    Views may be PIL images, arrays ``(H, W[, C])`` / ``(B, H, W, C)``, tensors ``(C, H, W)`` / ``(B, C, H, W)``,
    LoadedImages, or lists of these. Warns when the two views are pixel-for-pixel identical (no disparity).
    """
    lefts = list(left) if isinstance(left, (list, tuple)) else [left]
    rights = list(right) if isinstance(right, (list, tuple)) else [right]
    if len(lefts) != len(rights):
        raise ValueError(f"got {len(lefts)} left views but {len(rights)} right views")
    for index, (a, b) in enumerate(zip(lefts, rights, strict=True)):
        (batch_a, width_a, height_a), (batch_b, width_b, height_b) = _batch_and_size(a), _batch_and_size(b)
        which = f" (pair {index})" if len(lefts) > 1 else ""
        if (width_a, height_a) != (width_b, height_b):
            raise ValueError(
                f"left view is {width_a}×{height_a} but right view is {width_b}×{height_b}{which}; "
                "the two dual-pixel views must have the same size"
            )
        if batch_a != batch_b:
            raise ValueError(f"left views hold a batch of {batch_a} but right views a batch of {batch_b}{which}")
        if _same_pixels(a, b):
            warnings.warn(
                f"the left and right views are identical{which}: a dual-pixel pair has a small disparity; "
                "was the same file given twice?",
                UserWarning,
                stacklevel=2,
            )


def _batch_and_size(image: Any) -> tuple[int, int, int]:
    """``(batch, width, height)`` of an image-like object, without converting it."""
    if isinstance(image, LoadedImage):
        return (1, *image.size)
    if isinstance(image, Image.Image):
        return (1, *image.size)
    if isinstance(image, np.ndarray) and image.ndim in (2, 3, 4):
        if image.ndim == 4:
            return image.shape[0], image.shape[2], image.shape[1]
        return 1, image.shape[1], image.shape[0]
    if isinstance(image, torch.Tensor) and image.dim() in (3, 4):
        return (image.shape[0] if image.dim() == 4 else 1), image.shape[-1], image.shape[-2]
    raise TypeError(
        f"a dual-pixel view must be a PIL image, an array, a tensor or a LoadedImage, got {type(image).__name__}"
    )


def _same_pixels(a: Any, b: Any) -> bool:
    if isinstance(a, LoadedImage) and isinstance(b, LoadedImage):
        return np.array_equal(a.array, b.array)
    if isinstance(a, Image.Image) and isinstance(b, Image.Image):
        return a.mode == b.mode and a.tobytes() == b.tobytes()
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.device == b.device and torch.equal(a, b)
    return False


# ----------------------------------------------------------------------------------------------------------------
# Defocus maps
# ----------------------------------------------------------------------------------------------------------------


def _as_map(coc: Any) -> np.ndarray:
    """A single CoC map as ``(H, W)`` float32; accepts ``(H, W)``, ``(H, W, 1)``, ``(1, H, W)``, ``(1, 1, H, W)``."""
    if isinstance(coc, torch.Tensor):
        coc = coc.detach().float().cpu().numpy()
    array = np.asarray(coc, dtype=np.float32)
    shape = array.shape
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"a defocus map must be (H, W), (H, W, 1), (1, H, W) or (1, 1, H, W), got shape {shape}")
    if not np.isfinite(array).all():
        raise ValueError("the defocus map contains NaN or infinite values")
    return array


def _check_max_coc(max_coc: float) -> float:
    if not (isinstance(max_coc, (int, float)) and math.isfinite(max_coc) and max_coc > 0):
        raise ValueError(f"`max_coc` must be a positive number of pixels, got {max_coc!r}")
    return float(max_coc)


def colorize_defocus_map(
    coc: Any, max_coc: float = DEFAULT_MAX_COC, signed: bool = True, cmap: str | None = None
) -> np.ndarray:
    """Colour preview ``(H, W, 3)`` uint8 of a CoC map in pixels, clipped to ``max_coc``.

    ``signed=True``: diverging ``"RdBu_r"`` over [-max_coc, max_coc]: near (coc < 0) blue, in focus white,
    far (coc > 0) red. ``signed=False``: perceptually uniform ``"magma"`` over |coc| in [0, max_coc].
    """
    from matplotlib import colormaps  # imported here: matplotlib is only needed for previews

    values, name = _normalized_map(_as_map(coc), _check_max_coc(max_coc), signed, cmap)
    return colormaps[name](values, bytes=True)[..., :3]


def _normalized_map(coc: np.ndarray, max_coc: float, signed: bool, cmap: str | None) -> tuple[np.ndarray, str]:
    if signed:
        return np.clip((coc + max_coc) / (2 * max_coc), 0.0, 1.0), cmap or "RdBu_r"
    return np.clip(np.abs(coc) / max_coc, 0.0, 1.0), cmap or "magma"


def defocus_map_figure(
    coc: Any, max_coc: float = DEFAULT_MAX_COC, signed: bool = True, cmap: str | None = None, width_px: int = 800
) -> Image.Image:
    """The colour preview with a colour bar labelled "CoC radius (px)", rendered by matplotlib (Agg) to PIL RGB."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    coc, max_coc = _as_map(coc), _check_max_coc(max_coc)
    height, width = coc.shape
    dpi = 100
    figure = Figure(
        figsize=(width_px / dpi, max(2.0, 0.85 * width_px / dpi * height / width)), dpi=dpi, layout="constrained"
    )
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = coc if signed else np.abs(coc)
    low = -max_coc if signed else 0.0
    mappable = axes.imshow(shown, cmap=_normalized_map(coc[:1, :1], max_coc, signed, cmap)[1], vmin=low, vmax=max_coc)
    axes.set_axis_off()
    label = "CoC radius (px), − near / + far" if signed else "CoC radius (px)"
    figure.colorbar(mappable, ax=axes, label=label, shrink=0.9)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def save_defocus_map_png16(
    coc: Any, path: str | os.PathLike, max_coc: float = DEFAULT_MAX_COC, signed: bool = True, overwrite: bool = False
) -> Path:
    """Write a CoC map (px) as a 16-bit grayscale PNG; returns the path.

    Encoding (values outside ±max_coc are clipped), also written into the PNG's text chunks so
    :func:`load_defocus_map_png16` can invert it:
    - signed: ``value = round((coc + max_coc) / (2 * max_coc) * 65535)``, so 32768 ≈ in focus;
    - unsigned (``signed=False``): ``value = round(|coc| / max_coc * 65535)``.
    One step is ``2 * max_coc / 65535`` px (0.00076 px for max_coc=25).
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"a 16-bit defocus map is written as .png, got '{path}'")
    max_coc = _check_max_coc(max_coc)
    values, _ = _normalized_map(_as_map(coc), max_coc, signed, None)
    info = PngImagePlugin.PngInfo()
    info.add_text(_MAP_MAX_COC_KEY, repr(max_coc))
    info.add_text(_MAP_ENCODING_KEY, "signed" if signed else "absolute")
    formula = "coc = value / 65535 * 2 * max_coc - max_coc" if signed else "coc = value / 65535 * max_coc"
    info.add_text("Description", f"defocus (CoC radius) map in pixels: {formula}")
    buffer = io.BytesIO()
    Image.fromarray(_quantize(values, 16)).save(buffer, format="PNG", pnginfo=info)
    _write_bytes(path, buffer.getvalue(), overwrite)
    return path


def load_defocus_map_png16(
    path: str | os.PathLike, max_coc: float | None = None, signed: bool | None = None
) -> np.ndarray:
    """Read a map written by :func:`save_defocus_map_png16` -> ``(H, W)`` float32 CoC in pixels.

    ``max_coc`` and ``signed`` default to the values stored in the file (25.0 and signed for files without them);
    values given that contradict the file raise ``ValueError``.
    """
    with Image.open(path) as image:
        if not (image.mode.startswith("I;16") or image.mode == "I"):
            raise ValueError(f"'{path}' is not a 16-bit grayscale PNG (Pillow mode {image.mode!r})")
        text = getattr(image, "text", {})
        values = np.asarray(image).astype(np.float64) / 65535.0
    stored_max = float(text[_MAP_MAX_COC_KEY]) if _MAP_MAX_COC_KEY in text else None
    stored_signed = text[_MAP_ENCODING_KEY] == "signed" if _MAP_ENCODING_KEY in text else None
    if max_coc is not None and stored_max is not None and not math.isclose(max_coc, stored_max):
        raise ValueError(f"'{path}' was saved with max_coc={stored_max}, but max_coc={max_coc} was given")
    if signed is not None and stored_signed is not None and signed != stored_signed:
        raise ValueError(
            f"'{path}' holds a {'signed' if stored_signed else 'absolute'} map, but signed={signed} was given"
        )
    max_coc = _check_max_coc(
        max_coc if max_coc is not None else stored_max if stored_max is not None else DEFAULT_MAX_COC
    )
    signed = signed if signed is not None else stored_signed if stored_signed is not None else True
    coc = values * 2 * max_coc - max_coc if signed else values * max_coc
    return coc.astype(np.float32)


def save_defocus_map_npy(coc: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a CoC map as ``(H, W)`` float32 pixels in a ``.npy`` file; returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"a defocus map array is written as .npy, got '{path}'")
    buffer = io.BytesIO()
    np.save(buffer, _as_map(coc))
    _write_bytes(path, buffer.getvalue(), overwrite)
    return path
