"""Agreement of a defocus map with a *relative* reference map (Spearman's rank correlation, Garg et al. ICCV 2019).

A reference known only up to an affine map of unknown sign and scale (the Pixel 4 ``defocus_map.png``) is compared
by ranks: ``1 - |ρs|`` is 0 when one map is a monotone (increasing or decreasing) function of the other and about 1
for an unrelated map; a constant map has no ranks and scores 1 by definition.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

DEFAULT_RANK_STRIDE = 4
"""Pixels are compared on a grid of every 4th row and column (after resizing to the reference's size)."""


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` map -> ``(H, W)`` = ``shape`` float32, bilinear (``align_corners=False``); unchanged if equal."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape == tuple(shape):
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values))[None, None]
    return F.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def grid_samples(values: np.ndarray, stride: int = DEFAULT_RANK_STRIDE) -> np.ndarray:
    """The pixels of ``(H, W)`` ``values`` at rows and columns ``stride // 2, stride // 2 + stride, ...``, flat."""
    if stride < 1:
        raise ValueError(f"`stride` must be >= 1 pixel, got {stride}.")
    start = stride // 2
    return np.asarray(values)[start::stride, start::stride].ravel()


def signed_rank_correlation(
    estimate: np.ndarray, reference: np.ndarray, stride: int = DEFAULT_RANK_STRIDE
) -> float | None:
    """Spearman's ρs in [-1, 1] between ``estimate`` (resized to ``reference``'s ``(H, W)``) and ``reference`` on
    the :func:`grid_samples` pixels; ``None`` when either map is constant there (no ranks)."""
    reference = np.asarray(reference, dtype=np.float32)
    a = grid_samples(resize_map(estimate, reference.shape), stride)
    b = grid_samples(reference, stride)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def rank_error(estimate: np.ndarray, reference: np.ndarray, stride: int = DEFAULT_RANK_STRIDE) -> float:
    """``1 - |ρs|`` in [0, 1] (lower is better) of :func:`signed_rank_correlation`; 1.0 for a constant map."""
    rho = signed_rank_correlation(estimate, reference, stride)
    return 1.0 if rho is None else 1.0 - abs(rho)


__all__ = ["DEFAULT_RANK_STRIDE", "grid_samples", "rank_error", "resize_map", "signed_rank_correlation"]
