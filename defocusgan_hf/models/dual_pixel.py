"""The dual-pixel (DP) half-aperture split of the paper's Eq. 3 kernel: view PSFs of one radius and of a whole bank.

Shared by the synthetic-data renderer (:mod:`defocusgan_hf.data.psf`) and the stage-1 losses
(:func:`~defocusgan_hf.training.losses.search_target`).

The combined PSF of a CoC radius ``r`` is exactly :func:`~defocusgan_hf.models.blur_kernel.butterworth_disc_kernel`
(the Butterworth-weighted, Gaussian-smoothed disc). A DP sensor splits every pixel under its microlens into a left
and a right photodiode, each seeing one half of the lens aperture; the two view PSFs are therefore the combined
PSF times two complementary aperture masks::

    m_left(u) = (1 - falloff) * sigmoid(-u / softness) + falloff * (1 - clip(u, -1, 1)) / 2,   u = x / r
    m_right(u) = m_left(-u) = 1 - m_left(u)

``x`` is the horizontal offset in pixels from the PSF centre. The sigmoid is the soft split between the two halves
(``softness`` as a fraction of the radius); the linear ramp is the light fall-off across the half-aperture that
DP sensors show (a photodiode is most sensitive at its own edge of the aperture and sees some light from the other
half). Because ``m_left + m_right = 1`` and the combined PSF is mirror-symmetric, each view holds exactly half of
the light. The view PSFs are returned **normalised to sum 1 each**, so that

    combined = (left + right) / 2      (PSFs and rendered images alike)

On the far side of focus (``coc > 0``) the left view gets ``m_left``; on the near side (``coc < 0``) the masks are
swapped, so the left/right disparity changes sign at the focal plane. With a true convolution, far content is
displaced to the left in the left view and to the right in the right view. (A horizontal flip of a DP pair turns
one convention into the other if the two views are swapped at the same time.)
"""

from __future__ import annotations

import math

import torch

from .blur_kernel import butterworth_disc_kernel

DEFAULT_SPLIT_SOFTNESS = 0.15
DEFAULT_LIGHT_FALLOFF = 0.3


def aperture_masks(
    size: int,
    radius: float,
    softness: float = DEFAULT_SPLIT_SOFTNESS,
    falloff: float = DEFAULT_LIGHT_FALLOFF,
    offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Complementary ``(size, size)`` masks ``(m_left, m_right)`` of the far side of focus; they sum to 1.

    ``offset`` moves the split off the aperture's centre (a fraction of the radius, > 0 to the right): the two
    half-apertures then differ in size, as on sensors whose photodiodes are not centred under the microlens."""
    if not 0.0 < softness:
        raise ValueError(f"`softness` must be > 0 (a fraction of the radius), got {softness}.")
    if not 0.0 <= falloff <= 1.0:
        raise ValueError(f"`falloff` must be in [0, 1], got {falloff}.")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    u = x / max(radius, 1e-6)
    left = (1 - falloff) * torch.sigmoid(-(u - offset) / softness) + falloff * (1 - u.clamp(-1, 1)) / 2
    left = left.expand(size, size)
    return left.float(), (1 - left).float()


def dual_pixel_psf(
    coc: float, softness: float = DEFAULT_SPLIT_SOFTNESS, falloff: float = DEFAULT_LIGHT_FALLOFF
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right view PSFs ``(K, K)`` for a signed CoC radius ``coc`` in pixels, each summing to 1.

    ``K`` is the default support of ``butterworth_disc_kernel(|coc|)``; ``(left + right) / 2`` equals that kernel.
    ``coc = 0`` gives two identical deltas.
    """
    if not math.isfinite(coc):
        raise ValueError(f"`coc` must be a finite number of pixels, got {coc}.")
    combined = butterworth_disc_kernel(abs(float(coc)))
    if coc == 0:
        return combined.clone(), combined.clone()
    m_left, m_right = aperture_masks(combined.shape[-1], abs(coc), softness, falloff)
    left, right = 2 * combined * m_left, 2 * combined * m_right
    return (left, right) if coc > 0 else (right, left)


def dual_pixel_view_kernels(
    kernels: torch.Tensor, softness: float = DEFAULT_SPLIT_SOFTNESS, falloff: float = DEFAULT_LIGHT_FALLOFF
) -> torch.Tensor:
    """Split a bank of combined PSFs into the DP views' PSFs, on a signed radius axis.

    Args:
        kernels: ``(S, R + 1, K, K)`` combined PSFs of the radii 0..R (e.g. the learned stage-1 bank; side 0
            behind the focal plane, side 1 in front; ``S = 1`` or a ``(R + 1, K, K)`` bank serves both sides).
        softness, falloff: the half-aperture model of :func:`aperture_masks` (the renderer's by default).

    Returns:
        ``(2, 2R + 1, K, K)``: the (left, right) view PSFs of the signed radii ``-R..R`` (index ``c + R``), each
        summing to 1. Behind focus (``c > 0``) the left view gets ``m_left``, in front the masks swap, as in
        :func:`dual_pixel_psf`; radius 0 is the combined kernel for both views.
    """
    if kernels.dim() == 3:
        kernels = kernels[None]
    if kernels.dim() != 4 or kernels.shape[0] not in (1, 2) or kernels.shape[-1] != kernels.shape[-2]:
        raise ValueError(f"`kernels` must be (S, R+1, K, K) with S in (1, 2), got {tuple(kernels.shape)}.")
    num_radii, size = kernels.shape[1], kernels.shape[-1]
    if num_radii < 2:
        raise ValueError("`kernels` must hold at least the radii 0 and 1.")
    masks = torch.stack([torch.stack(aperture_masks(size, r, softness, falloff)) for r in range(1, num_radii)])
    masks = masks.to(kernels)  # (R, 2, K, K): (m_left, m_right) of each radius
    behind = kernels[0, 1:, None] * masks  # (R, 2, K, K): (left, right) view PSFs behind focus
    in_front = kernels[-1, 1:, None] * masks.flip(1)  # masks swapped in front of the focal plane
    behind = behind / behind.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    in_front = in_front / in_front.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    zero = kernels[0, :1]  # (1, K, K)
    views = [torch.cat([in_front[:, v].flip(0), zero, behind[:, v]]) for v in (0, 1)]  # radii -R..-1, 0, 1..R
    return torch.stack(views)
