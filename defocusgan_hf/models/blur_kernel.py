"""Eq. 3 of the paper: the initial defocus blur kernel B_init and the learnable kernel bank.

B(x, y) = (1 + (D0 / d)^(2n))^-1 ∘ C  — a Butterworth high-pass weighting of a disc C of radius r
(Abuolaim et al., ICCV 2021, "RDPD"), then B_init = G(κ) * B, a Gaussian smoothing.

Defaults follow the authors' released code (see ``shared/reference/facts.md``):

* ``order`` n = 3, the Butterworth filter order;
* ``cutoff_factor`` = 2.5: the cut-off is D0 = r / 2.5, so the inner 40 % of the disc is attenuated
  (real defocus PSFs are brighter at the rim than at the centre);
* ``beta`` = 0.1: the floor of the high-pass weight, so the centre of the disc keeps 10 % of the rim's light;
* ``smoothing`` κ = 7: the Gaussian window is κ×κ px with σ = κ / 6 (three-sigma rule). σ shrinks linearly
  for r < 1 so that r = 0 is an exact delta (a zero CoC map must return the sharp image untouched).

All kernels are returned on a common square support of ``kernel_size(max_radius)`` pixels, normalised to
sum 1, indexed by integer CoC radius 0..max_radius (pixels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

# diffusers' pipeline loader looks `ModelMixin` up in the module that defines a component: keep it importable here.
from .modeling_utils import ModelMixin, StrictConfigModel  # noqa: F401

DEFAULT_MAX_RADIUS = 25
BUTTERWORTH_ORDER = 3
BUTTERWORTH_CUTOFF_FACTOR = 2.5
BUTTERWORTH_BETA = 0.1
GAUSSIAN_SMOOTHING = 7


def kernel_size(max_radius: int = DEFAULT_MAX_RADIUS, smoothing: int = GAUSSIAN_SMOOTHING) -> int:
    """Side length (odd, pixels) of the support that holds every kernel up to ``max_radius``."""
    return 2 * (int(math.ceil(max_radius)) + smoothing // 2 + 1) + 1


def _radial_grid(size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    return torch.sqrt(coords[None, :] ** 2 + coords[:, None] ** 2)


def _gaussian_smooth(kernel: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of a ``(K, K)`` kernel, same size out."""
    if sigma <= 0:
        return kernel
    half = int(math.ceil(3 * sigma))
    taps = torch.arange(-half, half + 1, dtype=kernel.dtype, device=kernel.device)
    g = torch.exp(-(taps**2) / (2 * sigma**2))
    g = g / g.sum()
    k = kernel[None, None]
    k = F.conv2d(F.pad(k, (half, half, 0, 0)), g.view(1, 1, 1, -1))
    k = F.conv2d(F.pad(k, (0, 0, half, half)), g.view(1, 1, -1, 1))
    return k[0, 0]


def _check_radius(radius: float, size: int) -> None:
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"`radius` must be a finite number of pixels >= 0, got {radius}.")
    if 2 * radius + 1 > size:
        raise ValueError(f"A kernel of radius {radius} px does not fit a support of {size} px.")


def butterworth_disc_kernel(
    radius: float,
    size: int | None = None,
    order: int = BUTTERWORTH_ORDER,
    cutoff_factor: float = BUTTERWORTH_CUTOFF_FACTOR,
    beta: float = BUTTERWORTH_BETA,
    smoothing: int = GAUSSIAN_SMOOTHING,
) -> torch.Tensor:
    """B_init for one CoC ``radius`` (pixels, may be fractional): a ``(size, size)`` float32 kernel summing to 1.

    The disc edge is anti-aliased (coverage of each pixel), so the kernel changes continuously with ``radius``.
    """
    size = size or kernel_size(max(radius, 1.0), smoothing)
    _check_radius(radius, size)
    if radius == 0:
        return _delta(size)
    d = _radial_grid(size)
    disc = (radius + 0.5 - d).clamp(0.0, 1.0)
    cutoff = radius / cutoff_factor
    highpass = 1.0 / (1.0 + (cutoff / d.clamp_min(1e-6)) ** (2 * order))
    weight = beta + (1.0 - beta) * highpass
    sigma = smoothing / 6.0 * min(radius, 1.0)
    kernel = _gaussian_smooth(disc * weight, sigma)
    return kernel / kernel.sum()


def gaussian_kernel(radius: float, size: int | None = None, smoothing: int = GAUSSIAN_SMOOTHING) -> torch.Tensor:
    """The Gaussian baseline of Table 5: σ = radius / 2 px (a disc of radius r has σ ≈ r / 2), sum 1."""
    size = size or kernel_size(max(radius, 1.0), smoothing)
    _check_radius(radius, size)
    if radius == 0:
        return _delta(size)
    d = _radial_grid(size)
    kernel = torch.exp(-(d**2) / (2 * (radius / 2.0) ** 2))
    return kernel / kernel.sum()


