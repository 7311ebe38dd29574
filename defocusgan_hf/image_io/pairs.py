"""The dual-pixel pair check: two views of one size (and batch size), with a warning for identical views."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

from .types import LoadedImage


def check_dual_pixel_pair(left: Any, right: Any) -> None:
    """Raise ``ValueError`` unless the left and right DP views have the same size (and batch size).

    Views may be PIL images, arrays ``(H, W[, C])`` / ``(B, H, W, C)``, tensors ``(C, H, W)`` / ``(B, C, H, W)``,
    LoadedImages, or lists of these. Warns when the two views are pixel-for-pixel identical (no disparity).
    """
    lefts = list(left) if isinstance(left, (list, tuple)) else [left]
    rights = list(right) if isinstance(right, (list, tuple)) else [right]
    if len(lefts) != len(rights):
        raise ValueError(f"got {len(lefts)} left views but {len(rights)} right views")
    for index, (a, b) in enumerate(zip(lefts, rights, strict=True)):
        (batch_a, width_a, height_a), (batch_b, width_b, height_b) = _batch_and_size(a), _batch_and_size(b)
        which = f" (pair {index})" if len(lefts) > 1 else ""
        if (width_a, height_a) != (width_b, height_b):
            raise ValueError(
                f"left view is {width_a}×{height_a} but right view is {width_b}×{height_b}{which}; "
                "the two dual-pixel views must have the same size"
            )
        if batch_a != batch_b:
            raise ValueError(f"left views hold a batch of {batch_a} but right views a batch of {batch_b}{which}")
        if _same_pixels(a, b):
            warnings.warn(
                f"the left and right views are identical{which}: a dual-pixel pair has a small disparity; "
                "was the same file given twice?",
                UserWarning,
                stacklevel=2,
            )


def _batch_and_size(image: Any) -> tuple[int, int, int]:
    """``(batch, width, height)`` of an image-like object, without converting it."""
    if isinstance(image, LoadedImage):
        return (1, *image.size)
    if isinstance(image, Image.Image):
        return (1, *image.size)
    if isinstance(image, np.ndarray) and image.ndim in (2, 3, 4):
        if image.ndim == 4:
            return image.shape[0], image.shape[2], image.shape[1]
        return 1, image.shape[1], image.shape[0]
    if isinstance(image, torch.Tensor) and image.dim() in (3, 4):
        return (image.shape[0] if image.dim() == 4 else 1), image.shape[-1], image.shape[-2]
    raise TypeError(
        f"a dual-pixel view must be a PIL image, an array, a tensor or a LoadedImage, got {type(image).__name__}"
    )


def _same_pixels(a: Any, b: Any) -> bool:
    if isinstance(a, LoadedImage) and isinstance(b, LoadedImage):
        same_dtype = a.pixels.dtype == b.pixels.dtype
        return np.array_equal(a.pixels, b.pixels) if same_dtype else np.array_equal(a.array, b.array)
    if isinstance(a, Image.Image) and isinstance(b, Image.Image):
        return a.mode == b.mode and a.tobytes() == b.tobytes()
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.device == b.device and torch.equal(a, b)
    return False
