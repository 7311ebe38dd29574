"""Layered non-blind deconvolution guided by a CoC map: the two-stage baseline of the paper's Table 3 and 5.

The inverse of Eq. 4's layered reblur: the blurred image is deconvolved once per integer CoC radius r with that
radius's kernel (the whole image, FFT-based), and every pixel takes the layers of the two integer radii around
its |CoC| with the linear weights of :func:`~defocusgan_hf.models.reblur.layer_weights`. With a two-sided kernel
bank, pixels with ``coc >= 0`` take side 0 and pixels with ``coc < 0`` side 1, as in :func:`reblur`.

The per-layer deconvolution is scikit-image's: ``restoration.wiener`` (Wiener–Hunt, Laplacian regulariser) or
``restoration.richardson_lucy``. Wiener deconvolves the image's mirrored (periodic) extension, so the FFT's
circular boundary does not ring into the image; Richardson–Lucy pads by one kernel size. Layers that no pixel
uses are skipped, and radius 0 (the delta kernel) is the blurred image itself.

Wiener balance: ``DEFAULT_WIENER_BALANCE`` = 0.3, chosen once (best mean SSIM) by a sweep over {0.01, 0.03, 0.1,
0.3, 1} on the first 6 images of the synthetic validation set with their true maps (mean SSIM 0.671 / 0.699 /
0.716 / 0.721 / 0.717, PSNR 21.13 / 21.52 / 21.92 / 22.18 / 22.34 dB; the blurred input: 0.726, 22.80 dB; the
command is in ``docs/RESULTS.md``). Small balances sharpen uniform blur best (+2 dB on a nearly uniform image
at 0.03) but ring at depth edges, where a layer's kernel meets pixels blurred by another radius. That layered
deconvolution scores below the input on average matches the paper's Table 3, where the deconvolution
baselines also fall below the blurred input.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from skimage.restoration import richardson_lucy, uft, wiener

from ..models.blur_kernel import kernel_bank
from ..models.reblur import layer_weights

METHODS = ("wiener", "richardson_lucy")
DEFAULT_WIENER_BALANCE = 0.3
DEFAULT_RL_ITERATIONS = 20


def _as_kernels(kernels) -> np.ndarray:
    """``(S, R + 1, K, K)`` float64 array from a tensor/array ``(R + 1, K, K)`` or ``(S, R + 1, K, K)``."""
    array = kernels.detach().cpu().double().numpy() if isinstance(kernels, torch.Tensor) else np.asarray(kernels, float)
    if array.ndim == 3:
        array = array[None]
    if (
        array.ndim != 4
        or array.shape[0] not in (1, 2)
        or array.shape[-1] != array.shape[-2]
        or array.shape[-1] % 2 == 0
    ):
        raise ValueError(f"`kernels` must be (R+1, K, K) or (S, R+1, K, K) with S in (1, 2), K odd; got {array.shape}.")
    return array


def deconvolve(
    image: np.ndarray,
    kernel: np.ndarray,
    method: str = "wiener",
    balance: float = DEFAULT_WIENER_BALANCE,
    num_iter: int = DEFAULT_RL_ITERATIONS,
) -> np.ndarray:
    """Deconvolve a whole ``(H, W, 3)`` image in [0, 1] by one ``(K, K)`` kernel (summing to 1); same shape out.

    ``method``: ``"wiener"`` (``balance``: the regularisation weight) or ``"richardson_lucy"`` (``num_iter``
    iterations). The result is not clipped (the caller composites layers, then clips).
    Wiener runs on the image's mirrored periodic extension; Richardson–Lucy on the image padded by one kernel.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB image (H, W, 3), got shape {image.shape}.")
    height, width = image.shape[:2]
    if method == "richardson_lucy":
        # Direct (non-circular) convolutions: reflect padding by one kernel size is enough at the borders.
        pad = kernel.shape[-1]
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
        # One call for the three channels: a kernel of depth 1 convolves each channel on its own.
        out = richardson_lucy(padded, kernel[:, :, None], num_iter=num_iter, clip=False)
        return out[pad : pad + height, pad : pad + width]
    # Wiener works in the Fourier domain, which assumes a periodic image: the mirrored 2H x 2W extension is
    # periodic and continuous, so the borders do not ring (plain padding left wrap-around edges that the
    # inverse filter amplified across the whole image). It is tiled further when the kernel is larger.
    extended = _periodic_extension(image, kernel.shape[-1])
    reg = _laplacian(extended.shape[:2])
    out = np.stack([wiener(extended[..., c], kernel, balance, reg=reg, clip=False) for c in range(3)], axis=-1)
    return out[:height, :width]


