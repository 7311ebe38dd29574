"""PSF families beyond the paper's Eq. 3 kernel, so that synthetic training data stop mirroring the model.

The stage-1 kernel bank is initialised with Eq. 3 (a Gaussian-smoothed Butterworth disc); rendering training data
with that same kernel lets a deblurring net learn one blur shape, which real lenses do not have. Each family here is
a radial or angular **aperture function** ``a(u, v)`` on coordinates in units of the CoC radius, sampled on a
4x supersampled grid and box-averaged to pixels (so sub-pixel radii are anti-aliased), normalised to sum 1:

- ``eq3``: the paper's kernel with randomised Butterworth order, cut-off, β and smoothing;
- ``disc``: a uniform disc whose edge is a linear ramp of random width (0 = hard-edged);
- ``gaussian``: ``exp(-ρ² / 2σ²)`` with ``σ`` a random fraction of the radius;
- ``polygon``: a 5–9-bladed aperture, rotated, with a soft edge;
- ``cat_eye``: the lens-shaped intersection of two discs (mechanical vignetting off the optical axis), at a random
  angle; centred, so that it does not shift the image;
- ``spherical``: a disc whose intensity grows (bright rim) or falls (soft centre) towards the edge, as spherical
  aberration does on either side of focus.

:class:`PSFShape` holds one draw of a family's parameters; :func:`sample_psf_shape` draws one from a
``torch.Generator``; :class:`FamilyPSFBank` is a :class:`~defocusgan_hf.data.psf.DualPixelPSFBank` whose combined
PSF is the drawn shape (the DP split, with its own random softness and fall-off, is applied as for Eq. 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..models.blur_kernel import butterworth_disc_kernel
from .psf import DualPixelPSFBank, aperture_masks

PSF_FAMILIES = ("eq3", "disc", "gaussian", "polygon", "cat_eye", "spherical")
SUPERSAMPLING = 4


@dataclass(frozen=True)
class PSFShape:
    """One PSF family with its parameters (all dimensionless, relative to the CoC radius)."""

    family: str = "disc"
    edge: float = 0.1
    """disc / polygon / cat_eye / spherical: width of the edge ramp, as a fraction of the radius."""
    sigma: float = 0.5
    """gaussian: standard deviation as a fraction of the radius."""
    blades: int = 6
    rotation: float = 0.0
    """polygon: number of blades and rotation (radians); cat_eye: the axis of the lens shape."""
    overlap: float = 0.7
    """cat_eye: distance between the two discs' centres, as a fraction of the radius (0 = a full disc)."""
    rim: float = 0.0
    """spherical: intensity ``1 + rim * (ρ² - 1/2)`` inside the disc; > 0 bright rim, < 0 soft centre."""
    order: int = 3
    cutoff: float = 2.5
    beta: float = 0.1
    smoothing: int = 7
    """eq3: Butterworth order, cut-off factor, β and Gaussian smoothing (the paper's: 3, 2.5, 0.1, 7)."""

    def __post_init__(self):
        if self.family not in PSF_FAMILIES:
            raise ValueError(f"Unknown PSF family {self.family!r}; choose from {PSF_FAMILIES}.")

    def to_dict(self) -> dict:
        return asdict(self)


def _ramp(distance: torch.Tensor, edge: float) -> torch.Tensor:
    """1 inside (``distance < 1``), 0 outside, a linear ramp of width ``edge`` centred on the boundary."""
    if edge <= 1e-6:
        return (distance <= 1).double()
    return ((1 + edge / 2 - distance) / edge).clamp(0, 1)


