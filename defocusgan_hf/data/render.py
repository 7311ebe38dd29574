"""Occlusion-aware layered dual-pixel defocus rendering (a standard layered defocus model).

For each layer, far to near, its premultiplied colour ``c * a`` and its alpha ``a`` are blurred with the layer's
left and right DP PSFs (:mod:`.psf`), and the blurred layers are composited with the "over" operator:

    view = P_l + (1 - A_l) * view,     P_l = (c a) ⊛ PSF_l,  A_l = a ⊛ PSF_l

so a near object's blur spills over the background in front of it, while a blurred background never bleeds into
a sharp foreground. Each view is composited on its own (each half-aperture sees its own occlusion) and the combined
image is the sensor's sum of the two photodiodes: ``blurred = (left + right) / 2``.

A CoC that varies inside a layer (slanted planes, ramps) is split into sub-layers on a grid of radii ``k * step``
(``step`` <= 1 px): pixel ``x`` gives weight ``max(0, 1 - |coc(x) - k step| / step)`` of its light to sub-layer ``k``
(linear interpolation between the two nearest grid radii), each sub-layer is blurred with its own PSFs, and the
sub-layers of a layer are summed (light is scattered, not gathered). The background layer is normalised by its
blurred alpha, which removes the small gain errors where the radius changes from one sub-layer to the next.
Convolutions are :func:`~defocusgan_hf.models.reblur.fft_convolve`, batched over all the scenes that use a
sub-layer; a zero radius is an exact identity. Everything runs on the tensors' device.
"""

from __future__ import annotations

import torch

from ..models.reblur import fft_convolve
from .psf import DualPixelPSFBank


def _blur_views(inputs: torch.Tensor, index: int, bank: DualPixelPSFBank) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, 2, C, H, W)``: the inputs blurred by the left and right PSFs of grid index."""
    if index == 0:
        return torch.stack([inputs, inputs], dim=1)
    kernels = bank.kernels(index, max(inputs.shape[-2:]), inputs.device, inputs.dtype)
    return fft_convolve(inputs, kernels)


def render_layers(
    layers: torch.Tensor, alpha: torch.Tensor, coc: torch.Tensor, bank: DualPixelPSFBank
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the left and right DP views of a batch of layered scenes.

    Args:
        layers: ``(B, L, C, H, W)`` colour of each layer (linear light), far to near; layer 0 is the background.
        alpha: ``(B, L, 1, H, W)`` layer masks in [0, 1]; layer 0 must be all ones where it is used.
        coc: ``(B, L, 1, H, W)`` signed CoC of each layer in pixels, clipped to the bank's ``max_coc``.
        bank: the DP PSFs.

    Returns:
        ``(left, right)``, each ``(B, C, H, W)`` in the units of ``layers``.
    """
    B, L, C, H, W = layers.shape
    if alpha.shape != (B, L, 1, H, W) or coc.shape != (B, L, 1, H, W):
        raise ValueError(
            f"`alpha` {tuple(alpha.shape)} and `coc` {tuple(coc.shape)} must be {(B, L, 1, H, W)} like `layers`."
        )
    step = bank.step
    position = coc.clamp(-bank.max_coc, bank.max_coc) / step  # grid units
    views = layers.new_zeros(B, 2, C, H, W)
    for layer in range(L):
        a, pos = alpha[:, layer], position[:, layer]
        present = a.flatten(1).amax(dim=1) > 0
        if not bool(present.any()):
            continue
        # Grid indices each scene needs for this layer: those around its CoC values where the mask is non-zero.
        inside = a > 0
        big = torch.finfo(pos.dtype).max
        low = torch.where(inside, pos, big).flatten(1).amin(dim=1).floor()
        high = torch.where(inside, pos, -big).flatten(1).amax(dim=1).ceil()
        low, high = low.tolist(), high.tolist()
        wanted = [b for b in range(B) if present[b]]
        accumulated = layers.new_zeros(B, 2, C + 1, H, W)
        for index in range(int(min(low[b] for b in wanted)), int(max(high[b] for b in wanted)) + 1):
            members = [b for b in wanted if low[b] <= index <= high[b]]
            if not members:
                continue
            idx = torch.tensor(members, device=layers.device)
            weight = (1 - (pos[idx] - index).abs()).clamp_min(0) * a[idx]  # (n, 1, H, W)
            inputs = torch.cat([layers[idx, layer] * weight, weight], dim=1)
            if len(members) == B:
                accumulated += _blur_views(inputs, index, bank)
            else:
                accumulated.index_add_(0, idx, _blur_views(inputs, index, bank))
        premultiplied, coverage = accumulated[:, :, :C], accumulated[:, :, C:]
        keep = present.view(B, 1, 1, 1, 1)
        if layer == 0:
            views = torch.where(keep, premultiplied / coverage.clamp_min(1e-6), views)
        else:
            views = torch.where(keep, premultiplied + (1 - coverage.clamp(0, 1)) * views, views)
    views = views.clamp_min(0)
    return views[:, 0], views[:, 1]


def composite_sharp(layers: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """All-in-focus ``(B, C, H, W)`` image: the unblurred layers composited far to near."""
    out = layers[:, 0]
    for layer in range(1, layers.shape[1]):
        a = alpha[:, layer]
        out = a * layers[:, layer] + (1 - a) * out
    return out
