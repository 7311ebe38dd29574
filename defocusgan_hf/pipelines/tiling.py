"""Tiled inference with overlap and seamless blending, so that memory stays bounded as images grow.

:func:`tiled_apply` blends ``(B, C, H, W)`` tensors into a full-size float32 accumulator; :func:`tiled_apply_array`
does the same arithmetic for one ``(H, W, C)`` uint8/uint16 image (converted to float a tile at a time) into a
uint8/uint16 (or float32) output, with float32 accumulators one band of tile rows high: no full-size float copy.

Hand-rolled because no maintained library covers it for arbitrary torch models without pulling in torchvision
or a framework (MONAI's sliding-window inferer would be the closest; it is a large dependency for 60 lines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..image_io.types import _quantize, _to_unit


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` px shared."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length: int, overlap: int, fade_start: bool, fade_end: bool, dtype, device) -> torch.Tensor:
    """1-D blend weights: rise over ``overlap`` px at a faded start, fall at a faded end, 1 elsewhere (never 0)."""
    weight = torch.ones(length, dtype=dtype, device=device)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=dtype, device=device) + 0.5) / overlap
        if fade_start:
            weight[:overlap] = torch.minimum(weight[:overlap], ramp)
        if fade_end:
            weight[-overlap:] = torch.minimum(weight[-overlap:], ramp.flip(0))
    return weight


def iter_tiles(
    height: int, width: int, tile: int, overlap: int
) -> Iterator[tuple[slice, slice, bool, bool, bool, bool]]:
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    for iy, y in enumerate(ys):
        for ix, x in enumerate(xs):
            yield (
                slice(y, min(y + tile, height)),
                slice(x, min(x + tile, width)),
                iy > 0,
                iy < len(ys) - 1,
                ix > 0,
                ix < len(xs) - 1,
            )


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def tiled_apply(
    fn: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    out_channels: int,
    tile_size: int | None,
    tile_overlap: int = 64,
    device: torch.device | str = "cpu",
    progress: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to every input ``(B, C, H, W)`` tile by tile and blend the ``(B, out_channels, h, w)`` results.

    Inputs and the result live on their own device (usually the CPU); each tile is moved to ``device`` for ``fn``.
    With ``tile_size=None``, or an image no larger than one tile, ``fn`` runs once on the whole image, so the
    result is exactly the untiled one. ``progress`` is called once per tile.
    """
    if tile_size is not None and (tile_size < 32 or tile_overlap < 0 or 2 * tile_overlap >= tile_size):
        raise ValueError(
            f"`tile_size` must be >= 32 and `tile_overlap` in [0, tile_size / 2), got {tile_size} and {tile_overlap}."
        )
    first = inputs[0]
    B, _, H, W = first.shape
    if tile_size is None or (H <= tile_size and W <= tile_size):
        out = fn(*(t.to(device) for t in inputs)).to(first.device, torch.float32)
        if progress is not None:
            progress()
        return out
    output = torch.zeros(B, out_channels, H, W, dtype=torch.float32, device=first.device)
    total_weight = torch.zeros(1, 1, H, W, dtype=torch.float32, device=first.device)
    for rows, cols, top, bottom, left, right in iter_tiles(H, W, tile_size, tile_overlap):
        tile_out = fn(*(t[..., rows, cols].to(device) for t in inputs)).to(first.device, torch.float32)
        wy = _ramp(tile_out.shape[-2], tile_overlap, top, bottom, torch.float32, first.device)
        wx = _ramp(tile_out.shape[-1], tile_overlap, left, right, torch.float32, first.device)
        weight = wy[:, None] * wx[None, :]
        output[..., rows, cols] += tile_out * weight
        total_weight[..., rows, cols] += weight
        if progress is not None:
            progress()
    return output / total_weight


