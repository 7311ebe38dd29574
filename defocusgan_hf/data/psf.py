"""Dual-pixel (DP) point-spread functions on a grid of signed CoC radii, for the synthetic-data renderer.

The half-aperture split itself (``aperture_masks``, ``dual_pixel_psf``, ``dual_pixel_view_kernels`` and their
defaults) lives in :mod:`defocusgan_hf.models.dual_pixel`, which the losses use too; it is re-exported here.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..models.dual_pixel import (  # noqa: F401 (re-exported)
    DEFAULT_LIGHT_FALLOFF,
    DEFAULT_SPLIT_SOFTNESS,
    aperture_masks,
    dual_pixel_psf,
    dual_pixel_view_kernels,
)


@lru_cache(maxsize=512)
def _cached_psf(coc: float, softness: float, falloff: float) -> torch.Tensor:
    return torch.stack(dual_pixel_psf(coc, softness, falloff))


def _is_fast_length(n: int) -> bool:
    for prime in (2, 3, 5):
        while n % prime == 0:
            n //= prime
    return n == 1


class DualPixelPSFBank:
    """Left/right PSFs on a grid of signed CoC radii ``k * step`` (pixels), built lazily and cached per device.

    Args:
        max_coc: largest |CoC| radius in pixels.
        step: grid spacing in pixels (at most 1; the renderer interpolates linearly between grid radii).
        softness, falloff: see :func:`aperture_masks`.
    """

    def __init__(
        self,
        max_coc: float = 25.0,
        step: float = 1.0,
        softness: float = DEFAULT_SPLIT_SOFTNESS,
        falloff: float = DEFAULT_LIGHT_FALLOFF,
    ):
        if not 0 < step <= 1:
            raise ValueError(f"`step` must be in (0, 1] pixels, got {step}.")
        if not 0 < max_coc <= 64:
            raise ValueError(f"`max_coc` must be in (0, 64] pixels, got {max_coc}.")
        self.max_coc, self.step, self.softness, self.falloff = float(max_coc), float(step), softness, falloff
        self.max_index = int(math.ceil(max_coc / step - 1e-9))
        self._device_cache: dict[tuple, torch.Tensor] = {}

    def radius(self, index: int) -> float:
        """Signed CoC radius (px) of grid index ``index``."""
        return index * self.step

    def view_psfs(self, radius: float) -> torch.Tensor:
        """``(2, K, K)`` (left, right) PSFs of a signed radius in px (subclasses give other PSF shapes)."""
        return _cached_psf(round(radius, 6), self.softness, self.falloff)

    def tight_kernels(self, index: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """``(2, K, K)`` (left, right) PSFs of grid index ``index`` at their own support ``K`` (no padding), cached
        per device: what the renderer pads to its own FFT sizes."""
        if abs(index) > self.max_index:
            raise ValueError(f"grid index {index} is outside ±{self.max_index} (max_coc={self.max_coc}).")
        key = (index, None, str(device), dtype)
        if key not in self._device_cache:
            self._device_cache[key] = self.view_psfs(self.radius(index)).to(device=device, dtype=dtype)
        return self._device_cache[key]

    def kernels(self, index: int, image_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """``(2, K, K)`` (left, right) PSFs of grid index ``index``, zero-padded to a support ``K`` that makes
        ``image_size + K - 1`` a 5-smooth number (fast FFT lengths); padding does not change the convolution."""
        if abs(index) > self.max_index:
            raise ValueError(f"grid index {index} is outside ±{self.max_index} (max_coc={self.max_coc}).")
        key = (index, image_size, str(device), dtype)
        if key not in self._device_cache:
            psf = self.view_psfs(self.radius(index))
            size = psf.shape[-1]
            target = next((k for k in range(size, size + 64, 2) if _is_fast_length(image_size + k - 1)), size)
            pad = (target - size) // 2
            self._device_cache[key] = F.pad(psf, (pad, pad, pad, pad)).to(device=device, dtype=dtype)
        return self._device_cache[key]
