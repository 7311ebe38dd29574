"""Bright objects left in focus (``DualPixelConfig.in_focus_highlight_prob``): saturated discs, lamp shapes and
clusters of small point lights, drawn as one layer with CoC 0 on top of a scene, so that they are the same in the
input and in the target. Without them every bright disc of the training data is a bokeh disc, and a model can read
"blur" from appearance alone.

Shapes are signed-distance fields in pixels, anti-aliased by their pixel coverage ``clip(0.5 - d, 0, 1)``:

- ``disc``: radius 2-12 % of the image's shorter side;
- ``tube``: a capsule (a fluorescent tube, a street lamp), half-width 0.6-3.6 % of the side, 2-8 times as long;
- ``panel``: a rounded rectangle (a window, a screen, a lamp shade), half-sides 3-13 % of the side;
- ``points``: 3-16 small lights of radius 0.6-2 px, on a line (a string of lights) or scattered.

Colours are hues of any saturation at full sRGB value, made 1-4 times brighter than white in linear light, so
most of them clip to white in at least one channel, like real lamps.
"""

from __future__ import annotations

import colorsys
import math

import torch

HIGHLIGHT_KINDS = ("disc", "tube", "panel", "points")
MAX_OBJECTS = 4
MAX_POINTS = 16
GAIN_RANGE = (1.0, 4.0)
"""Brightness of the objects in linear light, relative to white (log-uniform)."""


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def _segment_distance(x, y, cx, cy, angle, half_length):
    """Distance (px) of the pixel centres ``x, y`` to a segment of half-length ``half_length`` through ``(cx, cy)``."""
    ux, uy = math.cos(angle), math.sin(angle)
    t = ((x - cx) * ux + (y - cy) * uy).clamp(-half_length, half_length)
    return torch.sqrt((x - cx - t * ux) ** 2 + (y - cy - t * uy) ** 2)


def _shape_distance(kind: str, d: list[float], x, y, side: float) -> torch.Tensor:
    """Signed distance (px, negative inside) of one object drawn with the uniform numbers ``d``."""
    cx, cy, angle = d[1] * x.shape[-1], d[2] * x.shape[-2], d[3] * math.pi
    if kind == "disc":
        radius = max(1.5, side * (0.02 + 0.10 * d[7]))
        return torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) - radius
    if kind == "tube":
        half_width = max(1.0, side * (0.006 + 0.03 * d[7]))
        return _segment_distance(x, y, cx, cy, angle, half_width * (2 + 6 * d[8])) - half_width
    if kind == "panel":
        a = side * (0.03 + 0.10 * d[7])
        b = a * (0.3 + 0.7 * d[8])
        corner = min(a, b) * 0.5 * d[9]
        u = ((x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)).abs() - (a - corner)
        v = (-(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)).abs() - (b - corner)
        outside = torch.sqrt(u.clamp_min(0) ** 2 + v.clamp_min(0) ** 2)
        return outside + torch.maximum(u, v).clamp_max(0) - corner
    # points: a string of lights along a line, or a scattered cluster
    count = min(3 + int(d[7] * (MAX_POINTS - 2)), MAX_POINTS)
    radius = 0.6 + 1.4 * d[9]
    spread = side * (0.05 + 0.2 * d[8])
    offsets = d[12:]
    distance = None
    for k in range(count):
        p, q = offsets[2 * k], offsets[2 * k + 1]
        if d[10] < 0.5:  # on a line, slightly wavy
            t = 2 * p - 1
            px = cx + spread * (t * math.cos(angle) - 0.1 * (2 * q - 1) * math.sin(angle))
            py = cy + spread * (t * math.sin(angle) + 0.1 * (2 * q - 1) * math.cos(angle))
        else:
            r, phi = spread * math.sqrt(p), 2 * math.pi * q
            px, py = cx + r * math.cos(phi), cy + r * math.sin(phi)
        point = torch.sqrt((x - px) ** 2 + (y - py) ** 2) - radius
        distance = point if distance is None else torch.minimum(distance, point)
    return distance


def in_focus_highlight_layer(
    generator: torch.Generator, batch_size: int, height: int, width: int, gamma: torch.Tensor, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(premultiplied, alpha)``: ``(B, 3, H, W)`` linear colour times coverage (values up to ``GAIN_RANGE[1]``)
    and ``(B, 1, H, W)`` coverage in [0, 1] of 1-4 bright objects per scene, for ``gamma`` ``(B,)`` (the sRGB-like
    curve the scene is linearised with). Composite with ``premultiplied + (1 - alpha) * image``."""
    g = generator
    count = (1 + (_rand(g, batch_size) * MAX_OBJECTS).long().clamp(max=MAX_OBJECTS - 1)).tolist()
    draws = _rand(g, batch_size, MAX_OBJECTS, 12 + 2 * MAX_POINTS).cpu().tolist()
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    side = float(min(height, width))
    premultiplied = torch.zeros(batch_size, 3, height, width, device=device)
    alpha = torch.zeros(batch_size, 1, height, width, device=device)
    log_low, log_high = (math.log(v) for v in GAIN_RANGE)
    for b in range(batch_size):
        for d in draws[b][: count[b]]:
            kind = HIGHLIGHT_KINDS[min(int(d[0] * len(HIGHLIGHT_KINDS)), len(HIGHLIGHT_KINDS) - 1)]
            coverage = (0.5 - _shape_distance(kind, d, x, y, side)).clamp(0, 1)
            srgb = torch.tensor(colorsys.hsv_to_rgb(d[4], d[5], 1.0), device=device, dtype=torch.float32)
            gain = math.exp(log_low + (log_high - log_low) * d[6])
            colour = (srgb ** float(gamma[b]) * gain).view(3, 1, 1)
            premultiplied[b] = coverage * colour + (1 - coverage) * premultiplied[b]
            alpha[b] = coverage + (1 - coverage) * alpha[b]
    return premultiplied, alpha


__all__ = ["HIGHLIGHT_KINDS", "in_focus_highlight_layer"]
