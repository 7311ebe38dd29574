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
Convolutions are FFT convolutions with reflected borders (as :func:`~defocusgan_hf.models.reblur.fft_convolve`),
batched over all the scenes that use a sub-layer; a zero radius is an exact identity. Everything runs on the
tensors' device.

The grid range and the masks' bounding box of every layer and scene are read from the device once per batch (one
host sync, a "plan"). Each layer is transformed only in its window, the box widened by the kernels' support (its
inputs are zero outside the box; where the window meets the frame, the frame's border is reflected), and
composited there. The sub-layers of a layer are summed in the frequency domain: each sub-layer's input gets one
real FFT at a common, FFT-friendly size (the layer's largest kernel support; a smaller kernel is zero-padded to it,
which leaves the convolution as it was), its spectrum is multiplied by the cached spectra of its left and right
PSFs and added up, and one inverse FFT per layer and view brings the sum back. The result is that of convolving
each sub-layer on its own over the whole frame (:func:`_render_layers_per_sublayer`, the former path, kept as a
reference) up to float rounding. Several PSF banks over the same scenes (:func:`render_layers_with_banks`: the
centre and cat-eye PSFs of a field-varying rendering) share each sub-layer's forward FFT.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..models.reblur import fft_convolve, next_fast_len
from .psf import DualPixelPSFBank


