"""Shared types and constants of :mod:`defocusgan_hf.image_io`: :class:`LoadedImage`, :class:`ImageLoadError`,
size limits, file suffixes, and the quantisation to 8 or 16 bits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
_FLOAT_TOLERANCE = 1e-4  # float inputs may stray this far outside [0, 1] (rounding) and are then clamped


class ImageLoadError(ValueError):
    """A file or object given as an image cannot be used; the message says which one and why."""


@dataclass
class LoadedImage:
    """An image read by :func:`load_image`.

    Args:
        pixels: ``(H, W, 3)`` RGB as decoded, EXIF orientation already applied: uint8 (8-bit sources), uint16
            (16-bit) or float32 in [0, 1] (float TIFFs, alpha composited over white). Kept in the source's own
            precision, so that a 24 MP photo takes 72 MB (8-bit) rather than 288 MB as float32.
        bit_depth: bits per channel of the source (8 or 16; float TIFFs count as 16).
        icc_profile: the embedded ICC profile (RGB profiles only), or None.
        exif: the EXIF block with the orientation tag removed (the pixels are upright), or None.
        path: the file it came from, or None.
        notes: conversions that were made (grayscale replicated, alpha composited, ...).
    """

    pixels: np.ndarray
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def array(self) -> np.ndarray:
        """``(H, W, 3)`` float32 RGB in [0, 1]; for uint8/uint16 ``pixels`` a new full-size copy on every access."""
        return _to_unit(self.pixels)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, like ``PIL.Image.size``."""
        return self.pixels.shape[1], self.pixels.shape[0]


def _to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 / uint16 samples -> float32 in [0, 1] (``x / 255``, ``x / 65535``); float32 is returned as it is."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    return np.asarray(pixels, dtype=np.float32)


def _quantize(array: np.ndarray, bit_depth: int) -> np.ndarray:
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    return np.round(np.clip(array, 0.0, 1.0) * scale).astype(dtype)
