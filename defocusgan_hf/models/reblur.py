"""Eq. 4 of the paper: layered reblur of an all-in-focus image by a per-pixel CoC radius map.

I*_OoF(x) = Σ_r w_r(c(x)) · (I_AiF ⊛ B_r)(x): the sharp image is blurred once per integer radius r (one FFT
convolution per layer), and every pixel takes the layers of the two integer radii around its CoC c(x) with
linear weights (the released code's interpolation). The weights are piecewise linear in c, so the loss has a
gradient with respect to the map; the layers are linear in the kernels, so it has one with respect to B too.

``search_coc`` (ours, not the paper's) minimises the same residual per pixel by trying every radius: a training
target that gradient descent on Eq. 2 cannot reach from a wrong start. ``search_signed_coc`` does the same against
the two DP views with half-aperture PSFs, which also finds the side of the focal plane.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.fft import next_fast_len


def fft_convolve(image: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve ``image`` ``(B, C, H, W)`` with each of ``kernels`` ``(N, K, K)`` (K odd), borders reflected.

    Returns ``(B, N, C, H, W)``. A true convolution (the PSF is not flipped into a correlation), so an
    off-centre PSF moves light the way a camera's would. Cost is one FFT per image and per kernel.
    """
    if kernels.dim() != 3 or kernels.shape[-1] != kernels.shape[-2] or kernels.shape[-1] % 2 == 0:
        raise ValueError(f"`kernels` must be (N, K, K) with K odd, got {tuple(kernels.shape)}.")
    B, C, H, W = image.shape
    K = kernels.shape[-1]
    pad = K // 2
    mode = "reflect" if pad < min(H, W) else "replicate"
    padded = F.pad(image, (pad, pad, pad, pad), mode=mode)
    # The FFT size only needs to hold the padded image: the outputs kept below never wrap around. Rounding it up
    # to a 2·3·5-smooth length (e.g. 178 = 2·89 → 180) gives the same result faster: FFTs of lengths with large
    # prime factors are the slow case.
    size = (next_fast_len(padded.shape[-2], real=True), next_fast_len(padded.shape[-1], real=True))
    compute_dtype = torch.float32 if image.dtype in (torch.float16, torch.bfloat16) else image.dtype
    spectrum = torch.fft.rfft2(padded.to(compute_dtype), s=size)
    kernel_spectrum = torch.fft.rfft2(kernels.to(compute_dtype), s=size)
    out = torch.fft.irfft2(spectrum[:, None] * kernel_spectrum[None, :, None], s=size)
    # A kernel stored with its centre at (pad, pad) delays the output by `pad`; the input padding adds another.
    return out[..., 2 * pad : 2 * pad + H, 2 * pad : 2 * pad + W].to(image.dtype)


