"""Random layered depth layouts for synthetic dual-pixel scenes, drawn in batches with a ``torch.Generator``.

A scene is a stack of ``L`` layers ordered **far to near** (layer 0 is the opaque background). Each layer has an
alpha mask (its silhouette, anti-aliased) and a signed CoC field in pixels defined over the whole image (only
where the mask is non-zero does it matter). CoC comes from a thin-lens model in inverse depth ``rho``
(0 = infinity, 1 = the nearest object)::

    coc = A * (rho_focus - rho),    clipped to [-max_coc, max_coc]

so ``coc > 0`` behind the focal plane (far) and ``coc < 0`` in front of it (near); ``A`` (pixels) plays the role of
the aperture. Layers are fronto-parallel (constant ``rho``), slanted planes (``rho`` linear in x and y) or smooth
ramps (``rho`` changing along a direction through a smoothstep), which gives in-focus regions, both sides of focus,
sharp depth edges at silhouettes and gradual transitions inside layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DualPixelScene:
    """A batch of layered scenes.

    Args:
        alpha: ``(B, L, 1, H, W)`` layer masks in [0, 1], far to near; layer 0 is all ones. Unused layers are 0.
        coc: ``(B, L, 1, H, W)`` signed CoC radius of each layer in pixels (positive = behind focus).
        num_layers: ``(B,)`` number of layers each scene uses (2..L).
        focus: ``(B,)`` inverse depth of the focal plane; ``aperture``: ``(B,)`` the CoC scale ``A`` in pixels.
    """

    alpha: torch.Tensor
    coc: torch.Tensor
    num_layers: torch.Tensor
    focus: torch.Tensor
    aperture: torch.Tensor

    def composite_coc(self) -> torch.Tensor:
        """Ground-truth ``(B, 1, H, W)`` signed CoC of the all-in-focus view: the layers' CoC composited with
        their (unblurred) masks, far to near, like the sharp image."""
        out = self.coc[:, 0]
        for layer in range(1, self.alpha.shape[1]):
            a = self.alpha[:, layer]
            out = a * self.coc[:, layer] + (1 - a) * out
        return out.clamp(float(self.coc.min()), float(self.coc.max()))  # no rounding beyond the layers' range


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * _rand(generator, *shape)


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0, 1)
    return t * t * (3 - 2 * t)


def _antialias(field: torch.Tensor) -> torch.Tensor:
    """Inside-positive field ``(N, 1, H, W)`` -> coverage in [0, 1] with a one-pixel anti-aliased edge.

    ``0.5 + f / |grad f|`` is the signed distance to the zero level in pixels, clamped: an exact box filter for
    straight edges, whatever the field's scale.
    """
    gy, gx = torch.gradient(field, dim=(-2, -1))
    return (0.5 + field / torch.sqrt(gx**2 + gy**2).clamp_min(1e-6)).clamp(0, 1)


def _shape_masks(
    generator: torch.Generator, n: int, height: int, width: int, device, wanted: torch.Tensor | None = None
) -> torch.Tensor:
    """``(n, 1, H, W)`` random object silhouettes: ellipses, (thin) rotated rectangles and organic blobs.

    Every draw is made for all ``n``; only the masks in ``wanted`` (``(n,)`` bool, default all) are computed, each
    with its own kind's field (the others stay zero): the same masks for less work."""
    g = generator
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height - 0.5
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width - 0.5
    aspect = width / height
    yy, xx = torch.meshgrid(ys, xs * aspect, indexing="ij")  # square units: height = 1
    kind = (_rand(g, n) * 3).long().to(device)  # 0 ellipse, 1 rectangle, 2 blob
    cy = _uniform(g, -0.45, 0.45, n).to(device).view(n, 1, 1)
    cx = (_uniform(g, -0.45, 0.45, n).to(device) * aspect).view(n, 1, 1)
    angle = _uniform(g, 0, math.pi, n).to(device).view(n, 1, 1)
    size = (0.05 + 0.3 * _rand(g, n) ** 1.5).to(device).view(n, 1, 1)  # half-extent, in image heights
    elongation = torch.where(
        kind.view(n, 1, 1) == 1,
        _uniform(g, 0.08, 1.0, n).to(device).view(n, 1, 1),
        _uniform(g, 0.4, 1.0, n).to(device).view(n, 1, 1),
    )
    noise_draw = _uniform(g, -1, 1, n, 1, 5, 5).to(device)
    masks = torch.zeros(n, 1, height, width, device=device)
    wanted = torch.ones(n, dtype=torch.bool, device=device) if wanted is None else wanted.to(device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    for k in range(3):
        which = ((kind == k) & wanted).nonzero()[:, 0]
        if which.numel() == 0:
            continue
        c, s = cos[which], sin[which]
        dy, dx = yy - cy[which], xx - cx[which]
        u = (dx * c + dy * s) / size[which]
        v = (-dx * s + dy * c) / (size[which] * elongation[which])
        if k == 0:
            field = 1 - torch.sqrt(u**2 + v**2 + 1e-12)
        elif k == 1:
            field = torch.minimum(1 - u.abs(), elongation[which] * (1 - v.abs()))
        else:  # a blob: an ellipse whose boundary is pushed in and out by smooth random noise (a few bumps)
            noise = F.interpolate(noise_draw[which], size=(height, width), mode="bicubic", align_corners=False)[:, 0]
            field = 1 - (u**2 + v**2) + 0.6 * noise
        masks[which] = _antialias(field[:, None])
    return masks


def histogram_edges(bins: tuple[tuple[float, float], ...]) -> tuple[list[float], list[float]]:
    """Bin edges (px) and normalised weights of ``(radius_px, weight)`` bins: the radii sorted, edges halfway
    between neighbours, the outer edges as far out as the nearest inner one (the lowest kept above 0)."""
    ordered = sorted((float(r), float(w)) for r, w in bins)
    radii, weights = [r for r, _ in ordered], [w for _, w in ordered]
    if len(radii) == 1:
        return [radii[0], radii[0]], [1.0]
    inner = [(a + b) / 2 for a, b in zip(radii, radii[1:], strict=False)]
    low = max(2 * radii[0] - inner[0], radii[0] / 2)
    high = 2 * radii[-1] - inner[-1]
    total = sum(weights)
    return [low, *inner, high], [w / total for w in weights]


def sample_from_histogram(generator: torch.Generator, bins: tuple[tuple[float, float], ...], n: int) -> torch.Tensor:
    """``(n,)`` values (px) from the piecewise-uniform density of ``bins`` (:func:`histogram_edges`)."""
    edges, weights = histogram_edges(bins)
    edges_t = torch.tensor(edges, dtype=torch.float64)
    cdf = torch.tensor(weights, dtype=torch.float64).cumsum(0)
    pick, within = _rand(generator, n, 2).cpu().double().unbind(1)
    index = torch.searchsorted(cdf, pick * cdf[-1], right=True).clamp(max=len(weights) - 1)
    return (edges_t[index] + within * (edges_t[index + 1] - edges_t[index])).float()


def sample_scene(
    batch_size: int,
    height: int,
    width: int,
    generator: torch.Generator,
    max_coc: float = 25.0,
    num_layers: tuple[int, int] = (2, 5),
    aperture_range: tuple[float, float] = (2.0, 60.0),
    in_focus_prob: float = 0.6,
    device: torch.device | str | None = None,
    coc_histogram: tuple[tuple[float, float], ...] | None = None,
    histogram_generator: torch.Generator | None = None,
) -> DualPixelScene:
    """Draw ``batch_size`` random layered scenes of ``height`` x ``width`` pixels.

    Args:
        generator: all randomness comes from it (on its own device; results are moved to ``device``).
        max_coc: |CoC| is clipped to this many pixels.
        num_layers: inclusive range of the number of layers, background included (2..5 by default).
        aperture_range: the CoC scale ``A`` (pixels) is drawn log-uniformly from this range; above ``max_coc``
            it saturates parts of the scene at ``max_coc``.
        in_focus_prob: probability that the focal plane passes through one of the layers (at a random pixel of
            it), so that the scene has an in-focus region; otherwise the focus distance is uniform.
        coc_histogram: ``(radius_px, weight)`` bins; given, ``A`` is drawn from them (:func:`sample_from_histogram`,
            with ``histogram_generator``, default ``generator``, after every other draw) instead of
            ``aperture_range``. The log-uniform draw is still made, so the rest of the scene stays the same.
    """
    low, high = num_layers
    if not 1 <= low <= high <= 16:
        raise ValueError(f"`num_layers` must be an increasing pair within 1..16, got {num_layers}.")
    if not 0 < aperture_range[0] <= aperture_range[1]:
        raise ValueError(f"`aperture_range` must be an increasing pair of positive pixels, got {aperture_range}.")
    g, B, L = generator, batch_size, high
    device = torch.device(device) if device is not None else generator.device
    count = (low + (_rand(g, B) * (high - low + 1)).long().clamp(max=high - low)).to(device)  # (B,)
    layer_index = torch.arange(L, device=device)
    used = layer_index[None] < count[:, None]  # (B, L)

    # Inverse depths: background farthest, then increasing towards the camera.
    rho = _rand(g, B, L).to(device).sort(dim=1).values
    rho[:, 0] *= 0.6
    # Per-layer geometry: constant, slanted plane or smooth ramp (background: any; objects: mostly constant).
    kind_draw = _rand(g, B, L).to(device)
    is_background = (layer_index == 0)[None]
    slanted = torch.where(is_background, kind_draw < 0.35, kind_draw < 0.25)
    ramp = torch.where(is_background, kind_draw > 0.65, kind_draw > 0.9)
    slope = _uniform(g, -0.5, 0.5, B, L, 2).to(device) * torch.where(is_background, 1.0, 0.4)[..., None]
    ramp_angle = _uniform(g, 0, 2 * math.pi, B, L).to(device)
    ramp_amp = _uniform(g, -0.6, 0.6, B, L).to(device)
    ramp_center = _uniform(g, -0.3, 0.3, B, L).to(device)
    ramp_width = _uniform(g, 0.05, 0.6, B, L).to(device)

    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height - 0.5
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width - 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W)
    # rho + plane (slanted layers) + ramp (ramped layers), each term computed only where it is used (adding an
    # unused term's zero changes no bit).
    rho_field = rho[..., None, None].expand(B, L, height, width).clone()
    for b, layer in slanted.nonzero().tolist():
        rho_field[b, layer] += slope[b, layer, 0] * xx + slope[b, layer, 1] * yy
    cos, sin = torch.cos(ramp_angle), torch.sin(ramp_angle)
    for b, layer in ramp.nonzero().tolist():
        along = xx * cos[b, layer] + yy * sin[b, layer] - ramp_center[b, layer]
        rho_field[b, layer] += ramp_amp[b, layer] * (_smoothstep(0.5 + along / ramp_width[b, layer]) - 0.5)

    # Silhouettes of the objects (layers >= 1); the background covers everything.
    alpha = torch.zeros(B, L, height, width, device=device)
    alpha[:, 0] = 1
    if L > 1:
        wanted = used[:, 1:].reshape(-1)  # masks of layers a scene does not use are zero below: not computed
        alpha[:, 1:] = _shape_masks(g, B * (L - 1), height, width, device, wanted).view(B, L - 1, height, width)
    alpha = alpha * used[..., None, None]

    # Focus: through a random pixel of a random used layer, or uniform in inverse depth.
    pick_layer = (_rand(g, B).to(device) * count).long().clamp(max=L - 1)
    flat = (alpha[torch.arange(B, device=device), pick_layer] > 0.5).flatten(1).float() + 1e-6
    pixel = torch.multinomial(flat.to(g.device), 1, generator=g)[:, 0].to(device)
    rho_at_pixel = rho_field[torch.arange(B, device=device), pick_layer].flatten(1).gather(1, pixel[:, None])[:, 0]
    through_layer = _rand(g, B).to(device) < in_focus_prob
    focus = torch.where(through_layer, rho_at_pixel, _rand(g, B).to(device))
    log_a = _uniform(g, math.log(aperture_range[0]), math.log(aperture_range[1]), B).to(device)
    aperture = log_a.exp()
    if coc_histogram is not None:
        aperture = sample_from_histogram(histogram_generator or g, coc_histogram, B).to(device)

    coc = (aperture[:, None, None, None] * (focus[:, None, None, None] - rho_field)).clamp(-max_coc, max_coc)
    return DualPixelScene(alpha[:, :, None], coc[:, :, None], count, focus, aperture)