def _aperture(shape: PSFShape, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    rho = torch.sqrt(u * u + v * v)
    if shape.family == "disc":
        return _ramp(rho, shape.edge)
    if shape.family == "gaussian":
        return torch.exp(-(rho**2) / (2 * shape.sigma**2))
    if shape.family == "polygon":
        n = int(shape.blades)
        phi = torch.atan2(v, u) - shape.rotation
        sector = torch.remainder(phi, 2 * math.pi / n) - math.pi / n
        boundary = math.cos(math.pi / n) / torch.cos(sector)  # distance to the polygon's edge, circumradius 1
        return _ramp(rho / boundary, shape.edge)
    if shape.family == "cat_eye":
        c, s = math.cos(shape.rotation), math.sin(shape.rotation)
        along = u * c + v * s
        across = -u * s + v * c
        d = shape.overlap / 2
        first = torch.sqrt((along - d) ** 2 + across**2)
        second = torch.sqrt((along + d) ** 2 + across**2)
        return _ramp(first, shape.edge) * _ramp(second, shape.edge)
    if shape.family == "spherical":
        return _ramp(rho, shape.edge) * (1 + shape.rim * (rho.clamp(max=1) ** 2 - 0.5)).clamp_min(0)
    raise ValueError(f"No aperture function for {shape.family!r}.")


def support(radius: float, shape: PSFShape) -> int:
    """Odd kernel side in pixels that holds the PSF of ``radius`` px."""
    reach = radius * (3 * shape.sigma if shape.family == "gaussian" else 1 + shape.edge / 2)
    if shape.family == "eq3":
        reach = radius + 2 * shape.smoothing / 7 + 1
    return 2 * int(math.ceil(reach)) + 3


def _delta(size: int) -> torch.Tensor:
    kernel = torch.zeros(size, size)
    kernel[size // 2, size // 2] = 1
    return kernel


def combined_psf(radius: float, shape: PSFShape) -> torch.Tensor:
    """``(K, K)`` float32 PSF of CoC radius ``radius`` px (``K = support(radius, shape)``), summing to 1.

    A radius below 1/8 px is a delta."""
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"`radius` must be a finite number of pixels >= 0, got {radius}.")
    size = support(radius, shape)
    if radius < 0.125:
        return _delta(size)
    if shape.family == "eq3":
        kernel = butterworth_disc_kernel(
            radius, size, order=shape.order, cutoff_factor=shape.cutoff, beta=shape.beta, smoothing=shape.smoothing
        ).double()
        return (kernel / kernel.sum()).float()
    fine = size * SUPERSAMPLING
    x = (torch.arange(fine, dtype=torch.float64) + 0.5) / SUPERSAMPLING - size / 2
    v, u = torch.meshgrid(x, x, indexing="ij")
    fine_kernel = _aperture(shape, u / radius, v / radius)
    kernel = F.avg_pool2d(fine_kernel[None, None], SUPERSAMPLING)[0, 0]
    total = kernel.sum()
    if not total > 0:  # a radius far below the grid: fall back to the delta
        return _delta(size)
    return (kernel / total).float()


def sample_psf_shape(generator: torch.Generator, families: Sequence[str] = PSF_FAMILIES) -> PSFShape:
    """Draw a family (uniformly among ``families``) and its parameters from ``generator``."""
    if not families or any(f not in PSF_FAMILIES for f in families):
        raise ValueError(f"`families` must be a non-empty subset of {PSF_FAMILIES}, got {tuple(families)}.")
    draws = torch.rand(8, generator=generator, device=generator.device).tolist()
    family = families[min(int(draws[0] * len(families)), len(families) - 1)]
    return PSFShape(
        family=family,
        edge=0.5 * draws[1] ** 2,  # mostly crisp edges, some soft
        sigma=0.35 + 0.25 * draws[2],
        blades=5 + min(int(draws[3] * 5), 4),
        rotation=2 * math.pi * draws[4],
        overlap=0.3 + 0.6 * draws[5],
        rim=-0.9 + 1.8 * draws[6],
        order=[1, 2, 3, 4, 6][min(int(draws[7] * 5), 4)],
        cutoff=1.5 + 2.0 * draws[5],
        beta=0.05 + 0.2 * draws[2],
        smoothing=int(3 + 8 * draws[1]),
    )


@lru_cache(maxsize=4096)
def _view_psfs(
    radius: float, shape: PSFShape, softness: float, falloff: float, offset: float, vertical: bool
) -> torch.Tensor:
    combined = combined_psf(abs(radius), shape)
    if radius == 0:
        return torch.stack([combined, combined])
    m_left, m_right = aperture_masks(combined.shape[-1], abs(radius), softness, falloff, offset)
    if vertical:  # the split runs along y: the first view sees the top half-aperture
        m_left, m_right = m_left.T, m_right.T
    left, right = combined * m_left, combined * m_right
    left, right = left / left.sum().clamp_min(1e-12), right / right.sum().clamp_min(1e-12)
    return torch.stack([left, right] if radius > 0 else [right, left])


class FamilyPSFBank(DualPixelPSFBank):
    """DP PSFs of one :class:`PSFShape` on the grid of signed radii (see :class:`DualPixelPSFBank`).

    ``offset`` moves the split off centre (unequal half-apertures, :func:`aperture_masks`); ``vertical`` splits
    the aperture top/bottom instead of left/right (many phone sensors)."""

    def __init__(
        self,
        shape: PSFShape,
        max_coc: float = 25.0,
        step: float = 1.0,
        softness: float = 0.15,
        falloff: float = 0.3,
        offset: float = 0.0,
        vertical: bool = False,
    ):
        super().__init__(max_coc, step, softness, falloff)
        self.shape, self.offset, self.vertical = shape, float(offset), bool(vertical)

    def view_psfs(self, radius: float) -> torch.Tensor:
        return _view_psfs(
            round(radius, 6), self.shape, float(self.softness), float(self.falloff), self.offset, self.vertical
        )


__all__ = ["PSF_FAMILIES", "FamilyPSFBank", "PSFShape", "combined_psf", "sample_psf_shape", "support"]
