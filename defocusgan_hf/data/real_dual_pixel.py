"""Real dual-pixel captures for unsupervised stage-1 training: DP views + an all-in-focus image, no true map.

Stage 1 needs no ground-truth map (the paper's point): the reblur loss compares the sharp image blurred by the
predicted map with the real blurred image, and the DP-view search compares half-aperture reblurs with each view.
Two layouts are read:

- scene folders (``shared/real/dpdd_gif``, ``shared/real/pixel4``): ``NAME/dp_a.png``, ``NAME/dp_b.png`` (which
  one is left is unknown in ``dpdd_gif``, detected; ``dp_a`` is left in ``pixel4``, ``view_order="a_left"``),
  ``NAME/sharp.png`` and ``NAME/blurred.png`` (the combined image);
- DPDD: ``{split}_l/source``, ``{split}_r/source``, ``{split}_c/source`` and ``{split}_c/target`` (left, right,
  combined, all-in-focus; same file names).

**View order.** Swapping the two views mirrors near and far, so nothing in one capture tells which view is the
left one: :func:`detect_view_order` runs the DP-view search (:func:`~defocusgan_hf.models.reblur.search_signed_coc`)
with the first view as left and takes the order in which most defocused pixels are *behind* the focal plane, the
usual case in photographs (a subject in focus before a blurred background). The order is decided once per scene
(on a downscaled copy), and kept.

:class:`RealDualPixelDataset` yields random crops ``{left, right, blurred, sharp: (3, s, s)}`` in [0, 1], float32,
deterministic per ``(seed, epoch, index)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..image_io import load_image, to_tensor
from ..models.blur_kernel import kernel_bank
from ..models.dual_pixel import dual_pixel_view_kernels
from ..models.reblur import search_signed_coc

SCENE_FILES = ("dp_a.png", "dp_b.png", "sharp.png", "blurred.png")


@dataclass
class RealDualPixelCapture:
    """One capture, ``(H, W, 3)`` float32 arrays in [0, 1]; ``left``/``right`` after order detection."""

    name: str
    left: np.ndarray
    right: np.ndarray
    blurred: np.ndarray
    sharp: np.ndarray
    swapped: bool = False
    far_fraction: float | None = None


@torch.no_grad()
def far_fraction(
    sharp: np.ndarray, first: np.ndarray, second: np.ndarray, max_coc: int = 16, max_side: int = 420
) -> float | None:
    """Among pixels the DP-view search finds defocused (``|CoC| >= 1`` px), the fraction behind the focal plane
    with ``first`` taken as the left view; ``None`` if none is defocused. Runs on a copy downscaled to
    ``max_side`` (radii scale with it; ``max_coc`` is in those pixels)."""
    images = [to_tensor(x)[0] for x in (sharp, first, second)]
    factor = max(images[0].shape[-2:]) / max_side
    if factor > 1:
        size = [max(16, round(s / factor)) for s in images[0].shape[-2:]]
        images = [F.interpolate(x, size=size, mode="area") for x in images]
    view_kernels = dual_pixel_view_kernels(kernel_bank(max_coc))
    coc = search_signed_coc(*images, view_kernels)
    defocused = coc.abs() >= 1
    if not bool(defocused.any()):
        return None
    return float((coc[defocused] > 0).float().mean())


def detect_view_order(sharp: np.ndarray, view_a: np.ndarray, view_b: np.ndarray) -> tuple[bool, float | None]:
    """``(swap, far_fraction)``: ``swap`` is True when ``view_b`` should be the left view (see the module doc)."""
    fraction = far_fraction(sharp, view_a, view_b)
    return (fraction is not None and fraction < 0.5), fraction


VIEW_ORDERS = ("detect", "a_left")
"""``view_order`` values of :func:`load_real_dual_pixel`: detect which view is left (:func:`detect_view_order`), or
take ``dp_a`` as the left view (a camera whose convention is known, e.g. ``shared/real/pixel4``)."""


def load_real_dual_pixel(
    root: str | os.PathLike, names: Sequence[str] | None = None, split: str = "train", view_order: str = "detect"
) -> list[RealDualPixelCapture]:
    """Captures of either layout under ``root`` (``names``: only these scene folders / file names), views ordered.

    ``view_order`` (scene folders only; DPDD names its views): ``"detect"`` decides per scene which view is left
    (:func:`detect_view_order`), ``"a_left"`` takes ``dp_a`` as left without detection (``far_fraction`` stays
    ``None``). Grey images (8- or 16-bit) load as three equal channels in [0, 1]."""
    if view_order not in VIEW_ORDERS:
        raise ValueError(f"`view_order` must be one of {VIEW_ORDERS}, got {view_order!r}.")
    root = Path(root)
    if (root / f"{split}_c").is_dir() or (root / "dd_dp_dataset_canon" / f"{split}_c").is_dir():
        base = root if (root / f"{split}_c").is_dir() else root / "dd_dp_dataset_canon"
        files = sorted(p.name for p in (base / f"{split}_c" / "source").glob("*.png"))
        files = [f for f in files if names is None or Path(f).stem in set(names) or f in set(names)]
        items = [
            (
                Path(f).stem,
                base / f"{split}_l" / "source" / f,
                base / f"{split}_r" / "source" / f,
                base / f"{split}_c" / "target" / f,
                base / f"{split}_c" / "source" / f,
                True,  # DPDD names its views: no detection needed
            )
            for f in files
        ]
    else:
        folders = sorted(d for d in root.iterdir() if d.is_dir() and all((d / f).is_file() for f in SCENE_FILES))
        if names is not None:
            missing = set(names) - {d.name for d in folders}
            if missing:
                raise ValueError(f"{root} has no DP scene folders {sorted(missing)}.")
            folders = [d for d in folders if d.name in set(names)]
        items = [
            (d.name, *(d / f for f in ("dp_a.png", "dp_b.png", "sharp.png", "blurred.png")), view_order == "a_left")
            for d in folders
        ]
    if not items:
        raise ValueError(f"{root} holds no real DP captures (scene folders with {SCENE_FILES}, or DPDD's layout).")
    captures = []
    for name, first, second, sharp_path, blurred_path, known_order in items:
        view_a, view_b, sharp, blurred = (load_image(p).array for p in (first, second, sharp_path, blurred_path))
        if not (view_a.shape == view_b.shape == sharp.shape == blurred.shape):
            raise ValueError(f"{name}: the views, sharp and blurred images differ in size.")
        swap, fraction = (False, None) if known_order else detect_view_order(sharp, view_a, view_b)
        left, right = (view_b, view_a) if swap else (view_a, view_b)
        captures.append(RealDualPixelCapture(name, left, right, blurred, sharp, swap, fraction))
    return captures


class RealDualPixelDataset(Dataset):
    """Random crops of real DP captures: ``{left, right, blurred, sharp}`` ``(3, resolution, resolution)``.

    ``length`` samples per epoch; sample ``i`` takes capture ``i % len(captures)``, a crop position and a
    horizontal flip (which mirrors the views into each other: the flipped left view becomes the right one) drawn
    from ``(seed, epoch, i)``. Call :meth:`set_epoch` between epochs."""

    def __init__(
        self,
        captures: Sequence[RealDualPixelCapture],
        resolution: int = 256,
        length: int = 10_000,
        seed: int = 0,
        flip: bool = True,
    ):
        if not captures:
            raise ValueError("`captures` is empty.")
        small = [c.name for c in captures if min(c.sharp.shape[:2]) < resolution]
        if small:
            raise ValueError(f"captures {small} are smaller than the crop size {resolution}.")
        self.captures, self.resolution, self.length = list(captures), int(resolution), int(length)
        self.seed, self.flip, self.epoch = int(seed), flip, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of {self.length} samples.")
        capture = self.captures[index % len(self.captures)]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        h, w = capture.sharp.shape[:2]
        top, left = int(rng.integers(0, h - self.resolution + 1)), int(rng.integers(0, w - self.resolution + 1))
        window = (slice(top, top + self.resolution), slice(left, left + self.resolution))
        crops = {k: getattr(capture, k)[window] for k in ("left", "right", "blurred", "sharp")}
        if self.flip and rng.random() < 0.5:  # a mirrored DP capture: the views trade places
            crops = {k: v[:, ::-1] for k, v in crops.items()}
            crops["left"], crops["right"] = crops["right"], crops["left"]
        return {k: torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1).float() for k, v in crops.items()}


__all__ = [
    "VIEW_ORDERS",
    "RealDualPixelCapture",
    "RealDualPixelDataset",
    "detect_view_order",
    "far_fraction",
    "load_real_dual_pixel",
]
