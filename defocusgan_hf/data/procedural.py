"""Procedural sharp images with natural statistics: textured dead leaves and rendered text.

Dead leaves (Matheron; Lee, Mumford & Huang 2001): opaque random shapes dropped on top of each other with a
power-law size distribution (density ~ r^-3, scale invariant), which reproduces the occlusions, sharp edges and
~1/f^2 power spectrum of natural images. Here each leaf is a rotated ellipse that carries a texture (a colour
gradient, a two-colour grating, band-limited noise, or a natural grey texture from scikit-image), so the images
also contain the fine detail that deblurring has to restore. Leaf edges are anti-aliased with the pixel coverage
computed from the distance to the ellipse.

Text: strings of random letters and digits in random sizes, colours and angles, drawn with Pillow's default
(FreeType) font over flat, gradient or dead-leaves backgrounds: high-contrast strokes at many scales.
"""

from __future__ import annotations

import colorsys
import math
import string
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .source_base import ImageSource, rand_float, rand_int


def _random_color(generator: torch.Generator) -> tuple[float, float, float]:
    """An RGB colour with a natural-looking distribution: many muted colours, some saturated, all brightnesses."""
    h, s, v = torch.rand(3, generator=generator, device=generator.device).tolist()
    return colorsys.hsv_to_rgb(h, s**1.5, 0.05 + 0.95 * v**0.8)


@lru_cache(maxsize=1)
def _natural_textures() -> np.ndarray:
    """``(3, 512, 512)`` grey natural textures from scikit-image (brick, grass, gravel), zero mean, unit std."""
    import skimage.data

    textures = np.stack([getattr(skimage.data, name)().astype(np.float32) for name in ("brick", "grass", "gravel")])
    mean, std = textures.mean(axis=(1, 2), keepdims=True), textures.std(axis=(1, 2), keepdims=True)
    return (textures - mean) / std