def layer_weights(radius: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Linear-interpolation weights ``(B, num_layers, H, W)`` of a radius map ``(B, 1, H, W)`` in pixels.

    Layer r gets ``max(0, 1 - |radius - r|)``; the weights of a pixel sum to 1 for radius in [0, num_layers - 1].
    """
    layers = torch.arange(num_layers, dtype=radius.dtype, device=radius.device).view(1, -1, 1, 1)
    return (1.0 - (radius - layers).abs()).clamp_min(0.0)


def bank_layers(sharp: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """``sharp`` ``(B, C, H, W)`` convolved with every kernel of a ``(S, R + 1, K, K)`` bank:
    ``(B, S, R + 1, C, H, W)``.

    Computed once, the layers serve both :func:`reblur` and :func:`search_coc` (``layers=``), which would otherwise
    each convolve the image with the bank.
    """
    if kernels.dim() == 3:
        kernels = kernels[None]
    return fft_convolve(sharp, kernels.flatten(0, 1)).unflatten(1, kernels.shape[:2])


def _check_layers(layers: torch.Tensor, sharp: torch.Tensor, kernels: torch.Tensor) -> None:
    if layers.shape[:3] != (sharp.shape[0], *kernels.shape[:2]) or layers.shape[3:] != sharp.shape[1:]:
        raise ValueError(f"`layers` must be bank_layers(sharp, kernels), got shape {tuple(layers.shape)}.")


def reblur(
    sharp: torch.Tensor, coc: torch.Tensor, kernels: torch.Tensor, layers: torch.Tensor | None = None
) -> torch.Tensor:
    """Blur ``sharp`` by the per-pixel CoC map ``coc`` with the kernel bank ``kernels`` (Eq. 4).

    Args:
        sharp: ``(B, C, H, W)`` all-in-focus image, any range (the package uses [0, 1]).
        coc: ``(B, 1, H, W)`` CoC radius in pixels. Signed when ``kernels`` has two sides: ``coc >= 0`` uses
            side 0, ``coc < 0`` side 1. Magnitudes are clamped to the bank's largest radius.
        kernels: ``(S, R + 1, K, K)`` kernels for the integer radii 0..R (S = 1 or 2), e.g. from
            :class:`~defocusgan_hf.models.blur_kernel.LearnableBlurKernel`, or ``(R + 1, K, K)`` for one side.
        layers: ``bank_layers(sharp, kernels)``, when the caller has them already; by default only the layers the
            map reaches are computed.

    Returns:
        ``(B, C, H, W)`` reblurred image, differentiable with respect to ``sharp``, ``coc`` and ``kernels``.
    """
    if kernels.dim() == 3:
        kernels = kernels[None]
    if kernels.dim() != 4 or kernels.shape[0] not in (1, 2):
        raise ValueError(f"`kernels` must be (S, R+1, K, K) with S in (1, 2), got {tuple(kernels.shape)}.")
    if sharp.dim() != 4 or coc.dim() != 4 or coc.shape[1] != 1:
        raise ValueError(
            f"Expected sharp (B, C, H, W) and coc (B, 1, H, W), got {tuple(sharp.shape)}, {tuple(coc.shape)}."
        )
    if sharp.shape[0] != coc.shape[0] or sharp.shape[-2:] != coc.shape[-2:]:
        raise ValueError(f"`sharp` {tuple(sharp.shape)} and `coc` {tuple(coc.shape)} must share batch and size.")
    sides, num_radii = kernels.shape[:2]
    max_radius = num_radii - 1
    radius = coc.abs().clamp(max=max_radius)
    # Only the layers the map reaches are computed: a map within [0, 3.2] needs radii 0..4.
    top = min(max_radius, int(math.ceil(float(radius.detach().max()))))
    used = top + 1
    weights = layer_weights(radius, used)  # (B, L, H, W)
    if layers is None:
        layers = bank_layers(sharp, kernels[:, :used])
    else:
        _check_layers(layers, sharp, kernels)
        layers = layers[:, :, :used]
    # layers: (B, S, L, C, H, W)
    if sides == 1:
        return (weights[:, :, None] * layers[:, 0]).sum(dim=1)
    behind = (coc >= 0).to(sharp.dtype)  # (B, 1, H, W)
    side_weights = torch.stack([weights * behind, weights * (1 - behind)], dim=1)  # (B, 2, L, H, W)
    return (side_weights[:, :, :, None] * layers).sum(dim=(1, 2))


def gaussian_window(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(1, K, K)`` normalised 2-D Gaussian, ``K = 2·ceil(3σ) + 1``; ``sigma`` in pixels (> 0)."""
    if not sigma > 0:
        raise ValueError(f"`sigma` must be > 0 pixels, got {sigma}.")
    half = int(math.ceil(3 * sigma))
    t = torch.arange(-half, half + 1, dtype=dtype, device=device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    window = g[:, None] * g[None, :]
    return (window / window.sum())[None]


@torch.no_grad()
def search_coc(
    sharp: torch.Tensor,
    blurred: torch.Tensor,
    kernels: torch.Tensor,
    window_sigma: float = 8.0,
    layers: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pixel exhaustive search of Eq. 2 over the bank's radii: the |CoC| that best explains ``blurred``.

    Gradient descent on Eq. 2 moves a pixel's radius by the difference of two neighbouring layers, so it stalls in
    the loss's many local minima (a disc's response to texture is not monotone in the radius) and under sensor
    noise. Here every radius is tried: the residual ``|sharp ⊛ B_r − blurred|`` (mean over channels) is averaged
    over a Gaussian window of ``window_sigma`` pixels, which beats the noise down, and each pixel takes the radius
    of least cost, refined to sub-pixel by a parabola through its two neighbours; both sides of a two-sided bank
    are tried and the lower cost kept. It needs the sharp image, so it serves training (a target for the net that
    sees only the DP views), not inference. No gradient.

    Args:
        sharp, blurred: ``(B, C, H, W)`` all-in-focus and defocused images in [0, 1].
        kernels: ``(S, R + 1, K, K)`` or ``(R + 1, K, K)`` bank, as for :func:`reblur`.
        window_sigma: standard deviation of the averaging window, pixels.
        layers: ``bank_layers(sharp, kernels)``, when the caller has them already (they are computed otherwise).

    Returns:
        ``(B, 1, H, W)`` unsigned CoC radius in pixels, in ``[0, R]``.
    """
    if kernels.dim() == 3:
        kernels = kernels[None]
    if sharp.shape != blurred.shape or sharp.dim() != 4:
        raise ValueError(
            f"`sharp` and `blurred` must be (B, C, H, W) of one shape, "
            f"got {tuple(sharp.shape)}, {tuple(blurred.shape)}."
        )
    sides, num_radii = kernels.shape[:2]
    if layers is None:
        layers = bank_layers(sharp, kernels)
    _check_layers(layers, sharp, kernels)
    layers = layers.flatten(1, 2)  # (B, S·L, C, H, W)
    residual = (layers - blurred[:, None]).abs().mean(dim=2)  # (B, S·L, H, W)
    window = gaussian_window(window_sigma, dtype=residual.dtype, device=residual.device)
    cost = fft_convolve(residual, window)[:, 0]  # (B, S·L, H, W)
    cost = cost.unflatten(1, (sides, num_radii)).amin(dim=1)  # (B, L, H, W): the better side per radius
    return _subpixel_argmin(cost).to(sharp.dtype)


def _subpixel_argmin(cost: torch.Tensor) -> torch.Tensor:
    """Index of least ``cost`` ``(B, N, H, W)`` along dim 1, refined by a parabola through its two neighbours:
    ``(B, 1, H, W)`` in ``[0, N - 1]``."""
    num = cost.shape[1]
    best = cost.argmin(dim=1, keepdim=True)  # (B, 1, H, W)
    below, above = (best - 1).clamp_min(0), (best + 1).clamp_max(num - 1)
    c0, cm, cp = cost.gather(1, best), cost.gather(1, below), cost.gather(1, above)
    curvature = cm - 2 * c0 + cp
    interior = (best > 0) & (best < num - 1) & (curvature > 0)
    offset = torch.where(interior, 0.5 * (cm - cp) / curvature.clamp_min(1e-12), torch.zeros_like(c0))
    return (best.to(cost.dtype) + offset.clamp(-0.5, 0.5)).clamp(0, num - 1)


@torch.no_grad()
def search_signed_coc(
    sharp: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    view_kernels: torch.Tensor,
    window_sigma: float = 8.0,
) -> torch.Tensor:
    """Per-pixel exhaustive search of the *signed* CoC that best explains both DP views.

    :func:`search_coc` compares reblurs with the combined image, whose blur is the same on both sides of the focal
    plane, so it finds ``|CoC|`` only. The two views are blurred by mirrored half-aperture PSFs whose roles swap
    at the focal plane, so comparing ``sharp ⊛ PSF_view(c)`` with each view tells the sides apart: for every signed
    radius ``c`` in ``-R..R`` the residual ``(|sharp ⊛ L_c − left| + |sharp ⊛ R_c − right|) / 2`` (mean over
    channels) is averaged over a Gaussian window of ``window_sigma`` pixels and each pixel takes the radius of
    least cost, refined to sub-pixel by a parabola (across 0 too). Needs the sharp image: a training target. No
    gradient.

    Args:
        sharp, left, right: ``(B, C, H, W)`` all-in-focus image and the two DP views in [0, 1].
        view_kernels: ``(2, 2R + 1, K, K)`` (left, right) PSFs of the signed radii ``-R..R``, e.g.
            :func:`~defocusgan_hf.models.dual_pixel.dual_pixel_view_kernels` of the stage-1 bank.
        window_sigma: standard deviation of the averaging window, pixels.

    Returns:
        ``(B, 1, H, W)`` signed CoC radius in pixels, in ``[-R, R]`` (positive: behind the focal plane).
    """
    if sharp.dim() != 4 or left.shape != sharp.shape or right.shape != sharp.shape:
        raise ValueError(
            f"`sharp`, `left` and `right` must be (B, C, H, W) of one shape, got {tuple(sharp.shape)}, "
            f"{tuple(left.shape)}, {tuple(right.shape)}."
        )
    if view_kernels.dim() != 4 or view_kernels.shape[0] != 2 or view_kernels.shape[1] % 2 == 0:
        raise ValueError(f"`view_kernels` must be (2, 2R+1, K, K), got {tuple(view_kernels.shape)}.")
    num = view_kernels.shape[1]
    predicted = fft_convolve(sharp, view_kernels.flatten(0, 1)).unflatten(1, (2, num))  # (B, 2, N, C, H, W)
    observed = torch.stack([left, right], dim=1)[:, :, None]  # (B, 2, 1, C, H, W)
    residual = (predicted - observed).abs().mean(dim=(1, 3))  # (B, N, H, W)
    window = gaussian_window(window_sigma, dtype=residual.dtype, device=residual.device)
    cost = fft_convolve(residual, window)[:, 0]  # (B, N, H, W)
    return (_subpixel_argmin(cost) - (num - 1) // 2).to(sharp.dtype)