def tiled_apply_array(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    out: np.ndarray,
    tile_size: int | None,
    tile_overlap: int = 64,
    device: torch.device | str = "cpu",
    progress: Callable[[], None] | None = None,
) -> np.ndarray:
    """Apply ``fn`` (``(1, C, h, w)`` in [0, 1] -> ``(1, C_out, h, w)``) to one image tile by tile; returns ``out``.

    ``image``: ``(H, W, C)`` uint8, uint16 or float32 in [0, 1]; each tile is scaled to float32 in [0, 1] on its own
    (``x / 255``, ``x / 65535``). ``out``: ``(H, W, C_out)``, filled in place: uint8 / uint16 get the result clamped
    to [0, 1] and rounded, float32 the clamped result. The tiles and blend weights are those of :func:`tiled_apply`,
    summed in the same order, so ``out`` equals the quantised result of :func:`tiled_apply` exactly. Besides
    ``image`` and ``out``, memory holds one tile and float32 sums over one band of ``tile_size`` rows by ``W``.
    """
    if tile_size is not None and (tile_size < 32 or tile_overlap < 0 or 2 * tile_overlap >= tile_size):
        raise ValueError(
            f"`tile_size` must be >= 32 and `tile_overlap` in [0, tile_size / 2), got {tile_size} and {tile_overlap}."
        )
    height, width = image.shape[:2]
    if out.shape[:2] != (height, width) or out.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(
            f"`out` must be uint8, uint16 or float32 {(height, width)} + (C,), got {out.dtype} {out.shape}"
        )

    def run(rows: slice, cols: slice) -> torch.Tensor:
        tile = torch.from_numpy(_to_unit(image[rows, cols])).permute(2, 0, 1)[None].contiguous()
        result = fn(tile.to(device)).to("cpu", torch.float32)[0]
        if progress is not None:
            progress()
        return result

    if tile_size is None or (height <= tile_size and width <= tile_size):
        _write(out, 0, run(slice(0, height), slice(0, width)).permute(1, 2, 0), torch.ones(height, width))
        return out
    band = min(tile_size, height)
    total = torch.zeros(band, width, out.shape[2])  # (rows, W, C): the rows of a band are contiguous in memory
    total_weight = torch.zeros(band, width)
    top = 0  # image row of the band's first row
    for rows, cols, fade_top, fade_bottom, fade_left, fade_right in iter_tiles(height, width, tile_size, tile_overlap):
        if rows.start > top:  # a new row of tiles: rows above it are final
            done = rows.start - top
            _write(out, top, total[:done], total_weight[:done])
            _shift_up(total, done)
            _shift_up(total_weight, done)
            top = rows.start
        tile_out = run(rows, cols).permute(1, 2, 0)
        wy = _ramp(tile_out.shape[0], tile_overlap, fade_top, fade_bottom, torch.float32, "cpu")
        wx = _ramp(tile_out.shape[1], tile_overlap, fade_left, fade_right, torch.float32, "cpu")
        weight = wy[:, None] * wx[None, :]
        band_rows = slice(rows.start - top, rows.stop - top)
        total[band_rows, cols] += tile_out * weight[..., None]
        total_weight[band_rows, cols] += weight
    _write(out, top, total[: height - top], total_weight[: height - top])
    return out


def _shift_up(band: torch.Tensor, rows: int) -> None:
    """Move ``band[rows:]`` to the top of ``band`` in place and zero the rows freed at its bottom."""
    keep = band.shape[0] - rows
    band[:keep] = band[rows:] if rows >= keep else band[rows:].clone()  # no overlap, or a copy first
    band[keep:] = 0


def _write(out: np.ndarray, top: int, total: torch.Tensor, total_weight: torch.Tensor, chunk: int = 64) -> None:
    """Write the blended rows ``total / total_weight`` (``(n, W, C)`` / ``(n, W)``) to rows ``top:top + n`` of
    ``out``, clamped to [0, 1] and quantised to its dtype, ``chunk`` rows at a time (small float temporaries)."""
    bit_depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(out.dtype)
    for start in range(0, total.shape[0], chunk):
        rows = slice(start, start + chunk)
        values = (total[rows] / total_weight[rows, :, None]).clamp_(0.0, 1.0).numpy()
        out[top + start : top + start + values.shape[0]] = values if bit_depth is None else _quantize(values, bit_depth)
