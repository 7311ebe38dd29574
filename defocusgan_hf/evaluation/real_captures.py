"""Evaluation on real captures: scene folders with ground truth, and photos with blur masks.

Two folder layouts (those of ``shared/real/``; any folder laid out the same way works):

- **scenes**: one sub-folder per scene with ``blurred.png`` (the single-image input) and ``sharp.png``
  (all-in-focus ground truth); optional ``dp_a.png`` / ``dp_b.png`` (the DP views), optional ``defocus_map.png``
  (a relative defocus map, kept on the scene, never scored as an output) and any other ``*.png`` (a reference
  method's output, e.g. ``dpdnet.png``, reported as its own row). Two formats of it (:func:`detect_scene_format`):
  ``"pixel4"`` (``pixel4/``: every folder has the five files, stored as 16-bit grey, and ``dp_a`` is the left
  view) and ``"scenes"`` (anything else, e.g. ``dpdd_gif/``: 8-bit RGB, DP view order unknown).
- **masked photos** (``cuhk/``): ``images/NAME.jpg|png`` and ``blur_masks/NAME.png`` (white = out of focus,
  black = in focus); no ground truth.

Measurements (images in [0, 1], 8-bit files; PSNR from ``skimage.metrics`` with ``data_range=1``):

- ``psnr`` / ``ssim`` against the ground truth, and the count of images whose output is worse than the input;
  with a shift tolerance of ``s`` px (:func:`shift_tolerant_psnr`, for ground truth registered only to about a
  pixel) PSNR is the best over the integer shifts within ±s px, a border of max(8, s) px cut, and SSIM and the
  colour-matched PSNR are taken at that shift; the input is scored the same way;
- **brightness shift**: mean(output - input) over all pixels and channels, in 8-bit levels (0..255);
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

``contact_sheet`` draws input | output(s) | ground truth per image, full frame and a zoomed crop, the same crop
in every column (:func:`shared_crop`: where the outputs change the input most, on average).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..image_io import load_image
from .metrics import psnr
from .real_scoring import (
    DEFAULT_BORDER,
    TargetScore,
    brightness_shift,
    channel_spread,
    masked_psnr,
    score_against_target,
    to_grey,
)

SCENE_INPUT, SCENE_TARGET = "blurred.png", "sharp.png"
DP_VIEW_FILES = ("dp_a.png", "dp_b.png")
DEFOCUS_MAP_FILE = "defocus_map.png"
"""A scene's relative defocus map (8-bit, normalised per scene): data for a stage-1 check, not a method's output."""
PIXEL4_FILES = (SCENE_INPUT, SCENE_TARGET, *DP_VIEW_FILES, DEFOCUS_MAP_FILE)
NOT_REFERENCES = frozenset(PIXEL4_FILES)
"""Files of a scene folder that are never read as a reference method's output."""
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
    marks the pixels known to be in focus (eroded mask), ``None`` when there is no mask. ``dp_views`` are
    ``(dp_a, dp_b)``, ``dp_a_is_left`` ``True`` when ``dp_a`` is known to be the left view (``None``: unknown);
    ``defocus_map`` ``(H, W)`` float in [0, 1] is the folder's relative defocus map (``None`` when it has none)."""

    name: str
    image: np.ndarray
    target: np.ndarray | None = None
    in_focus: np.ndarray | None = None
    references: dict[str, np.ndarray] = field(default_factory=dict)
    dp_views: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    defocus_map: np.ndarray | None = None
    dp_a_is_left: bool | None = None
    _input_scores: dict = field(default_factory=dict, repr=False, compare=False)

    def input_score(self, max_shift: int = 0, border: int = DEFAULT_BORDER) -> TargetScore | None:
        """The input scored against the ground truth (:func:`score_against_target`, no SSIM), computed once per
        tolerance for every method's row; ``None`` without ground truth."""
        if self.target is None:
            return None
        key = (int(max_shift), int(border))
        if key not in self._input_scores:
            self._input_scores[key] = score_against_target(self.image, self.target, max_shift, border, with_ssim=False)
        return self._input_scores[key]

    @property
    def matched_input_psnr(self) -> float | None:
        """PSNR of the colour-matched input (:func:`colour_matched`), whole frame, no shift."""
        score = self.input_score(0)
        return None if score is None else score.psnr_matched


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


def _is_16bit_grey(path: Path) -> bool:
    """Whether a PNG is stored as one 16-bit channel (read from the header only)."""
    with Image.open(path) as image:
        return image.mode in ("I;16", "I;16B", "I;16L", "I")


def detect_scene_format(root: str | os.PathLike) -> str:
    """``"pixel4"`` when every scene folder under ``root`` holds all of :data:`PIXEL4_FILES` and its
    ``blurred.png`` and ``sharp.png`` are 16-bit grey (the Pixel 4 DP scenes of Xin et al.: ``dp_a`` is the left
    view); ``"scenes"`` for any other scene folders (e.g. the 8-bit RGB DPDD GIF frames, view order unknown)."""
    root = Path(root)
    folders = [
        sub for sub in sorted(root.iterdir()) if (sub / SCENE_INPUT).is_file() and (sub / SCENE_TARGET).is_file()
    ]
    pixel4 = bool(folders) and all(
        all((sub / name).is_file() for name in PIXEL4_FILES)
        and _is_16bit_grey(sub / SCENE_INPUT)
        and _is_16bit_grey(sub / SCENE_TARGET)
        for sub in folders
    )
    return "pixel4" if pixel4 else "scenes"


