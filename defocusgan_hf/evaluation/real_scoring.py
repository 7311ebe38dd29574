"""Scoring an output against real ground truth: PSNR tolerant to a small misregistration (best integer shift,
border cut), the colour-matched PSNR (per-channel affine fit to the ground truth), masked PSNR, the brightness
shift in 8-bit levels and the channel spread of grey input. Images ``(H, W, 3)`` float in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import psnr, ssim

DEFAULT_BORDER = 8
"""Pixels cut from every side before a shift-tolerant PSNR (at least the tolerance itself)."""


@dataclass(frozen=True)
class TargetScore:
    """An image scored against the ground truth: ``psnr`` (dB, best over the shifts tried), ``shift`` ``(dy, dx)``
    px at which it was found (``output[y + dy, x + dx]`` compared with ``target[y, x]``), and at that shift and
    crop ``psnr_matched`` (dB, after :func:`colour_matched`) and ``ssim`` (``None`` when not asked for)."""

    psnr: float
    shift: tuple[int, int]
    psnr_matched: float
    ssim: float | None = None


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


def _border_cut(max_shift: int, border: int) -> int:
    """Pixels cut from each side: none without a tolerance (today's whole frame), else max(border, max_shift)."""
    return 0 if max_shift == 0 else max(int(border), int(max_shift))


def _aligned(output: np.ndarray, target: np.ndarray, shift: tuple[int, int], cut: int):
    """The crops of ``output`` displaced by ``shift`` ``(dy, dx)`` and of ``target``, ``cut`` px from each side."""
    (dy, dx), (h, w) = shift, target.shape[:2]
    return output[cut + dy : h - cut + dy, cut + dx : w - cut + dx], target[cut : h - cut, cut : w - cut]


def best_shift_psnr(
    output: np.ndarray, target: np.ndarray, max_shift: int, border: int = DEFAULT_BORDER
) -> tuple[float, tuple[int, int]]:
    """The highest PSNR (dB, :func:`~defocusgan_hf.metrics.psnr`) of ``output`` against ``target`` (both
    ``(H, W, 3)`` in [0, 1]) over the integer shifts ``(dy, dx)`` within ±``max_shift`` px, with that shift
    (``output[y + dy, x + dx]`` against ``target[y, x]``); a border of max(``border``, ``max_shift``) px is cut
    from both. ``max_shift=0`` is the plain whole-frame PSNR (no border cut) and shift ``(0, 0)``."""
    max_shift = int(max_shift)
    if max_shift < 0:
        raise ValueError(f"The shift tolerance must be >= 0 px, got {max_shift}.")
    if output.shape != target.shape:
        raise ValueError(f"Output {output.shape} and target {target.shape} must have the same shape.")
    cut = _border_cut(max_shift, border)
    if min(target.shape[:2]) <= 2 * cut:
        raise ValueError(f"A {cut}-px border leaves nothing of a {target.shape[1]}x{target.shape[0]} image.")
    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)]
    scores = [psnr(*_aligned(output, target, shift, cut)) for shift in shifts]
    best = int(np.argmax(scores))
    return float(scores[best]), shifts[best]


def shift_tolerant_psnr(output: np.ndarray, target: np.ndarray, max_shift: int, border: int = DEFAULT_BORDER) -> float:
    """PSNR in dB, the best over integer shifts within ±``max_shift`` px with a max(``border``, ``max_shift``) px
    border cut (:func:`best_shift_psnr`); ``max_shift=0``: the plain whole-frame PSNR."""
    return best_shift_psnr(output, target, max_shift, border)[0]


def score_against_target(
    output: np.ndarray, target: np.ndarray, max_shift: int = 0, border: int = DEFAULT_BORDER, with_ssim: bool = True
) -> TargetScore:
    """PSNR at the best shift (:func:`best_shift_psnr`), and at that shift and crop the colour-matched PSNR and
    (``with_ssim``) the SSIM. ``max_shift=0``: every figure on the whole frame, as without a tolerance."""
    value, shift = best_shift_psnr(output, target, max_shift, border)
    out, ref = _aligned(output, target, shift, _border_cut(max_shift, border))
    return TargetScore(value, shift, matched_psnr(out, ref), ssim(out, ref) if with_ssim else None)


def brightness_shift(output: np.ndarray, image: np.ndarray) -> float:
    """mean(output - image) over all pixels and channels, in 8-bit levels (0..255): > 0 the output is brighter."""
    return float(np.mean(np.asarray(output, np.float64) - np.asarray(image, np.float64)) * 255.0)


def channel_spread(image: np.ndarray) -> tuple[float, float]:
    """(max, mean) over pixels of ``max_c - min_c``, in 8-bit levels (0..255)."""
    spread = (image.max(axis=-1) - image.min(axis=-1)) * 255.0
    return float(spread.max()), float(spread.mean())
