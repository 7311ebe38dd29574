"""Real dual-pixel (DP) view conventions: split direction, brightness balance, and what was done.

Real DP captures differ from the synthetic engine's in ways the stage-1 net should not have to learn:

- **Split direction.** DSLRs (DPDD's Canon) split each pixel left/right, so the views' disparity runs along x; many
  phones split top/bottom. :func:`detect_split` finds the axis along which shifting one view onto the other
  explains it best (block matching of the high-passed views, integer shifts up to ``max_shift`` px). A vertical
  pair is transposed before the net (which was trained on horizontal splits) and the map transposed back; the
  first view is then the one that would be "left" after a quarter turn (top view = left).
- **Brightness.** Each half-aperture vignettes differently, so one view is brighter on one side of the frame.
  :func:`balance_brightness` fits a smooth (quadratic in x, y) surface to the log-ratio of the two views' low-passed
  luminance and divides it out symmetrically (the product of the views, hence most of their mean, is kept).
- **Channels.** Single-channel (grey or green) views are repeated to three channels by the image conversion.

:func:`prepare_views` applies these and returns a :class:`DualPixelConvention` that says which convention was used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

SPLITS = ("horizontal", "vertical")


@dataclass
class DualPixelConvention:
    """What :func:`prepare_views` used and did.

    Args:
        split: ``"horizontal"`` (disparity along x, e.g. DSLRs) or ``"vertical"`` (along y, e.g. many phones).
        detected: whether ``split`` was detected from the views (``False``: given by the caller).
        match_gain: per axis, the fraction of the views' mean squared difference that the best local shift along
            that axis removes (what the detection compared); empty when the split was given.
        brightness_ratio: ``(min, max)`` over the frame of the fitted left/right brightness ratio that was divided
            out (``(1, 1)`` when balancing was off).
        symmetric: whether the map was made swap-antisymmetric (:func:`swap_symmetric`), set by the pipeline.
    """

    split: str
    detected: bool
    match_gain: dict[str, float] = field(default_factory=dict)
    brightness_ratio: tuple[float, float] = (1.0, 1.0)
    symmetric: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        how = "detected from the views' disparity" if self.detected else "as given"
        low, high = self.brightness_ratio
        sign = "; sign from both view orders (swapping the views flips it)" if self.symmetric else ""
        return f"{self.split} split ({how}); brightness ratio between the views {low:.3f}–{high:.3f} balanced{sign}"


def _luminance(views: torch.Tensor) -> torch.Tensor:
    return views.mean(dim=1, keepdim=True)


def _analysis_scale(image: torch.Tensor, max_side: int = 512) -> torch.Tensor:
    """Area-downscale so that the longer side is at most ``max_side`` (detection needs no more)."""
    h, w = image.shape[-2:]
    factor = max(h, w) / max_side
    if factor <= 1:
        return image
    return F.interpolate(image, size=(max(8, round(h / factor)), max(8, round(w / factor))), mode="area")


def detect_split(
    left: torch.Tensor, right: torch.Tensor, max_shift: int = 3, block: int = 16
) -> tuple[str, dict[str, float]]:
    """``("horizontal" | "vertical", {axis: match gain})`` for views ``(B, C, H, W)`` in [0, 1].

    For each axis, every pixel's local error ``box(|L - shift_s(R)|²)`` (``block`` px box) is minimised over the
    integer shifts ``|s| <= max_shift``; the match gain is how much of the unshifted error that removes. The
    split runs along the axis of the larger gain (ties and pairs without disparity: horizontal)."""
    a = _analysis_scale(_luminance(left.float()))
    b = _analysis_scale(_luminance(right.float()))
    a = a - F.avg_pool2d(a, 5, 1, 2, count_include_pad=False)  # high-pass: disparity lives in the edges
    b = b - F.avg_pool2d(b, 5, 1, 2, count_include_pad=False)
    m = max_shift
    if min(a.shape[-2:]) <= 2 * m + block:
        return "horizontal", {"horizontal": 0.0, "vertical": 0.0}

    def local_error(shifted: torch.Tensor) -> torch.Tensor:
        diff = (a - shifted)[..., m:-m, m:-m] ** 2
        return F.avg_pool2d(diff, block, 1, block // 2, count_include_pad=False)

    base = local_error(b)
    gains = {}
    for axis, dim in (("horizontal", -1), ("vertical", -2)):
        best = base
        for s in range(-m, m + 1):
            if s:
                best = torch.minimum(best, local_error(torch.roll(b, s, dims=dim)))
        gains[axis] = float(1 - best.mean() / base.mean().clamp_min(1e-12))
    split = "vertical" if gains["vertical"] > gains["horizontal"] else "horizontal"
    return split, gains


def balance_brightness(left: torch.Tensor, right: torch.Tensor, eps: float = 1e-3):
    """``(left', right', (min_ratio, max_ratio))``: the views with a smooth brightness ratio divided out.

    The log-ratio of the two views' luminance, low-passed to at most 32x32, is fitted per image by a quadratic
    surface in (x, y); each view is divided by ``exp(± fit / 2)``."""
    la = F.adaptive_avg_pool2d(_luminance(left.float()), (min(32, left.shape[-2]), min(32, left.shape[-1])))
    lb = F.adaptive_avg_pool2d(_luminance(right.float()), la.shape[-2:])
    ratio = torch.log(la + eps) - torch.log(lb + eps)  # (B, 1, h, w)
    weight = ((la > 0.02) & (lb > 0.02) & (la < 0.98) & (lb < 0.98)).float()  # ignore black and clipped cells

    def basis(h: int, w: int, device) -> torch.Tensor:
        y, x = torch.meshgrid(
            torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device), indexing="ij"
        )
        return torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y], dim=-1)  # (h, w, 6)

    coarse = basis(*ratio.shape[-2:], ratio.device).reshape(-1, 6)
    fine = basis(*left.shape[-2:], left.device).reshape(-1, 6)
    lefts, rights, lows, highs = [], [], [], []
    for i in range(left.shape[0]):
        w = weight[i].reshape(-1, 1)
        if float(w.sum()) < 12:  # too little usable area to fit six coefficients: leave the pair alone
            coefficients = torch.zeros(6, 1, device=left.device)
        else:
            # weighted least squares by the normal equations in float64 (lstsq's drivers are not bit-reproducible)
            a, y = (coarse * w).double(), (ratio[i].reshape(-1, 1) * w).double()
            coefficients = torch.linalg.solve(a.T @ a + 1e-9 * torch.eye(6, dtype=a.dtype), a.T @ y).float()
        surface = (fine @ coefficients).reshape(1, 1, *left.shape[-2:]).to(left.dtype)
        lefts.append(left[i : i + 1] * torch.exp(-surface / 2))
        rights.append(right[i : i + 1] * torch.exp(surface / 2))
        lows.append(float(torch.exp(surface.min())))
        highs.append(float(torch.exp(surface.max())))
    return torch.cat(lefts).clamp(0, 1), torch.cat(rights).clamp(0, 1), (min(lows), max(highs))


def prepare_views(
    left: torch.Tensor, right: torch.Tensor, split: str = "auto", balance: bool = True
) -> tuple[torch.Tensor, torch.Tensor, DualPixelConvention]:
    """Views ``(B, 3, H, W)`` in [0, 1] -> the views in the net's convention (horizontal split; a vertical pair is
    returned transposed, ``(B, 3, W, H)``), and the :class:`DualPixelConvention` used."""
    if split not in ("auto", *SPLITS):
        raise ValueError(f"`split` must be 'auto', 'horizontal' or 'vertical', got {split!r}.")
    gains: dict[str, float] = {}
    detected = split == "auto"
    if detected:
        split, gains = detect_split(left, right)
    ratio = (1.0, 1.0)
    if balance:
        left, right, ratio = balance_brightness(left, right)
    if split == "vertical":
        left, right = left.transpose(-2, -1), right.transpose(-2, -1)
    return left, right, DualPixelConvention(split, detected, gains, ratio)


def swap_symmetric(forward: torch.Tensor, swapped: torch.Tensor) -> torch.Tensor:
    """A signed map that flips sign exactly when the views are swapped, from ``forward = f(left, right)`` and
    ``swapped = f(right, left)``: the magnitude is their mean ``|CoC|``, the sign that of ``forward - swapped``.

    Swapping the half-apertures mirrors near and far (the views' disparity changes sign), so a map net should be
    antisymmetric in its two inputs; a net that is not (one trained on one camera's convention) still gives
    ``|CoC|`` from both orders, and the sign from the part of its answer that changes with the order."""
    return torch.sign(forward - swapped) * (forward.abs() + swapped.abs()) / 2


__all__ = ["SPLITS", "DualPixelConvention", "balance_brightness", "detect_split", "prepare_views", "swap_symmetric"]
