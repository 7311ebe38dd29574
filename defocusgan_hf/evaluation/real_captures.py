"""Evaluation on real captures: scene folders with ground truth, and photos with blur masks.

Two folder layouts (those of ``shared/real/``; any folder laid out the same way works):

- **scenes** (``dpdd_gif/``): one sub-folder per scene with ``blurred.png`` (the single-image input) and
  ``sharp.png`` (all-in-focus ground truth); optional ``dp_a.png`` / ``dp_b.png`` (the DP views, order unknown)
  and any other ``*.png`` (a reference method's output, e.g. ``dpdnet.png``, reported as its own row).
- **masked photos** (``cuhk/``): ``images/NAME.jpg|png`` and ``blur_masks/NAME.png`` (white = out of focus,
  black = in focus); no ground truth.

Measurements (images in [0, 1], 8-bit files; PSNR from ``skimage.metrics`` with ``data_range=1``):

- ``psnr`` / ``ssim`` against the ground truth, and the count of images whose output is worse than the input;
- **sharp-in fidelity**: each ground-truth ``sharp.png`` fed in as input, PSNR(output, input): a model that
  leaves a sharp photo alone scores high;
- **in-focus fidelity**: PSNR(output, input) over the mask's in-focus pixels, the mask eroded by ``erosion`` px
  so that blur that spills over the mask's edge does not count;
- **gain after colour match**: the PSNR gain when the output and the input are each first matched to the ground
  truth by a per-channel affine map (least squares): DPDD's blurred and sharp frames were taken at different
  f-numbers and differ in exposure and colour as well as in sharpness, and this figure leaves only the sharpening
  (a diagnostic that reads the ground truth, not a method);
- **colour fidelity**: each input made grey (R = G = B, the channels' mean) and fed in; the output's channel
  spread ``max_c - min_c`` in 8-bit levels, its maximum and mean over the pixels.

``contact_sheet`` draws input | output | ground truth per image, full frame and a zoomed crop where the output
changes the input most.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..image_io import load_image
from .metrics import psnr, ssim

SCENE_INPUT, SCENE_TARGET = "blurred.png", "sharp.png"
DP_VIEW_FILES = ("dp_a.png", "dp_b.png")
DEFAULT_EROSION = 15
"""Pixels by which the in-focus part of a blur mask is eroded before in-focus fidelity is measured."""

Restore = Callable[[np.ndarray], np.ndarray]
"""``(H, W, 3)`` float32 in [0, 1] -> the restored image, same shape and range."""


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] (:func:`~defocusgan_hf.image_io.load_image`: 8 or 16 bit, grey to RGB)."""
    return load_image(path).array


@dataclass
class RealScene:
    """One real capture. ``target`` is ``None`` for photos without ground truth; ``in_focus`` ``(H, W)`` bool
    marks the pixels known to be in focus (eroded mask), ``None`` when there is no mask."""

    name: str
    image: np.ndarray
    target: np.ndarray | None = None
    in_focus: np.ndarray | None = None
    references: dict[str, np.ndarray] = field(default_factory=dict)
    dp_views: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)

    @functools.cached_property
    def matched_input_psnr(self) -> float | None:
        """PSNR of the colour-matched input (:func:`colour_matched`), computed once for every method's row."""
        return None if self.target is None else matched_psnr(self.image, self.target)


def detect_layout(root: str | os.PathLike) -> str:
    """``"scenes"`` or ``"masked_photos"`` for a folder of real captures; ``ValueError`` for anything else."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder of real captures.")
    if (root / "images").is_dir() and (root / "blur_masks").is_dir():
        return "masked_photos"
    if any((sub / SCENE_INPUT).is_file() and (sub / SCENE_TARGET).is_file() for sub in root.iterdir() if sub.is_dir()):
        return "scenes"
    raise ValueError(
        f"{root} holds neither scene folders with {SCENE_INPUT} and {SCENE_TARGET} nor images/ + blur_masks/."
    )


def eroded_in_focus(mask: np.ndarray, erosion: int = DEFAULT_EROSION) -> np.ndarray:
    """``(H, W)`` bool in-focus pixels of a blur mask (white = out of focus), eroded by ``erosion`` px."""
    in_focus = np.asarray(mask) < 0.5
    if erosion > 0:
        structure = ndimage.generate_binary_structure(2, 1)
        in_focus = ndimage.binary_erosion(in_focus, structure, iterations=int(erosion), border_value=1)
    return in_focus


def mask_detail_ratio(image: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean |Laplacian| of the luminance in the mask's in-focus part (black) over that in its out-of-focus part
    (white). Below 1 the "in-focus" part holds less fine detail than the blurred part: the mask may be inverted.
    ``None`` when one part is empty."""
    in_focus = np.asarray(mask) < 0.5
    if in_focus.all() or not in_focus.any():
        return None
    detail = np.abs(ndimage.laplace(image.mean(axis=-1)))
    return float(detail[in_focus].mean() / max(float(detail[~in_focus].mean()), 1e-12))