def _blur_views(inputs: torch.Tensor, index: int, bank: DualPixelPSFBank) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, 2, C, H, W)``: the inputs blurred by the left and right PSFs of grid index."""
    if index == 0:
        return torch.stack([inputs, inputs], dim=1)
    kernels = bank.kernels(index, max(inputs.shape[-2:]), inputs.device, inputs.dtype)
    return fft_convolve(inputs, kernels)


def _check_shapes(layers: torch.Tensor, alpha: torch.Tensor, coc: torch.Tensor) -> None:
    B, L, C, H, W = layers.shape
    if alpha.shape != (B, L, 1, H, W) or coc.shape != (B, L, 1, H, W):
        raise ValueError(
            f"`alpha` {tuple(alpha.shape)} and `coc` {tuple(coc.shape)} must be {(B, L, 1, H, W)} like `layers`."
        )


def _plan(
    alpha: torch.Tensor, position: torch.Tensor
) -> tuple[torch.Tensor, list[list[bool]], list[list[int]], list[list[int]], list[list[tuple[int, int, int, int]]]]:
    """Per layer and scene: whether the layer is present (``(B, L)`` on the device, and as lists), the lowest and
    highest grid index its CoC needs (those around its CoC values where the mask is non-zero), and the bounding box
    ``(top, bottom, left, right)`` (inclusive) of its mask, read from the device in one go."""
    inside = alpha > 0  # (B, L, 1, H, W)
    big = torch.finfo(position.dtype).max
    present = inside.flatten(2).any(dim=2)  # (B, L)
    low = torch.where(inside, position, big).flatten(2).amin(dim=2).floor()
    high = torch.where(inside, position, -big).flatten(2).amax(dim=2).ceil()
    # Absent layers get an empty range (no grid index), present ones their own.
    low = torch.where(present, low, 0.0)
    high = torch.where(present, high, -1.0)
    rows, cols = inside.any(dim=-1)[:, :, 0].to(torch.uint8), inside.any(dim=-2)[:, :, 0].to(torch.uint8)
    edges = [  # first and last row / column with a non-zero mask (argmax finds the first maximum)
        rows.argmax(dim=-1),
        rows.shape[-1] - 1 - rows.flip(-1).argmax(dim=-1),
        cols.argmax(dim=-1),
        cols.shape[-1] - 1 - cols.flip(-1).argmax(dim=-1),
    ]
    table = torch.stack([present.to(low.dtype), low, high, *(e.to(low.dtype) for e in edges)]).transpose(1, 2)
    table = table.tolist()  # (7, L, B)
    present_l = [[bool(v) for v in row] for row in table[0]]
    low_l = [[int(v) for v in row] for row in table[1]]
    high_l = [[int(v) for v in row] for row in table[2]]
    boxes = [
        [tuple(int(table[i][layer][b]) for i in range(3, 7)) for b in range(len(row))]
        for layer, row in enumerate(table[0])
    ]
    return present, present_l, low_l, high_l, boxes


GROUP_AREA_RATIO = 1.5  # see _blur_layer
SPECTRUM_CACHE_BYTES = 64 * 2**20  # per bank: kernel spectra kept for reuse (least recently used dropped first)


def _kernel_spectrum(
    bank: DualPixelPSFBank, index: int, pad: int, size: tuple[int, int], device, dtype
) -> torch.Tensor:
    """``(2, size[0], size[1] // 2 + 1)`` rfft2 of grid index's (left, right) kernels centred in a ``2 pad + 1``
    support, divided by ``size[0] * size[1]`` (the inverse FFT's normalisation, :func:`_inverse`), cached on the
    bank per (index, support, FFT size, device, dtype) within ``SPECTRUM_CACHE_BYTES``."""
    cache = bank.__dict__.get("_spectrum_cache")
    if cache is None:
        cache = bank.__dict__["_spectrum_cache"] = OrderedDict()
    key = (index, pad, size, str(device), dtype)
    spectrum = cache.get(key)
    if spectrum is not None:
        cache.move_to_end(key)
        return spectrum
    kernels = bank.tight_kernels(index, device, dtype)
    extra = pad - kernels.shape[-1] // 2
    # rfft2 at ``size`` of the zero-padded support, its zero rows skipped (the same transform, about half the work:
    # the support is small against the FFT size): a real FFT of the support's rows, then a full FFT of the columns.
    # The inverse FFT's 1 / (size[0] size[1]) is folded in here, once per cached spectrum (see _inverse).
    support = F.pad(kernels, (extra, extra, extra, extra)) / (size[0] * size[1])
    spectrum = torch.fft.fft(torch.fft.rfft(support, n=size[1], dim=-1), n=size[0], dim=-2)
    nbytes = spectrum.numel() * spectrum.element_size()
    total = sum(v.numel() * v.element_size() for v in cache.values()) + nbytes
    while cache and total > SPECTRUM_CACHE_BYTES:
        _, dropped = cache.popitem(last=False)
        total -= dropped.numel() * dropped.element_size()
    if nbytes <= SPECTRUM_CACHE_BYTES:
        cache[key] = spectrum
    return spectrum


def _inverse(spectrum: torch.Tensor, size: tuple[int, int], rows: slice, cols: slice) -> torch.Tensor:
    """``irfft2(spectrum, s=size)[..., rows, cols] * size[0] * size[1]`` (the normalisation is in the kernel
    spectra), the rows cut before the last axis' real transform: only the rows kept are transformed there."""
    columns = torch.fft.ifft(spectrum, dim=-2, norm="forward")[..., rows, :]
    return torch.fft.irfft(columns, n=size[1], dim=-1, norm="forward")[..., cols]


def _blur_layer(
    layers: torch.Tensor,
    position: torch.Tensor,
    alpha: torch.Tensor,
    wanted: list[int],
    low: list[int],
    high: list[int],
    boxes: list[tuple[int, int, int, int]],
    banks: Sequence[DualPixelPSFBank],
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """``(len(banks), B, 2, C + 1, h, w)``: one layer's weighted colour and weight, blurred by every sub-layer's
    left and right PSFs of each bank and summed over sub-layers (scenes not in ``wanted`` stay zero), within the
    window ``(y0, y1, x0, x1)`` of the frame returned with it (outside it they are zero). The banks
    share each sub-layer's forward FFT (its input does not depend on the PSFs); the FFT size fits the largest of
    their kernels, which zero-pads the smaller ones (the convolution stays as it was).

    Only the window around the masks' bounding box (``boxes``: top, bottom, left, right per scene) is transformed:
    the inputs are zero outside the box, so their blur stays within the box widened by the kernels' support, and
    where that window meets the frame its border is reflected as the whole frame's would be. Objects that cover
    part of the frame cost their own area, not the frame's."""
    B, C, H, W = layers.shape
    device, dtype = layers.device, layers.dtype
    compute_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    indices = range(min(low[b] for b in wanted), max(high[b] for b in wanted) + 1)
    members = {k: [b for b in wanted if low[b] <= k <= high[b]] for k in indices}
    members = {k: m for k, m in members.items() if m}
    top, bottom = min(boxes[b][0] for b in wanted), max(boxes[b][1] for b in wanted)
    left, right = min(boxes[b][2] for b in wanted), max(boxes[b][3] for b in wanted)
    # Kernels whose support fits reflected borders share FFT sizes; larger ones (tiny images) are replicated. Within
    # each, sub-layers are grouped by support, a new group (one more inverse FFT) starting where the padded area
    # would exceed GROUP_AREA_RATIO times the group's first, so small kernels are not transformed at a large size.
    halves = {k: max(bank.tight_kernels(k, device, dtype).shape[-1] // 2 for bank in banks) for k in members if k != 0}

    def reflected(k: int) -> bool:
        """Whether borders are reflected, as ``fft_convolve`` decides it for the bank's FFT-padded kernels (they
        are at most 63 px wider than the tight ones, so only kernels near the frame's size need them built)."""
        if halves[k] + 32 <= min(H, W):
            return True
        return max(bank.kernels(k, max(H, W), device, dtype).shape[-1] // 2 for bank in banks) < min(H, W)

    reflects = {k: reflected(k) for k in halves}
    groups: list[tuple[bool, list[tuple[int, int]]]] = []
    for k in sorted(halves, key=lambda k: (not reflects[k], halves[k])):
        half, reflect = halves[k], reflects[k]
        if groups and groups[-1][0] == reflect:
            first = groups[-1][1][0][1]
            if (H + 2 * half) * (W + 2 * half) <= GROUP_AREA_RATIO * (H + 2 * first) * (W + 2 * first):
                groups[-1][1].append((k, half))
                continue
        groups.append((reflect, [(k, half)]))

    def window_of(need: int, reflect: bool) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)``: the box widened by ``need`` within the frame; the whole frame for kernels as large
        as it (their borders are replicated)."""
        if not reflect:
            return 0, H, 0, W
        return max(0, top - need), min(H, bottom + 1 + need), max(0, left - need), min(W, right + 1 + need)

    # The layer's window holds every group's: the box widened by the largest support.
    widest = max((half for _, entries in groups for _, half in entries), default=0)
    window = window_of(widest, all(reflect for reflect, _ in groups))
    wy0, wy1, wx0, wx1 = window
    accumulated = layers.new_zeros(len(banks), B, 2, C + 1, wy1 - wy0, wx1 - wx0)

    def sub_layer_inputs(k: int, scenes: list[int], rows: slice, cols: slice):
        everyone = len(scenes) == B
        idx = None if everyone else torch.tensor(scenes, device=device)
        pos, a, colour = (position, alpha, layers) if everyone else (position[idx], alpha[idx], layers[idx])
        pos, a, colour = (x[..., rows, cols] for x in (pos, a, colour))
        weight = (1 - (pos - k).abs()).clamp_min(0) * a  # (n, 1, h, w)
        return idx, torch.cat([colour * weight, weight], dim=1)

    if 0 in members:  # a zero radius is an identity: both views get the inputs as they are
        rows, cols = slice(top, bottom + 1), slice(left, right + 1)
        idx, inputs = sub_layer_inputs(0, members[0], rows, cols)
        both = torch.stack([inputs, inputs], dim=1)
        target = accumulated[..., top - wy0 : bottom + 1 - wy0, left - wx0 : right + 1 - wx0]
        if idx is None:
            target += both
        else:
            target.index_add_(1, idx, both.expand(len(banks), *both.shape))
    for reflect, entries in groups:
        need = max(half for _, half in entries)
        y0, y1, x0, x1 = window_of(need, reflect)
        h, w = y1 - y0, x1 - x0
        # The support is widened to what the FFT size holds anyway, so that few distinct (support, size) pairs
        # occur and the kernel spectra cache well; a wider zero-padded support leaves the convolution as it was.
        size = (next_fast_len(h + 2 * need, real=True), next_fast_len(w + 2 * need, real=True))
        pad = min((size[0] - h) // 2, (size[1] - w) // 2)
        if reflect:
            pad = min(pad, min(H, W) - 1)
        # The window's inputs reach ``pad`` beyond it: frame pixels where there are some, reflected ones past the
        # frame's border (beyond the box the inputs are zero, so the frame's pixels there are zeros too).
        rows, cols = slice(max(0, y0 - pad), min(H, y1 + pad)), slice(max(0, x0 - pad), min(W, x1 + pad))
        margins = (x0 - cols.start, cols.stop - x1, y0 - rows.start, rows.stop - y1)
        extend = tuple(pad - m for m in margins)  # what the frame lacks on each side (left, right, top, bottom)
        totals: list[torch.Tensor | None] = [None] * len(banks)
        for k, _ in entries:
            idx, inputs = sub_layer_inputs(k, members[k], rows, cols)
            padded = F.pad(inputs, extend, mode="reflect" if reflect else "replicate") if any(extend) else inputs
            spectrum = torch.fft.rfft2(padded.to(compute_dtype), s=size)[:, None]  # (n, 1, C + 1, h, w)
            for j, bank in enumerate(banks):
                kernel = _kernel_spectrum(bank, k, pad, size, device, compute_dtype)
                if idx is None:
                    if totals[j] is None:
                        totals[j] = spectrum * kernel[:, None]
                    else:
                        totals[j].addcmul_(spectrum, kernel[:, None])  # in place: no product tensor
                else:
                    product = spectrum * kernel[:, None]
                    if totals[j] is None:
                        totals[j] = product.new_zeros(B, *product.shape[1:])
                    totals[j].index_add_(0, idx, product)
        for j, total in enumerate(totals):  # one inverse FFT per bank (a stacked one is slower on the CPU)
            out = _inverse(total, size, slice(2 * pad, 2 * pad + h), slice(2 * pad, 2 * pad + w))
            accumulated[j, ..., y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] += out.to(dtype)
    return accumulated, window


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
    return render_layers_with_banks(layers, alpha, coc, [bank])[0]


def render_layers_with_banks(
    layers: torch.Tensor, alpha: torch.Tensor, coc: torch.Tensor, banks: Sequence[DualPixelPSFBank]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`render_layers` of the same scenes with each of ``banks`` (their ``max_coc`` and ``step`` equal, e.g.
    the cat-eye PSFs of a field-varying rendering): ``[(left, right), ...]``, one per bank, each as
    :func:`render_layers` returns it (up to float rounding), for the price of one forward FFT per sub-layer."""
    _check_shapes(layers, alpha, coc)
    if not banks:
        raise ValueError("`banks` must hold at least one DualPixelPSFBank.")
    bank = banks[0]
    if any(b.max_coc != bank.max_coc or b.step != bank.step for b in banks):
        raise ValueError("The banks must share `max_coc` and `step` (one sub-layer grid).")
    B, L, C, H, W = layers.shape
    position = coc.clamp(-bank.max_coc, bank.max_coc) / bank.step  # grid units
    on_device, present, low, high, boxes = _plan(alpha, position)
    views = layers.new_zeros(len(banks), B, 2, C, H, W)
    for layer in range(L):
        wanted = [b for b in range(B) if present[layer][b]]
        if not wanted:
            continue
        accumulated, (y0, y1, x0, x1) = _blur_layer(
            layers[:, layer], position[:, layer], alpha[:, layer], wanted, low[layer], high[layer], boxes[layer], banks
        )
        keep = None if len(wanted) == B else on_device[:, layer].view(1, B, 1, 1, 1, 1)
        if layer == 0:  # the background is normalised everywhere (its mask covers the frame where it is used)
            accumulated = F.pad(accumulated, (x0, W - x1, y0, H - y1))
            views = _composite_over(views, accumulated, keep, first=True)
        else:  # outside the window the layer adds no light and covers nothing: the views stay as they are there
            views[..., y0:y1, x0:x1] = _composite_over(views[..., y0:y1, x0:x1], accumulated, keep, first=False)
    views = views.clamp_min(0)
    return [(v[:, 0], v[:, 1]) for v in views]


def _render_layers_per_sublayer(
    layers: torch.Tensor, alpha: torch.Tensor, coc: torch.Tensor, bank: DualPixelPSFBank
) -> tuple[torch.Tensor, torch.Tensor]:
    """The former :func:`render_layers` (kept as the reference the tests and the throughput benchmark compare
    with): the grid range read from the device per layer, one FFT convolution per sub-layer."""
    _check_shapes(layers, alpha, coc)
    B, L, C, H, W = layers.shape
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
        views = _composite_over(views, accumulated, present.view(B, 1, 1, 1, 1), first=layer == 0)
    views = views.clamp_min(0)
    return views[:, 0], views[:, 1]


def _composite_over(views: torch.Tensor, accumulated: torch.Tensor, keep: torch.Tensor, first: bool) -> torch.Tensor:
    """One blurred layer over the views so far, ``(..., B, 2, C, H, W)`` (a leading bank axis or none):
    ``accumulated`` ``(..., B, 2, C + 1, H, W)`` holds the premultiplied colour and the blurred coverage; the first
    (farthest) layer is normalised by its coverage instead. Scenes where ``keep`` (``B`` on its batch axis, ones
    elsewhere) is False keep their views; ``keep=None`` keeps none."""
    C = views.shape[-3]
    premultiplied, coverage = accumulated[..., :C, :, :], accumulated[..., C:, :, :]
    if first:
        composited = premultiplied / coverage.clamp_min(1e-6)
    else:
        composited = premultiplied + (1 - coverage.clamp(0, 1)) * views
    return composited if keep is None else torch.where(keep, composited, views)


def composite_sharp(layers: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """All-in-focus ``(B, C, H, W)`` image: the unblurred layers composited far to near."""
    out = layers[:, 0]
    for layer in range(1, layers.shape[1]):
        a = alpha[:, layer]
        out = a * layers[:, layer] + (1 - a) * out
    return out
