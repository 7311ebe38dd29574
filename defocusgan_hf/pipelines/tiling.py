"""Tiled inference with overlap and seamless blending, so that memory stays bounded as images grow.

Hand-rolled because no maintained library covers it for arbitrary torch models without pulling in torchvision
or a framework (MONAI's sliding-window inferer would be the closest; it is a large dependency for 60 lines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


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
