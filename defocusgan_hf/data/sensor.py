"""Sensor and processing effects for synthetic captures, batched, seeded and device-agnostic.

Order in the synthetic pipeline: sRGB source -> linear (``x ** gamma``) -> optics (blur, in linear light) ->
exposure -> DP vignetting -> Poisson-Gaussian noise -> clip -> ``x ** (1 / gamma)`` -> (optional, the combined
input only) phone-style denoising and sharpening -> JPEG-like compression.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def log_uniform(generator: torch.Generator, low: float, high: float, n: int, device=None) -> torch.Tensor:
    """``(n,)`` values drawn log-uniformly in [low, high] (``low == high`` gives that constant)."""
    if not 0 < low <= high:
        raise ValueError(f"A log-uniform range needs 0 < low <= high, got ({low}, {high}).")
    values = math.log(low) + (math.log(high) - math.log(low)) * _rand(generator, n)
    return values.exp().to(device)


def uniform(generator: torch.Generator, low: float, high: float, n: int, device=None) -> torch.Tensor:
    """``(n,)`` values drawn uniformly in [low, high]."""
    if low > high:
        raise ValueError(f"A range needs low <= high, got ({low}, {high}).")
    return (low + (high - low) * _rand(generator, n)).to(device)


def poisson_gaussian_noise(
    image: torch.Tensor, shot: torch.Tensor, read: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Heteroscedastic sensor noise on a linear image ``(B, C, H, W)``: ``x + sqrt(shot * x + read**2) * n``.

    ``shot`` ``(B,)`` is the Poisson gain (variance per unit signal), ``read`` ``(B,)`` the read-noise standard
    deviation; ``n`` is standard normal (the usual Gaussian approximation of the Poisson part).
    """
    noise = torch.randn(image.shape, generator=generator, device=generator.device).to(image.device, image.dtype)
    variance = shot.view(-1, 1, 1, 1) * image.clamp_min(0) + read.view(-1, 1, 1, 1) ** 2
    return image + variance.sqrt() * noise