def _delta(size: int) -> torch.Tensor:
    kernel = torch.zeros(size, size)
    kernel[size // 2, size // 2] = 1.0
    return kernel


KERNEL_FAMILIES = {"butterworth": butterworth_disc_kernel, "gaussian": gaussian_kernel}


def kernel_bank(
    max_radius: int = DEFAULT_MAX_RADIUS, family: str = "butterworth", size: int | None = None
) -> torch.Tensor:
    """``(max_radius + 1, K, K)`` fixed kernels for the integer radii 0..max_radius (pixels)."""
    if family not in KERNEL_FAMILIES:
        raise ValueError(f"Unknown kernel family {family!r}; choose one of {sorted(KERNEL_FAMILIES)}.")
    size = size or kernel_size(max_radius)
    return torch.stack([KERNEL_FAMILIES[family](float(r), size) for r in range(max_radius + 1)])


class LearnableBlurKernel(StrictConfigModel):
    """The learnable blur kernel B of Eq. 4, for both sides of the focal plane.

    ``forward()`` returns ``(num_sides, max_radius + 1, K, K)`` kernels, each non-negative and summing to 1,
    whatever values the optimiser gives the parameters. Radius 0 is always an exact delta. Side 0 serves a
    positive (behind-focus) CoC, side 1 a negative (in-front) one. At initialisation every kernel equals the
    fixed bank of ``init`` exactly.

    Args:
        max_radius: largest CoC radius in pixels (the paper's limit is 25).
        mode: ``"shared"`` (default): one learnable base shape per side, a log-gain map drawn at
            ``max_radius`` that multiplies every radius's initial kernel after being resampled
            (bilinearly, differentiably) to that radius, so that learning on any layer improves all of them.
            ``"bank"``: the released code's bank of independent per-radius kernels (softmax logits).
        init: ``"butterworth"`` (Eq. 3) or ``"gaussian"`` (Table 5's baseline).
        learnable: ``False`` freezes the kernels at their initial values (Table 5's fixed-kernel rows).
        num_sides: 2 for a signed map (separate kernels in front of / behind focus), 1 for an unsigned one.

    A Hub model like the networks: ``save_pretrained`` / ``from_pretrained`` store the learned kernel as data.
    """

    @register_to_config
    def __init__(
        self,
        max_radius: int = DEFAULT_MAX_RADIUS,
        mode: str = "shared",
        init: str = "butterworth",
        learnable: bool = True,
        num_sides: int = 2,
    ):
        super().__init__()
        if mode not in ("shared", "bank"):
            raise ValueError(f"`mode` must be 'shared' or 'bank', got {mode!r}.")
        if init not in KERNEL_FAMILIES:
            raise ValueError(f"`init` must be one of {sorted(KERNEL_FAMILIES)}, got {init!r}.")
        if num_sides not in (1, 2):
            raise ValueError(f"`num_sides` must be 1 or 2, got {num_sides}.")
        if not 1 <= max_radius <= 64:
            raise ValueError(f"`max_radius` must be in 1..64 pixels, got {max_radius}.")
        self.max_radius, self.mode, self.init, self.num_sides = max_radius, mode, init, num_sides
        self.size = kernel_size(max_radius)
        initial = kernel_bank(max_radius, init, self.size)  # (R + 1, K, K)
        self.register_buffer("initial", initial, persistent=False)
        if mode == "shared":
            self.log_gain = nn.Parameter(torch.zeros(num_sides, self.size, self.size), requires_grad=learnable)
            self.register_buffer("_grid", self._shared_grid(), persistent=False)
        else:
            logits = initial[1:].clamp_min(1e-8).log().expand(num_sides, -1, -1, -1).clone()
            self.logits = nn.Parameter(logits, requires_grad=learnable)

    def _shared_grid(self) -> torch.Tensor:
        """``(R, K, K, 2)`` grid_sample coordinates: radius r's pixel at offset p reads the base at p * R / r."""
        size, R = self.size, self.max_radius
        offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        yy, xx = torch.meshgrid(offsets, offsets, indexing="ij")
        base = torch.stack([xx, yy], dim=-1) / (size / 2)  # align_corners=False: pixel centres of the base
        scale = R / torch.arange(1, R + 1, dtype=torch.float32)
        return base[None] * scale.view(R, 1, 1, 1)

    def forward(self) -> torch.Tensor:
        sides, size, R = self.num_sides, self.size, self.max_radius
        if self.mode == "shared":
            gain = self.log_gain[:, None].repeat_interleave(R, dim=0)  # (S*R, 1, K, K)
            grid = self._grid.repeat(sides, 1, 1, 1)
            gain = F.grid_sample(gain, grid, mode="bilinear", padding_mode="border", align_corners=False)
            # initial * exp(gain), normalised: a softmax in log space cannot overflow whatever the gain.
            logits = self.initial[1:].clamp_min(1e-30).log() + gain.view(sides, R, size, size)
            positive = torch.softmax(logits.flatten(-2), dim=-1).view(sides, R, size, size)
        else:
            positive = torch.softmax(self.logits.flatten(-2), dim=-1).view_as(self.logits)
        delta = self.initial[:1].expand(sides, 1, size, size)
        return torch.cat([delta, positive], dim=1)

    def extra_repr(self) -> str:
        return f"max_radius={self.max_radius}, mode={self.mode!r}, init={self.init!r}, sides={self.num_sides}"
