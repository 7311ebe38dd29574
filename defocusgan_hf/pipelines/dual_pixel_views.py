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
- **Channels.** Single-channel (grey or green) views, as phones give them, are repeated to the net's three
  channels by the image conversion (:func:`~defocusgan_hf.image_io.to_tensor`); the map does not change.
- **Tone.** The net was trained on gamma-encoded views, like photos. Raw DP views are linear. ``linear=True`` views
  are gamma-encoded (``x ** (1 / 2.2)``) before the net; ``linear=None`` decides from the combined image when one
  is given (:func:`detect_linear`): in linear light ``combined = (L + R) / 2``, gamma-encoded
  ``combined = ((L ** 2.2 + R ** 2.2) / 2) ** (1 / 2.2)``. Without a combined image, or when the fit cannot tell,
  the views are taken as gamma-encoded (as photos are), and the convention says it was assumed.
- **Small disparities.** A phone's DP baseline gives disparities of a few pixels at most; split detection tries
  shifts of up to 3 px, enough for them.

:func:`prepare_views` applies these and returns a :class:`DualPixelConvention` that says which convention was used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

SPLITS = ("horizontal", "vertical")
GAMMA = 2.2
"""Gamma of the views' tone curve: gamma-encoded ``= linear ** (1 / GAMMA)``."""
LINEAR_DECISIONS = ("given", "detected", "assumed")


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
        linear: whether the views were linear (then gamma-encoded before the net) rather than gamma-encoded.
        linear_decision: how ``linear`` was decided: ``"given"`` by the caller, ``"detected"`` from the combined
            image (:func:`detect_linear`), or ``"assumed"`` gamma-encoded (no combined image, or the fit was unsure).
        linear_fit: the fit of :func:`detect_linear` (0: linear, 1: gamma-encoded) when one was made, else ``None``.
    """

    split: str
    detected: bool
    match_gain: dict[str, float] = field(default_factory=dict)
    brightness_ratio: tuple[float, float] = (1.0, 1.0)
    symmetric: bool = False
    linear: bool = False
    linear_decision: str = "assumed"
    linear_fit: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        how = "detected from the views' disparity" if self.detected else "as given"
        low, high = self.brightness_ratio
        sign = "; sign from both view orders (swapping the views flips it)" if self.symmetric else ""
        return (
            f"{self.split} split ({how}); {self.describe_tone()}; brightness ratio between the views "
            f"{low:.3f}–{high:.3f} balanced{sign}"
        )

    def describe_tone(self) -> str:
        """Which tone convention the views had and how that was decided, in words."""
        tone = f"linear views, gamma-encoded (x^(1/{GAMMA:g})) before the net" if self.linear else "gamma-encoded views"
        fit = "" if self.linear_fit is None else f", fit {self.linear_fit:.2f} (0 linear, 1 gamma)"
        how = {
            "given": "as given",
            "detected": f"detected from the combined image{fit}",
            "assumed": f"assumed (no combined image, or it could not tell{fit})",
        }[self.linear_decision]
        return f"{tone} ({how})"


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


def gamma_encode(linear):
    """Linear light in [0, 1] (tensor or array, any shape) -> gamma-encoded ``x ** (1 / GAMMA)``, clipped to [0, 1]."""
    return linear.clip(0, 1) ** (1 / GAMMA)


def detect_linear(
    left: torch.Tensor, right: torch.Tensor, combined: torch.Tensor, max_stderr: float = 0.1
) -> tuple[bool | None, float | None]:
    """``(linear, fit)`` for DP views and their combined image, ``(B, C, H, W)`` tensors of one shape in [0, 1], as
    stored.

    With ``A = (L + R) / 2`` and ``M = ((L^γ + R^γ) / 2)^(1/γ)`` (γ = :data:`GAMMA`), stored linear views give
    ``combined = A`` and gamma-encoded ones ``combined = M``. ``M >= A`` (a power mean), with equality only where
    ``L = R``; the least-squares ``fit`` of ``combined - A = fit · (M - A)`` over all pixels is 0 for linear views and
    1 for gamma-encoded ones. ``linear`` is ``True`` for ``fit < 0.25``, ``False`` for ``fit > 0.75``, ``None`` when
    undecided: a fit in between, or a standard error above ``max_stderr`` (views too alike, or the combined image
    too noisy, for ``M - A`` to show); ``fit`` is ``None`` where the views are identical."""
    if not left.shape == right.shape == combined.shape:
        raise ValueError(
            f"`left`, `right` and `combined` must be one shape, got {tuple(left.shape)}, {tuple(right.shape)}, "
            f"{tuple(combined.shape)}."
        )
    a, b, c = (x.double().clamp(0, 1) for x in (left, right, combined))  # per channel: each has its own tone
    arithmetic = (a + b) / 2
    power = ((a**GAMMA + b**GAMMA) / 2) ** (1 / GAMMA)
    signal, observed = (power - arithmetic).flatten(), (c - arithmetic).flatten()
    energy = float((signal**2).sum())
    if energy <= signal.numel() * 1e-14:  # M - A below 1e-7 rms: the views are the same (up to rounding)
        return None, None
    fit = float((observed * signal).sum()) / energy
    residual = observed - fit * signal
    stderr = (float((residual**2).sum()) / max(residual.numel() - 1, 1) / energy) ** 0.5
    if stderr > max_stderr:
        return None, fit
    return (True if fit < 0.25 else False if fit > 0.75 else None), fit


def resolve_linear(
    linear: bool | None, left: torch.Tensor, right: torch.Tensor, combined: torch.Tensor | None = None
) -> tuple[bool, str, float | None]:
    """``(linear, decision, fit)``: ``linear`` as given, else detected from ``combined`` (:func:`detect_linear`),
    else assumed gamma-encoded; ``decision`` is one of :data:`LINEAR_DECISIONS`."""
    if linear is not None:
        return bool(linear), "given", None
    if combined is None:
        return False, "assumed", None
    found, fit = detect_linear(left, right, combined)
    return (False, "assumed", fit) if found is None else (found, "detected", fit)


def prepare_views(
    left: torch.Tensor,
    right: torch.Tensor,
    split: str = "auto",
    balance: bool = True,
    linear: bool | None = None,
    combined: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, DualPixelConvention]:
    """Views ``(B, 3, H, W)`` in [0, 1] -> the views in the net's convention (gamma-encoded; horizontal split, a
    vertical pair returned transposed, ``(B, 3, W, H)``), and the :class:`DualPixelConvention` used.

    ``linear``: whether the views are linear light (``None``: :func:`resolve_linear`, from ``combined`` ``(B, C, H,
    W)``, the stored combined image, when given)."""
    if split not in ("auto", *SPLITS):
        raise ValueError(f"`split` must be 'auto', 'horizontal' or 'vertical', got {split!r}.")
    linear, decision, fit = resolve_linear(linear, left, right, combined)
    if linear:
        left, right = gamma_encode(left), gamma_encode(right)
    gains: dict[str, float] = {}
    detected = split == "auto"
    if detected:
        split, gains = detect_split(left, right)
    ratio = (1.0, 1.0)
    if balance:
        left, right, ratio = balance_brightness(left, right)
    if split == "vertical":
        left, right = left.transpose(-2, -1), right.transpose(-2, -1)
    return left, right, DualPixelConvention(split, detected, gains, ratio, False, linear, decision, fit)


def swap_symmetric(forward: torch.Tensor, swapped: torch.Tensor) -> torch.Tensor:
    """A signed map that flips sign exactly when the views are swapped, from ``forward = f(left, right)`` and
    ``swapped = f(right, left)``: the magnitude is their mean ``|CoC|``, the sign that of ``forward - swapped``.

    Swapping the half-apertures mirrors near and far (the views' disparity changes sign), so a map net should be
    antisymmetric in its two inputs; a net that is not (one trained on one camera's convention) still gives
    ``|CoC|`` from both orders, and the sign from the part of its answer that changes with the order."""
    return torch.sign(forward - swapped) * (forward.abs() + swapped.abs()) / 2


__all__ = [
    "GAMMA",
    "LINEAR_DECISIONS",
    "SPLITS",
    "DualPixelConvention",
    "balance_brightness",
    "detect_linear",
    "detect_split",
    "gamma_encode",
    "prepare_views",
    "resolve_linear",
    "swap_symmetric",
]
