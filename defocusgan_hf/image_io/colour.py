"""Pixel conversions of decoded images to ``(H, W, 3)`` RGB in the source's own precision (uint8, uint16, or float32
in [0, 1]): gray and alpha, CMYK through ICC profiles, EXIF orientation; and the scaling to float32 in [0, 1]. Every
conversion is recorded in the image's ``notes``."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageCms

from .types import _FLOAT_TOLERANCE, ImageLoadError, _to_unit


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=4)


def _cv2_to_rgb(decoded: np.ndarray, name: str, notes: list[str]) -> tuple[np.ndarray, int]:
    """OpenCV's ``(H, W[, C])`` BGR(A) uint8/uint16/float array -> ``(H, W, 3)`` RGB (as :func:`_native`), bits."""
    values, bit_depth = _native(decoded, name)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        values = values[..., [2, 1, 0, 3][: values.shape[2]]]  # BGR(A) -> RGB(A)
    return _channels_to_rgb(values, name, notes), bit_depth


def _scale_to_unit(values: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """uint8 / uint16 / float in [0, 1] -> float32 in [0, 1] and the bit depth (8, or 16 for uint16 and float)."""
    values, bit_depth = _native(values, name)
    return _to_unit(values), bit_depth


def _native(values: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Checked samples in their own precision and the bit depth: uint8 (8) and uint16 (16) as they are, float as
    float32 clamped to [0, 1] (16; copied only when it is not float32 already or strays outside [0, 1])."""
    if values.dtype == np.uint8:
        return values, 8
    if values.dtype == np.uint16:
        return values, 16
    if np.issubdtype(values.dtype, np.floating):
        values = np.asarray(values, dtype=np.float32)
        if not np.isfinite(values).all():
            raise ImageLoadError(f"{name} contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
            raise ImageLoadError(f"{name} has float values in [{low:.4g}, {high:.4g}]; they must lie in [0, 1]")
        return (np.clip(values, 0.0, 1.0) if low < 0 or high > 1 else values), 16
    raise ImageLoadError(f"{name} has {values.dtype} samples; only 8-bit, 16-bit and float images are supported")


def _channels_to_rgb(values: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)``, C in {1, 2, 3, 4} (gray, gray+alpha, RGB, RGBA) -> ``(H, W, 3)`` in the same
    dtype (uint8, uint16 or float32 in [0, 1]); transparent alpha is composited in float32."""
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
    return np.ascontiguousarray(values)


def _flatten_alpha(color: np.ndarray, alpha: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    """Composite over white (what viewers show), in float32; a fully opaque alpha is just dropped."""
    opaque = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
    if alpha.min() >= opaque:
        notes.append(f"{name} has a fully opaque alpha channel; it was dropped")
        return color
    _warn(notes, f"{name} has transparent pixels; they were composited over white")
    alpha = _to_unit(alpha)
    return _to_unit(color) * alpha + (1.0 - alpha)


def _pil_to_rgb(
    image: Image.Image, name: str, icc_profile: bytes | None, notes: list[str]
) -> tuple[np.ndarray, bytes | None]:
    """A decoded PIL image of any mode -> ``(H, W, 3)`` RGB (uint8; uint16 for 16-bit modes, float32 in [0, 1] for
    mode F), and the ICC profile to keep."""
    mode = image.mode
    if mode == "RGB":
        return _pil_to_numpy(image), icc_profile
    if mode.startswith("I;16") or mode == "I":
        values = _pil_to_numpy(image)
        if values.min() < 0 or values.max() > 65535:
            raise ImageLoadError(f"{name} has 32-bit integer samples outside 0..65535")
        return _channels_to_rgb(values.astype(np.uint16), name, notes), icc_profile
    if mode == "F":
        return _channels_to_rgb(_native(_pil_to_numpy(image), name)[0], name, notes), icc_profile
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
    return _channels_to_rgb(_pil_to_numpy(image), name, notes), icc_profile


def _pil_to_numpy(image: Image.Image, band_pixels: int = 1 << 22) -> np.ndarray:
    """``np.array(image)`` (a writeable copy), read ``band_pixels`` at a time in bands of rows.

    Pillow's array interface goes through ``tobytes()``, which holds the whole image twice more (its chunks, then
    their join): 144 MB beside the decoded 24 MP photo. Band by band, only the result and one band are added.
    """
    width, height = image.size
    rows = max(1, band_pixels // max(1, width))
    if rows >= height:
        return np.array(image)
    first = np.asarray(image.crop((0, 0, width, rows)))
    pixels = np.empty((height, *first.shape[1:]), first.dtype)
    pixels[:rows] = first
    for top in range(rows, height, rows):
        pixels[top : top + rows] = np.asarray(image.crop((0, top, width, min(top + rows, height))))
    return pixels


def _cmyk_to_rgb(image: Image.Image, name: str, icc_profile: bytes | None, notes: list[str]) -> np.ndarray:
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            rgb = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            notes.append(f"{name} is CMYK; it was converted to sRGB with its ICC profile")
            return _pil_to_numpy(rgb)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    _warn(notes, f"{name} is CMYK without a usable ICC profile; colours were converted with a generic formula")
    return _pil_to_numpy(image.convert("RGB"))


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