def _periodic_extension(image: np.ndarray, kernel_size: int) -> np.ndarray:
    """The image, its left-right mirror, and both mirrored upside down: ``(2H, 2W, C)``, periodic and
    continuous; repeated until it is at least ``kernel_size`` pixels on each side."""
    top = np.concatenate([image, image[:, ::-1]], axis=1)
    mirrored = np.concatenate([top, top[::-1]], axis=0)
    reps = (math.ceil(kernel_size / mirrored.shape[0]), math.ceil(kernel_size / mirrored.shape[1]), 1)
    return np.tile(mirrored, reps) if reps != (1, 1, 1) else mirrored


@functools.lru_cache(maxsize=4)
def _laplacian(shape: tuple[int, int]) -> np.ndarray:
    """Transfer function of the Laplacian regulariser for an image of ``shape`` (cached: one per image size)."""
    return uft.laplacian(2, shape)[0]


def layered_deconvolution(
    blurred,
    coc,
    kernels=None,
    method: str = "wiener",
    balance: float = DEFAULT_WIENER_BALANCE,
    num_iter: int = DEFAULT_RL_ITERATIONS,
) -> np.ndarray:
    """Restore an all-in-focus image from a blurred one and its CoC map by per-layer non-blind deconvolution.

    Args:
        blurred: ``(H, W, 3)`` float array in [0, 1].
        coc: ``(H, W)`` (or ``(H, W, 1)``) signed CoC radius in pixels; magnitudes beyond the bank's largest
            radius are clamped to it.
        kernels: ``(R + 1, K, K)`` or ``(S, R + 1, K, K)`` kernels for the integer radii 0..R (e.g.
            ``LearnableBlurKernel()()`` or ``kernel_bank()``); default: the fixed Butterworth bank (Eq. 3), R = 25.
        method, balance, num_iter: see :func:`deconvolve`.

    Returns:
        ``(H, W, 3)`` float64 array in [0, 1].
    """
    image = np.asarray(blurred, dtype=np.float64)
    radius_map = np.asarray(coc, dtype=np.float64)
    if radius_map.ndim == 3 and radius_map.shape[-1] == 1:
        radius_map = radius_map[..., 0]
    if image.ndim != 3 or image.shape[2] != 3 or radius_map.shape != image.shape[:2]:
        raise ValueError(
            f"Expected blurred (H, W, 3) and coc (H, W) of one size, got {image.shape} and {radius_map.shape}."
        )
    bank = _as_kernels(kernel_bank() if kernels is None else kernels)
    sides, num_radii = bank.shape[:2]
    radius = np.minimum(np.abs(radius_map), num_radii - 1)
    used = min(num_radii, int(math.ceil(radius.max())) + 1)
    weights = layer_weights(torch.from_numpy(radius)[None, None], used)[0].numpy()  # (L, H, W)
    side_masks = (
        [np.ones_like(radius)] if sides == 1 else [(radius_map >= 0).astype(float), (radius_map < 0).astype(float)]
    )
    restored = np.zeros_like(image)
    for side, mask in enumerate(side_masks):
        for r in range(used):
            weight = weights[r] * mask
            if not weight.any():
                continue
            layer = image if r == 0 else deconvolve(image, bank[side, r], method, balance, num_iter)
            restored += weight[..., None] * layer
    return np.clip(restored, 0.0, 1.0)