def dual_pixel_vignetting(width: int, strength: torch.Tensor, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Opposite horizontal light fall-off of the two DP views: gains ``(B, 1, 1, W)`` ``1 -/+ strength * x``
    (``x`` from -1 at the left edge to 1 at the right). The gains average to 1, so the combined image is unchanged."""
    x = torch.linspace(-1, 1, width, device=device).view(1, 1, 1, width)
    s = strength.view(-1, 1, 1, 1).to(device)
    return 1 - s * x, 1 + s * x


# Quantisation tables of the JPEG standard (ITU-T T.81, Annex K), luminance and chrominance, row-major 8x8.
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip


def _dct_matrix(device, dtype) -> torch.Tensor:
    k = torch.arange(8, device=device, dtype=dtype)
    matrix = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] = math.sqrt(1 / 8)
    return matrix  # orthonormal DCT-II: coefficients = M @ block @ M.T


def _quality_tables(quality: torch.Tensor, device, dtype) -> torch.Tensor:
    """``(B, 2, 8, 8)`` luma/chroma quantisation steps for qualities ``(B,)`` in 1..100 (libjpeg's scaling)."""
    q = quality.to(device=device, dtype=dtype).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(-1, 1, 1, 1)
    base = torch.tensor([_LUMA_TABLE, _CHROMA_TABLE], device=device, dtype=dtype).view(1, 2, 8, 8)
    return ((base * scale + 50) / 100).floor().clamp(1, 255)


def jpeg_compress(image: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-like compression artefacts on ``(B, 3, H, W)`` sRGB in [0, 1] at qualities ``(B,)`` in 1..100.

    YCbCr (JFIF), 4:2:0 chroma subsampling, 8x8 orthonormal DCT quantised with the standard tables scaled by
    quality, then decoded. No entropy coding (it is lossless, so the pixels are those of a real JPEG codec up to
    rounding and the chroma filters). Hand-rolled because torchvision's codec cannot be used here and a
    Pillow/OpenCV round trip per image would leave the GPU.
    """
    B, C, H, W = image.shape
    if C != 3:
        raise ValueError(f"`image` must be (B, 3, H, W), got {tuple(image.shape)}.")
    x = image.float() * 255
    r, g, b = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    pad_h, pad_w = (-H) % 16, (-W) % 16
    ycc = F.pad(torch.stack([y, cb, cr], 1), (0, pad_w, 0, pad_h), mode="replicate")
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    tables = _quality_tables(quality, x.device, x.dtype)
    matrix = _dct_matrix(x.device, x.dtype)

    def code(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:  # (B, c, h, w), (B, 8, 8)
        b_, c_, h_, w_ = plane.shape
        blocks = (plane - 128).reshape(b_, c_, h_ // 8, 8, w_ // 8, 8).transpose(3, 4)
        coefficients = matrix @ blocks @ matrix.T
        step = table.view(b_, 1, 1, 1, 8, 8)
        blocks = matrix.T @ (torch.round(coefficients / step) * step) @ matrix
        return blocks.transpose(3, 4).reshape(b_, c_, h_, w_) + 128

    luma = code(ycc[:, :1], tables[:, 0])
    chroma = F.interpolate(code(chroma, tables[:, 1]), scale_factor=2, mode="bilinear", align_corners=False)
    y, cb, cr = luma[:, 0, :H, :W], chroma[:, 0, :H, :W] - 128, chroma[:, 1, :H, :W] - 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (rgb / 255).clamp(0, 1).to(image.dtype)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(B, C, H, W)`` blurred by a separable Gaussian of standard deviation ``sigma`` px (reflected borders)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    C = image.shape[1]
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def unsharp_mask(image: torch.Tensor, radius: float, amount: float) -> torch.Tensor:
    """Sharpening with halos, as phone pipelines do: ``x + amount * (x - gaussian(x, radius))``, clipped to [0, 1]."""
    return (image + amount * (image - gaussian_blur(image, radius))).clamp(0, 1)


def bilateral_smear(
    image: torch.Tensor, strength: float, spatial_sigma: float = 1.0, range_sigma: float = 0.05
) -> torch.Tensor:
    """A phone-like denoising smear of ``(B, C, H, W)`` in [0, 1]: a 5x5 bilateral filter (spatial ``spatial_sigma``
    px, range ``range_sigma`` on the channels' mean, so grey stays grey), blended in with ``strength`` in [0, 1]."""
    H, W = image.shape[-2:]
    padded = F.pad(image, (2, 2, 2, 2), mode="reflect")
    grey = image.mean(dim=1, keepdim=True)
    total, weights = torch.zeros_like(image), torch.zeros_like(grey)
    for dy in range(5):
        for dx in range(5):
            shifted = padded[..., dy : dy + H, dx : dx + W]
            spatial = math.exp(-((dy - 2) ** 2 + (dx - 2) ** 2) / (2 * spatial_sigma**2))
            weight = spatial * torch.exp(-((shifted.mean(dim=1, keepdim=True) - grey) ** 2) / (2 * range_sigma**2))
            total, weights = total + weight * shifted, weights + weight
    return image + strength * (total / weights - image)


def phone_processing(
    image: torch.Tensor,
    generator: torch.Generator,
    prob: float,
    radius_range: tuple[float, float] = (1.0, 3.0),
    amount_range: tuple[float, float] = (0.3, 1.0),
    strength_range: tuple[float, float] = (0.5, 1.0),
) -> torch.Tensor:
    """Phone-style processing of ``(B, 3, H, W)`` sRGB in [0, 1], each image with probability ``prob``: a denoising
    smear (:func:`bilateral_smear`, strength in ``strength_range``, spatial sigma 0.7-1.5 px, range sigma
    0.02-0.08), unsharp-mask sharpening (:func:`unsharp_mask`, radius in ``radius_range`` px, amount in
    ``amount_range``), or the smear then the sharpening, one in three each. Parameters uniform; the others untouched."""
    B = image.shape[0]
    draws = _rand(generator, B, 7).tolist()
    out = image.clone()
    for b, (chosen, kind, radius, amount, strength, spatial, tonal) in enumerate(draws):
        if chosen >= prob:
            continue
        x, kind = image[b : b + 1], min(int(kind * 3), 2)  # 0: sharpen, 1: denoise, 2: both
        if kind >= 1:
            strength = strength_range[0] + (strength_range[1] - strength_range[0]) * strength
            x = bilateral_smear(x, strength, 0.7 + 0.8 * spatial, 0.02 + 0.06 * tonal)
        if kind != 1:
            radius = radius_range[0] + (radius_range[1] - radius_range[0]) * radius
            x = unsharp_mask(x, radius, amount_range[0] + (amount_range[1] - amount_range[0]) * amount)
        out[b : b + 1] = x.clamp(0, 1)
    return out