def _noise_tile(generator: torch.Generator, size: int) -> np.ndarray:
    """``(size, size)`` band-limited 1/f-like noise, zero mean, unit std: octaves of upsampled white noise."""
    # Pyramid: upsample the running sum 2x and add the next octave, so each octave costs its own size only.
    tile = torch.zeros(1, 1, 4, 4)
    while tile.shape[-1] < size:
        cells = tile.shape[-1]
        noise = torch.randn(1, 1, cells, cells, generator=generator, device=generator.device).cpu()
        tile = F.interpolate(tile + noise * cells**-0.5, scale_factor=2, mode="bilinear", align_corners=False)
    tile = F.interpolate(tile, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return ((tile - tile.mean()) / tile.std()).numpy()


class DeadLeavesSource(ImageSource):
    """Textured dead-leaves images.

    Args:
        num_leaves: inclusive range of the number of leaves per image (with the default radii, 300 leaves cover
            about 90 % of the image; the rest shows a textured background).
        radius_range: leaf radii as fractions of the image side (density ~ r^-3 between them).
        supersample: drawing resolution factor (edges are anti-aliased analytically already).
        fine_patterns: gratings reach the sampling limit (0.1-0.5 cycles per output pixel instead of 0.03-0.33,
            mostly low) and two-colour leaves carry axis-aligned checkerboards of 2-8 px cells instead of a
            natural texture: fabric-, screen- and facade-like detail that is sharp when in focus.
    """

    def __init__(
        self,
        num_leaves: tuple[int, int] = (250, 400),
        radius_range: tuple[float, float] = (0.02, 0.4),
        supersample: int = 1,
        fine_patterns: bool = False,
    ):
        if not 0 < radius_range[0] < radius_range[1]:
            raise ValueError(f"`radius_range` must be an increasing pair of positive fractions, got {radius_range}.")
        if not 1 <= num_leaves[0] <= num_leaves[1]:
            raise ValueError(f"`num_leaves` must be an increasing pair of positive counts, got {num_leaves}.")
        self.num_leaves, self.radius_range, self.supersample = num_leaves, radius_range, supersample
        self.fine_patterns = fine_patterns

    def _texture(
        self, kind: int, d: list[float], t: np.ndarray, rows: slice, cols: slice, noise: np.ndarray
    ) -> np.ndarray:
        """Mixing weight in [0, 1] between the leaf's two colours over its bounding box."""
        if kind == 0:  # smooth colour gradient across the leaf
            return np.clip(0.5 + (0.2 + 0.8 * d[10]) * t / (np.abs(t).max() + 1e-6), 0, 1)
        if kind == 1:  # grating, from sinusoidal to nearly square
            spectrum = 0.1 + 0.4 * d[7] if self.fine_patterns else 0.03 + 0.3 * d[7] ** 2
            freq = spectrum / self.supersample  # cycles per output pixel
            sharpness = 4 * (0.2 + d[11])
            wave = np.sin(2 * math.pi * (freq * t + d[9]))
            return 0.5 + 0.5 * np.tanh(sharpness * wave) / math.tanh(sharpness)
        if kind == 2:  # band-limited noise
            return np.clip(0.5 + 0.7 * (0.2 + 0.8 * d[10]) * noise[rows, cols], 0, 1)
        if self.fine_patterns:  # axis-aligned checkerboard, cells of 2-8 output pixels
            cell = (2 + int(d[9] * 7)) * self.supersample
            r = np.arange(rows.start, rows.stop)[:, None] // cell
            c = np.arange(cols.start, cols.stop)[None, :] // cell
            return ((r + c) % 2).astype(np.float32)
        textures = _natural_textures()  # natural grey texture (brick, grass, gravel), at the output scale
        size = textures.shape[-1]
        r = (np.arange(rows.start, rows.stop) // self.supersample + int(d[9] * size)) % size
        c = (np.arange(cols.start, cols.stop) // self.supersample + int(d[7] * size)) % size
        return np.clip(0.5 + 0.25 * textures[int(d[6] * 3) % 3][np.ix_(r, c)], 0, 1)

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        g, s = generator, self.supersample
        n = size * s
        noise = _noise_tile(g, n)
        background = np.array(_random_color(g), dtype=np.float32)
        canvas = background * (0.8 + 0.2 * np.clip(noise, -1, 1))[..., None]
        count = rand_int(g, *self.num_leaves)
        r_min, r_max = (r * n for r in self.radius_range)
        draws = torch.rand(count, 12, generator=g, device=g.device).cpu().tolist()
        colors = torch.rand(count, 2, 3, generator=g, device=g.device).cpu().tolist()
        for d, (c1, c2) in zip(draws, colors, strict=True):
            # Inverse CDF of a density ~ r^-3 on [r_min, r_max].
            radius = (r_min**-2 - d[0] * (r_min**-2 - r_max**-2)) ** -0.5
            cy, cx = d[1] * (n + 2 * radius) - radius, d[2] * (n + 2 * radius) - radius
            rows = slice(max(0, int(cy - radius)), min(n, int(cy + radius) + 2))
            cols = slice(max(0, int(cx - radius)), min(n, int(cx + radius) + 2))
            if rows.start >= rows.stop or cols.start >= cols.stop:
                continue
            y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + 0.5 - cy
            x = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] + 0.5 - cx
            cos, sin = math.cos(d[4] * math.pi), math.sin(d[4] * math.pi)
            elongation = 0.4 + 0.6 * d[3]
            u, v = x * cos + y * sin, (y * cos - x * sin) / elongation
            # Coverage from the first-order distance to the ellipse's edge: anti-aliased without supersampling.
            distance = (radius**2 - u**2 - v**2) / (2 * np.sqrt(u**2 + (v / elongation) ** 2) + 1e-3)
            coverage = np.clip(0.5 + distance, 0, 1)[..., None]
            kind = int(d[5] * 4)
            color = np.array(colorsys.hsv_to_rgb(c1[0], c1[1] ** 1.5, 0.05 + 0.95 * c1[2] ** 0.8), np.float32)
            if kind in (1, 3):  # two colours
                color2 = np.array(colorsys.hsv_to_rgb(c2[0], c2[1] ** 1.5, 0.05 + 0.95 * c2[2] ** 0.8), np.float32)
            else:  # one hue, varying brightness
                color2 = color * (0.4 + 1.2 * d[6])
            t = x * math.cos(d[8] * math.pi) + y * math.sin(d[8] * math.pi)
            weight = self._texture(kind, d, t, rows, cols, noise)[..., None]
            region = canvas[rows, cols]
            region += coverage * (color + (color2 - color) * weight - region)
        image = torch.from_numpy(np.clip(canvas, 0, 1)).permute(2, 0, 1)
        return (F.avg_pool2d(image[None], s)[0] if s > 1 else image).contiguous()

    def __repr__(self) -> str:
        fine = ", fine_patterns=True" if self.fine_patterns else ""
        return f"{type(self).__name__}(num_leaves={self.num_leaves}{fine})"


_CHARACTERS = string.ascii_letters + string.digits + "      .,-"


class TextSource(ImageSource):
    """Random strings drawn with Pillow's default font over flat, gradient or dead-leaves backgrounds.

    Args:
        num_strings: inclusive range of the number of strings per image.
        font_size_range: font sizes in pixels at a 256-pixel image (scaled with the image size).
    """

    def __init__(self, num_strings: tuple[int, int] = (4, 14), font_size_range: tuple[float, float] = (8.0, 72.0)):
        self.num_strings, self.font_size_range = num_strings, font_size_range
        self._background = DeadLeavesSource(num_leaves=(40, 120))

    def _background_image(self, size: int, generator: torch.Generator) -> Image.Image:
        kind = rand_int(generator, 0, 2)
        if kind == 2:
            array = self._background.sample(size, generator).permute(1, 2, 0).numpy()
        else:
            c1, c2 = np.array(_random_color(generator)), np.array(_random_color(generator))
            ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None] if kind == 1 else np.zeros((1, 1, 1))
            array = np.broadcast_to(c1 + (c2 - c1) * ramp, (size, size, 3))
        return Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8))

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        g = generator
        image = self._background_image(size, g)
        low, high = (s * size / 256 for s in self.font_size_range)
        for _ in range(rand_int(g, *self.num_strings)):
            length = rand_int(g, 2, 14)
            text = "".join(_CHARACTERS[rand_int(g, 0, len(_CHARACTERS) - 1)] for _ in range(length)).strip() or "A"
            font_size = max(6, int(round(math.exp(rand_float(g, math.log(low), math.log(high))))))
            font = ImageFont.load_default(size=font_size)
            if rand_float(g) < 0.4:
                value = 0.05 if rand_float(g) < 0.5 else 0.95
                color = (value, value, value)
            else:
                color = _random_color(g)
            fill = tuple(int(round(c * 255)) for c in color) + (255,)
            left, top, right, bottom = font.getbbox(text)
            layer = Image.new("RGBA", (right - left + 4, bottom - top + 4), (0, 0, 0, 0))
            ImageDraw.Draw(layer).text((2 - left, 2 - top), text, font=font, fill=fill)
            angle = 0.0 if rand_float(g) < 0.5 else rand_float(g, -90, 90)
            if angle:
                layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
            x = rand_int(g, -layer.width // 2, size - layer.width // 2)
            y = rand_int(g, -layer.height // 2, size - layer.height // 2)
            image.paste(layer, (x, y), layer)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_strings={self.num_strings})"