def read_defocus_map(path: str | os.PathLike) -> np.ndarray:
    """``(H, W)`` float32 in [0, 1]: a stored defocus map (8 or 16 bit grey), relative (no units)."""
    return load_image(path).array[..., 0]


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
    dp_a_is_left: bool | None = None,
) -> list[RealScene]:
    """Scene folders under ``root`` sorted by name (or only ``names``), images ``(H, W, 3)`` float32 in [0, 1]
    (grey copied to RGB). ``defocus_map.png`` becomes :attr:`RealScene.defocus_map`; other PNGs besides the input,
    the ground truth and the DP views become reference rows. ``dp_a_is_left``: the DP view order, ``None`` to take it
    from :func:`detect_scene_format` (known, ``True``, for ``"pixel4"``; unknown otherwise)."""
    root = Path(root)
    if dp_a_is_left is None and detect_scene_format(root) == "pixel4":
        dp_a_is_left = True
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
        references = {
            p.stem: read_rgb(p)
            for p in sorted(folder.glob("*.png"))
            if p.name not in NOT_REFERENCES and read_rgb(p).shape == image.shape
        }
        views = None
        if with_dp_views and all((folder / v).is_file() for v in DP_VIEW_FILES):
            views = tuple(read_rgb(folder / v) for v in DP_VIEW_FILES)
        defocus_map = None
        if (folder / DEFOCUS_MAP_FILE).is_file():
            defocus_map = read_defocus_map(folder / DEFOCUS_MAP_FILE)
            if defocus_map.shape != image.shape[:2]:
                raise ValueError(f"{folder}: {DEFOCUS_MAP_FILE} {defocus_map.shape} does not match {image.shape[:2]}.")
        scene = RealScene(folder.name, image, target, references=references, dp_views=views, defocus_map=defocus_map)
        scene.dp_a_is_left = dp_a_is_left
        scenes.append(scene)
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
    brightness_shift: float | None = None
    shift_y: int | None = None
    shift_x: int | None = None
    shift_y_input: int | None = None
    shift_x_input: int | None = None

    def set_target_scores(self, output: TargetScore, image: TargetScore) -> None:
        """Fill the ground-truth figures from the output's and the input's :class:`TargetScore`."""
        self.psnr, self.psnr_input = output.psnr, image.psnr
        self.psnr_matched, self.psnr_matched_input = output.psnr_matched, image.psnr_matched
        self.ssim = output.ssim
        (self.shift_y, self.shift_x), (self.shift_y_input, self.shift_x_input) = output.shift, image.shift

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


def summarise(rows: Sequence[RealRow], worse_margin: float = 0.0) -> dict[str, float | int | str | None]:
    """Means and extremes over the images: ``psnr``, ``gain``, ``worse`` (images whose PSNR is more than
    ``worse_margin`` dB below the input's), ``worst_gain``, ``sharp_in`` mean / min, ``in_focus`` mean / min,
    ``grey_spread_max`` (max over images), ``grey_spread_mean``, and the brightness shift (8-bit levels):
    ``brightness_shift`` (mean), ``brightness_shift_worst`` (the largest in magnitude, signed) and
    ``brightness_shift_worst_image`` (its image's name)."""
    gains = [r.gain for r in rows if r.gain is not None]
    shifted = [r for r in rows if r.brightness_shift is not None]
    worst = max(shifted, key=lambda r: abs(r.brightness_shift), default=None)
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
        "brightness_shift": _mean([r.brightness_shift for r in shifted]),
        "brightness_shift_worst": None if worst is None else worst.brightness_shift,
        "brightness_shift_worst_image": None if worst is None else worst.name,
    }


def evaluate_real(
    restore: Restore,
    scenes: Sequence[RealScene],
    sharp_in: bool = True,
    grey: bool = True,
    keep_outputs: bool = False,
    progress: Callable | None = None,
    shift_tolerance: int = 0,
    border: int = DEFAULT_BORDER,
) -> tuple[list[RealRow], list[np.ndarray]]:
    """Run ``restore`` on every scene (and on its ground truth and its grey version when asked).

    ``shift_tolerance`` px (and ``border``): how the output and the input are scored against the ground truth
    (:func:`score_against_target`; 0: whole frames, no shift). Returns the per-image rows and, with
    ``keep_outputs``, the restored images (for contact sheets)."""
    rows, outputs = [], []
    iterator = progress(scenes) if progress is not None else scenes
    for scene in iterator:
        out = np.clip(restore(scene.image), 0.0, 1.0)
        if out.shape != scene.image.shape:
            raise ValueError(f"{scene.name}: the method returned {out.shape} for an input of {scene.image.shape}.")
        row = RealRow(scene.name, brightness_shift=brightness_shift(out, scene.image))
        if scene.target is not None:
            row.set_target_scores(
                score_against_target(out, scene.target, shift_tolerance, border),
                scene.input_score(shift_tolerance, border),
            )
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


def reference_rows(
    scenes: Sequence[RealScene], shift_tolerance: int = 0, border: int = DEFAULT_BORDER
) -> dict[str, list[RealRow]]:
    """Rows of the reference outputs stored with the scenes (e.g. ``dpdnet``), by reference name, scored as
    :func:`evaluate_real` scores a method's output."""
    out: dict[str, list[RealRow]] = {}
    for scene in scenes:
        for key, image in scene.references.items():
            row = RealRow(scene.name, brightness_shift=brightness_shift(image, scene.image))
            row.set_target_scores(
                score_against_target(image, scene.target, shift_tolerance, border),
                scene.input_score(shift_tolerance, border),
            )
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


__all__ = [
    "DEFAULT_EROSION",
    "RealRow",
    "RealScene",
    "detect_layout",
    "eroded_in_focus",
    "evaluate_real",
    "load_masked_photos",
    "load_real_set",
    "load_scenes",
    "mask_detail_ratio",
    "reference_rows",
    "rows_as_dicts",
    "summarise",
    "training_validation",
]
