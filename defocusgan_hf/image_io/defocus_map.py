"""Defocus (CoC) maps: colour previews, 16-bit PNG and ``.npy`` files, and :func:`export_defocus_map`, which writes
every map output of one capture (the CLI and the app both use it, with the same file names)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .encoding import _write_bytes, save_image
from .types import DEFAULT_MAX_COC, LoadedImage, _quantize

_MAP_MAX_COC_KEY = "defocusgan:max_coc"
_MAP_ENCODING_KEY = "defocusgan:encoding"


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


DEFOCUS_OUTPUTS = {
    "color": "_defocus_color.png",
    "png16": "_defocus_16bit.png",
    "npy": "_defocus.npy",
    "all_in_focus": "_all_in_focus.png",
}
"""What :func:`export_defocus_map` writes for a capture, as ``<stem><suffix>``: the colour preview, the 16-bit PNG,
the ``.npy`` array and the all-in-focus image."""


def defocus_output_paths(folder: str | os.PathLike, stem: str) -> dict[str, Path]:
    """The paths :func:`export_defocus_map` writes for ``stem`` in ``folder``, by key of :data:`DEFOCUS_OUTPUTS`."""
    return {key: Path(folder) / f"{stem}{suffix}" for key, suffix in DEFOCUS_OUTPUTS.items()}


def export_defocus_map(
    coc: Any,
    all_in_focus: np.ndarray,
    outputs: dict[str, Path],
    like: LoadedImage | None = None,
    max_coc: float = DEFAULT_MAX_COC,
    signed: bool = True,
    colour_bar: bool = False,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write every output of one defocus map; returns ``outputs``.

    Args:
        coc: the signed CoC map in pixels, any shape :func:`colorize_defocus_map` takes.
        all_in_focus: the restored image ``(H, W, 3)`` float in [0, 1].
        outputs: the paths by key of :data:`DEFOCUS_OUTPUTS` (see :func:`defocus_output_paths`).
        like: the input view whose bit depth (8 or 16), ICC profile and EXIF the all-in-focus image keeps.
        max_coc: CoC radius (px) at the ends of the colour scale and of the 16-bit encoding.
        signed: colour near and far apart (the 16-bit PNG is always signed).
        colour_bar: the colour preview as a figure with a labelled colour bar (:func:`defocus_map_figure`) rather
            than the map's own pixels coloured (:func:`colorize_defocus_map`).
        overwrite: replace existing files.
    """
    coc = _as_map(coc)
    if colour_bar:
        preview = np.asarray(defocus_map_figure(coc, max_coc=max_coc, signed=signed))
    else:
        preview = colorize_defocus_map(coc, max_coc, signed=signed)
    save_image(preview, outputs["color"], overwrite=overwrite)
    save_defocus_map_png16(coc, outputs["png16"], max_coc=max_coc, overwrite=overwrite)
    save_defocus_map_npy(coc, outputs["npy"], overwrite=overwrite)
    bit_depth = 16 if like is not None and like.bit_depth == 16 else 8
    icc_profile, exif = (like.icc_profile, like.exif) if like is not None else (None, None)
    save_image(all_in_focus, outputs["all_in_focus"], bit_depth, icc_profile, exif, overwrite=overwrite)
    return outputs
