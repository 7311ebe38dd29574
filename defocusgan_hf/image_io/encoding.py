"""Encoding and safe writing: 8- and 16-bit files with ICC profile and EXIF; never over an existing file unless
asked, and an overwrite goes through a temporary file (atomic)."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .conversion import to_tensor
from .types import _PIL_FORMATS, HIGH_BIT_DEPTH_SUFFIXES, IMAGE_SUFFIXES, _quantize


def save_image(
    image: np.ndarray | Any,
    path: str | os.PathLike,
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one image; returns the path. The format follows the extension (.png .jpg .jpeg .tif .tiff .webp .bmp).

    ``image``: ``(H, W, 3)`` float in [0, 1], or uint8 / uint16 samples (written as they are when their bit depth is
    ``bit_depth``, without a float copy), or anything :func:`to_tensor` takes, for one image.
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
    pixels = _as_pixels(image, bit_depth)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' already exists; pass overwrite=True (--overwrite) to replace it")
    if bit_depth == 16:
        ok, encoded = cv2.imencode(suffix, pixels[..., ::-1])
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
        Image.fromarray(pixels).save(buffer, format=file_format, **options)
        data = buffer.getbuffer()  # no copy of the encoded file
    _write_bytes(path, data, overwrite)
    return path


def _as_pixels(image: Any, bit_depth: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 (``bit_depth`` 8) or uint16 (16) samples to encode, rounded from [0, 1]."""
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == dtype:
        return image
    return _quantize(_as_rgb_array(image), bit_depth)


def _as_rgb_array(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32:
        if not np.isfinite(image).all():
            raise ValueError("the image to save contains NaN or infinite values")
        return image
    tensor, _ = to_tensor(image, min_size=None)  # any size can be written
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