def load_scenes(
    root: str | os.PathLike,
    names: Sequence[str] | None = None,
    with_dp_views: bool = False,
) -> list[RealScene]:
    """Scene folders under ``root`` sorted by name (or only ``names``); other PNGs become reference rows."""
    root = Path(root)
    folders = sorted(sub for sub in root.iterdir() if (sub / SCENE_INPUT).is_file() and (sub / SCENE_TARGET).is_file())
    if names is not None:
        wanted = set(names)
        missing = wanted - {f.name for f in folders}
        if missing:
            raise ValueError(f"{root} has no scene folders {sorted(missing)}.")
        folders = [f for f in folders if f.name in wanted]
    scenes = []
    for folder in folders:
        image, target = read_rgb(folder / SCENE_INPUT), read_rgb(folder / SCENE_TARGET)
        if image.shape != target.shape:
            raise ValueError(f"{folder}: {SCENE_INPUT} {image.shape} and {SCENE_TARGET} {target.shape} differ in size.")
        skip = {SCENE_INPUT, SCENE_TARGET, *DP_VIEW_FILES}
        references = {
            p.stem: read_rgb(p)
            for p in sorted(folder.glob("*.png"))
            if p.name not in skip and read_rgb(p).shape == image.shape
        }
        views = None
        if with_dp_views and all((folder / v).is_file() for v in DP_VIEW_FILES):
            views = tuple(read_rgb(folder / v) for v in DP_VIEW_FILES)
        scenes.append(RealScene(folder.name, image, target, references=references, dp_views=views))
    if not scenes:
        raise ValueError(f"{root} holds no scene folders with {SCENE_INPUT} and {SCENE_TARGET}.")
    return scenes


def load_masked_photos(
    root: str | os.PathLike, max_images: int | None = None, erosion: int = DEFAULT_EROSION
) -> list[RealScene]:
    """Photos of ``root/images`` with their ``root/blur_masks`` (same stem, PNG), sorted by name."""
    root = Path(root)
    masks = {p.stem: p for p in (root / "blur_masks").iterdir() if p.suffix.lower() == ".png"}
    photos = sorted(
        p for p in (root / "images").iterdir() if p.stem in masks and p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    if not photos:
        raise ValueError(f"{root} has no photos in images/ with a mask of the same name in blur_masks/.")
    scenes = []
    for path in photos[:max_images]:
        image = read_rgb(path)
        with Image.open(masks[path.stem]) as m:
            mask = np.asarray(m.convert("L"), dtype=np.float32) / 255.0
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{path.name}: mask {mask.shape} does not match the photo {image.shape[:2]}.")
        scene = RealScene(path.stem, image, in_focus=eroded_in_focus(mask, erosion))
        ratio = mask_detail_ratio(image, mask)
        if ratio is not None and ratio < 1:
            scene.notes.append(f"mask may be inverted: its in-focus part has {ratio:.2f}x the detail of the rest")
        scenes.append(scene)
    return scenes


def load_real_set(root: str | os.PathLike, max_images: int | None = None, **kwargs) -> list[RealScene]:
    """Either layout, detected by :func:`detect_layout`."""
    if detect_layout(root) == "masked_photos":
        return load_masked_photos(root, max_images, **kwargs)
    return load_scenes(root, **kwargs)[:max_images]


def to_grey(image: np.ndarray) -> np.ndarray:
    """R = G = B = the channels' mean."""
    return np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1).astype(np.float32)


