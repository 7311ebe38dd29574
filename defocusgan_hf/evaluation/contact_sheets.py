"""Contact sheets of real captures: input | each output | ground truth per image, full frame and a zoomed crop."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .real_captures import RealScene


def most_changed_crop(before: np.ndarray, after: np.ndarray, size: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square where ``after`` differs most from ``before`` (box-filtered |diff|)."""
    h, w = before.shape[:2]
    side = int(min(size, h, w))
    diff = np.abs(after - before).mean(axis=-1)
    energy = ndimage.uniform_filter(diff, size=side, mode="constant")
    half = side // 2
    valid = energy[half : h - side + half + 1, half : w - side + half + 1]
    top, left = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(top), int(left), side


def shared_crop(image: np.ndarray, outputs: Sequence[np.ndarray], size: int) -> tuple[int, int, int]:
    """One crop for every column of a contact-sheet row: where the outputs, on average, change the input most
    (:func:`most_changed_crop` of their mean), so that two models are compared on the same pixels."""
    return most_changed_crop(image, np.mean(np.stack(outputs), axis=0), size)


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def contact_sheet(
    scenes: Sequence[RealScene],
    outputs: Sequence[np.ndarray] | Mapping[str, Sequence[np.ndarray]],
    path: str | os.PathLike,
    thumb_width: int = 320,
    crop_size: int = 128,
    label: str = "output",
) -> Path:
    """Write a PNG with a row per image: input | each model's output | ground truth (when there is one), each as
    a full frame ``thumb_width`` px wide and a crop of ``crop_size`` px zoomed to the same height, **the same crop
    in every column** of the row (:func:`shared_crop`). ``outputs``: one model's outputs (its column is ``label``)
    or ``{label: outputs}`` for several. Returns the path."""
    by_model = dict(outputs) if isinstance(outputs, Mapping) else {label: outputs}
    if not scenes or any(len(scenes) != len(outs) for outs in by_model.values()):
        raise ValueError("`contact_sheet` needs one output per scene for every model, and at least one scene.")
    has_target = any(s.target is not None for s in scenes)
    columns = ["input", *by_model] + (["ground truth"] if has_target else [])
    rows = []
    for index, scene in enumerate(scenes):
        model_outputs = [outs[index] for outs in by_model.values()]
        top, left, side = shared_crop(scene.image, model_outputs, crop_size)
        panels = [scene.image, *model_outputs] + ([scene.target] if has_target else [])
        tiles = []
        for panel in panels:
            if panel is None:
                panel = np.zeros_like(scene.image)
            full = _to_pil(panel)
            full = full.resize((thumb_width, max(1, round(full.height * thumb_width / full.width))), Image.BILINEAR)
            crop = _to_pil(panel[top : top + side, left : left + side]).resize(
                (full.height, full.height), Image.NEAREST
            )
            draw = ImageDraw.Draw(full)
            scale = thumb_width / scene.image.shape[1]
            draw.rectangle(
                [left * scale, top * scale, (left + side) * scale, (top + side) * scale], outline=(255, 64, 64)
            )
            tile = Image.new("RGB", (full.width + crop.width, full.height))
            tile.paste(full, (0, 0))
            tile.paste(crop, (full.width, 0))
            tiles.append(tile)
        row = Image.new("RGB", (sum(t.width for t in tiles) + 4 * len(tiles), tiles[0].height + 16), "white")
        ImageDraw.Draw(row).text((2, 2), scene.name, fill=(0, 0, 0))
        x = 0
        for tile in tiles:
            row.paste(tile, (x, 16))
            x += tile.width + 4
        rows.append(row)
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, 18 + sum(r.height + 4 for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    step = rows[0].width // len(columns)
    for i, name in enumerate(columns):
        draw.text((i * step + 4, 2), f"{name} (full frame | zoomed crop)", fill=(0, 0, 0))
    y = 18
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