def masked_psnr(output: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR over the pixels where ``mask`` is true (all channels); ``None`` if the mask is empty."""
    if not mask.any():
        return None
    return psnr(output[mask], reference[mask])


def colour_matched(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W, 3)`` mapped channel by channel by the affine ``a * x + b`` closest to ``target`` in least
    squares, clipped to [0, 1]: what is left of the difference is not exposure or colour balance."""
    out = np.empty(image.shape, np.float64)
    for c in range(image.shape[-1]):
        x, y = image[..., c].astype(np.float64).ravel(), target[..., c].astype(np.float64).ravel()
        design = np.stack([x, np.ones_like(x)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        out[..., c] = (a * x + b).reshape(image.shape[:-1])
    return np.clip(out, 0.0, 1.0).astype(image.dtype)


def matched_psnr(image: np.ndarray, target: np.ndarray) -> float:
    return psnr(colour_matched(image, target), target)


def channel_spread(image: np.ndarray) -> tuple[float, float]:
    """(max, mean) over pixels of ``max_c - min_c``, in 8-bit levels (0..255)."""
    spread = (image.max(axis=-1) - image.min(axis=-1)) * 255.0
    return float(spread.max()), float(spread.mean())


@dataclass
class RealRow:
    """Per-image figures of one method on one real set (``None`` where a figure does not apply)."""

    name: str
    psnr: float | None = None
    psnr_input: float | None = None
    ssim: float | None = None
    sharp_in_psnr: float | None = None
    in_focus_psnr: float | None = None
    grey_spread_max: float | None = None
    grey_spread_mean: float | None = None
    psnr_matched: float | None = None
    psnr_matched_input: float | None = None

    @property
    def gain(self) -> float | None:
        return None if self.psnr is None else self.psnr - self.psnr_input

    @property
    def matched_gain(self) -> float | None:
        """The gain once output and input are each colour-matched to the ground truth (:func:`colour_matched`)."""
        return None if self.psnr_matched is None else self.psnr_matched - self.psnr_matched_input


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else None  # an identical output (inf dB) makes the mean inf


def _min(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.min(values)) if values else None


def summarise(rows: Sequence[RealRow], worse_margin: float = 0.0) -> dict[str, float | int | None]:
    """Means and extremes over the images: ``psnr``, ``gain``, ``worse`` (images whose PSNR is more than
    ``worse_margin`` dB below the input's), ``worst_gain``, ``sharp_in`` mean / min, ``in_focus`` mean / min,
    ``grey_spread_max`` (max over images) and ``grey_spread_mean``."""
    gains = [r.gain for r in rows if r.gain is not None]
    return {
        "images": len(rows),
        "psnr_input": _mean([r.psnr_input for r in rows]),
        "psnr": _mean([r.psnr for r in rows]),
        "ssim": _mean([r.ssim for r in rows]),
        "gain": _mean(gains),
        "worst_gain": _min(gains),
        "worse": sum(g < -worse_margin for g in gains) if gains else None,
        "matched_gain": _mean([r.matched_gain for r in rows]),
        "sharp_in": _mean([r.sharp_in_psnr for r in rows]),
        "sharp_in_min": _min([r.sharp_in_psnr for r in rows]),
        "in_focus": _mean([r.in_focus_psnr for r in rows]),
        "in_focus_min": _min([r.in_focus_psnr for r in rows]),
        "grey_spread_max": max((r.grey_spread_max for r in rows if r.grey_spread_max is not None), default=None),
        "grey_spread_mean": _mean([r.grey_spread_mean for r in rows]),
    }


def evaluate_real(
    restore: Restore,
    scenes: Sequence[RealScene],
    sharp_in: bool = True,
    grey: bool = True,
    keep_outputs: bool = False,
    progress: Callable | None = None,
) -> tuple[list[RealRow], list[np.ndarray]]:
    """Run ``restore`` on every scene (and on its ground truth and its grey version when asked).

    Returns the per-image rows and, with ``keep_outputs``, the restored images (for contact sheets)."""
    rows, outputs = [], []
    iterator = progress(scenes) if progress is not None else scenes
    for scene in iterator:
        out = np.clip(restore(scene.image), 0.0, 1.0)
        if out.shape != scene.image.shape:
            raise ValueError(f"{scene.name}: the method returned {out.shape} for an input of {scene.image.shape}.")
        row = RealRow(scene.name)
        if scene.target is not None:
            row.psnr, row.psnr_input = psnr(out, scene.target), psnr(scene.image, scene.target)
            row.ssim = ssim(out, scene.target)
            row.psnr_matched, row.psnr_matched_input = matched_psnr(out, scene.target), scene.matched_input_psnr
            if sharp_in:
                row.sharp_in_psnr = psnr(np.clip(restore(scene.target), 0, 1), scene.target)
        if scene.in_focus is not None:
            row.in_focus_psnr = masked_psnr(out, scene.image, scene.in_focus)
        if grey:
            row.grey_spread_max, row.grey_spread_mean = channel_spread(np.clip(restore(to_grey(scene.image)), 0, 1))
        rows.append(row)
        if keep_outputs:
            outputs.append(out)
    return rows, outputs


def reference_rows(scenes: Sequence[RealScene]) -> dict[str, list[RealRow]]:
    """Rows of the reference outputs stored with the scenes (e.g. ``dpdnet``), by reference name."""
    out: dict[str, list[RealRow]] = {}
    for scene in scenes:
        for key, image in scene.references.items():
            row = RealRow(scene.name, psnr(image, scene.target), psnr(scene.image, scene.target))
            row.ssim = ssim(image, scene.target)
            row.psnr_matched, row.psnr_matched_input = matched_psnr(image, scene.target), scene.matched_input_psnr
            out.setdefault(key, []).append(row)
    return out


def training_validation(restore: Restore, scenes: Sequence[RealScene], prefix: str = "real") -> dict[str, float]:
    """Figures for a training log on real scenes with ground truth: ``{prefix}/psnr``, ``/input_psnr``,
    ``/psnr_gain``, ``/worst_gain``, ``/worse`` (count), ``/sharp_in`` and ``/sharp_in_min`` (dB)."""
    summary = summarise(evaluate_real(restore, scenes, sharp_in=True, grey=False)[0])
    keys = {
        "psnr": "psnr",
        "input_psnr": "psnr_input",
        "psnr_gain": "gain",
        "worst_gain": "worst_gain",
        "worse": "worse",
        "sharp_in": "sharp_in",
        "sharp_in_min": "sharp_in_min",
    }
    return {f"{prefix}/{name}": float(summary[key]) for name, key in keys.items()}


def rows_as_dicts(rows: Sequence[RealRow]) -> list[dict]:
    return [{**dataclasses.asdict(r), "gain": r.gain, "matched_gain": r.matched_gain} for r in rows]


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


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def contact_sheet(
    scenes: Sequence[RealScene],
    outputs: Sequence[np.ndarray],
    path: str | os.PathLike,
    thumb_width: int = 320,
    crop_size: int = 128,
    label: str = "output",
) -> Path:
    """Write a PNG with a row per image: input | output | ground truth (when there is one), each as a full frame
    ``thumb_width`` px wide and a crop of ``crop_size`` px (where the output changes most) zoomed to the same
    height. Returns the path."""
    if len(scenes) != len(outputs) or not scenes:
        raise ValueError("`contact_sheet` needs one output per scene, and at least one scene.")
    columns = ["input", label] + (["ground truth"] if any(s.target is not None for s in scenes) else [])
    rows = []
    for scene, out in zip(scenes, outputs):
        top, left, side = most_changed_crop(scene.image, out, crop_size)
        panels = [scene.image, out] + ([scene.target] if len(columns) == 3 else [])
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


__all__ = [
    "DEFAULT_EROSION",
    "RealRow",
    "RealScene",
    "channel_spread",
    "contact_sheet",
    "detect_layout",
    "eroded_in_focus",
    "evaluate_real",
    "load_masked_photos",
    "load_real_set",
    "load_scenes",
    "mask_detail_ratio",
    "masked_psnr",
    "most_changed_crop",
    "reference_rows",
    "rows_as_dicts",
    "summarise",
    "to_grey",
    "training_validation",
]
