"""Losses of both training stages.

Stage 1 (defocus map + learnable kernel): Eq. 2 reblur loss and Eq. 5's smoothness prior, ``defocus_map_loss``.
Stage 2 (DefocusGAN): Eq. 8, ``L_G = L_c + α·L_p + β·L_defocusadv``: L1 content loss, VGG19-conv3_3 perceptual loss,
and the defocus adversarial loss of Eq. 7 (critic scores weighted by φ(DM)) trained as a WGAN-GP.

Every loss returns ``(total, components)``: ``total`` is the differentiable scalar, ``components`` a dict of
detached scalars for logging. Images are ``(B, 3, H, W)`` in [0, 1]; ``coc`` is ``(B, 1, H, W)``, signed, in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.dual_pixel import dual_pixel_view_kernels
from ..models.reblur import bank_layers, reblur, search_coc, search_signed_coc
from ..perceptual.vgg import VGG19Features

# The released code's absolute weights. With Adam only the ratios matter much, and they are the paper's:
# stage 2: 0.5 : 0.006 : 0.001 = 1 : 0.012 : 0.002; stage 1: L1 x 1000 + TV x 1e-5.
RELEASED_GENERATOR_WEIGHTS = {"content_weight": 0.5, "perceptual_weight": 0.006, "adversarial_weight": 0.001}
RELEASED_DEFOCUS_MAP_WEIGHTS = {"reblur_weight": 1000.0, "smoothness_weight": 1e-5}


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")


# --------------------------------------------------------------------------------------------------------------
# Stage 1: Eq. 2 and Eq. 5
# --------------------------------------------------------------------------------------------------------------


def reblur_loss(
    sharp: torch.Tensor,
    blurred: torch.Tensor,
    coc: torch.Tensor,
    kernels: torch.Tensor,
    layers: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 2: mean ``|reblur(sharp, coc, kernels) − blurred|``, differentiable in ``coc`` and ``kernels``.

    Args:
        sharp: ``(B, C, H, W)`` all-in-focus image in [0, 1].
        blurred: ``(B, C, H, W)`` observed defocused image in [0, 1].
        coc: ``(B, 1, H, W)`` signed CoC radius in pixels.
        kernels: ``(S, R + 1, K, K)`` kernel bank, e.g. ``LearnableBlurKernel()()``.
        layers: optional ``bank_layers(sharp, kernels)``, computed once by the caller (see :func:`reblur`).
    """
    _check_pair(sharp, blurred, "`sharp` and `blurred`")
    return F.l1_loss(reblur(sharp, coc, kernels, layers), blurred)


def smoothness_loss(coc: torch.Tensor) -> torch.Tensor:
    """Eq. 5's ``‖∇DM‖``: anisotropic total variation, ``mean|∂x coc| + mean|∂y coc|`` (pixels per pixel).

    ``coc`` is ``(B, 1, H, W)``. Zero for a constant map; a size-1 axis contributes nothing.
    """
    if coc.dim() != 4:
        raise ValueError(f"Expected a map (B, 1, H, W), got {tuple(coc.shape)}.")
    total = coc.new_zeros(())
    if coc.shape[-1] > 1:
        total = total + coc.diff(dim=-1).abs().mean()
    if coc.shape[-2] > 1:
        total = total + coc.diff(dim=-2).abs().mean()
    return total


def search_target(
    sharp: torch.Tensor,
    blurred: torch.Tensor,
    kernels: torch.Tensor,
    window_sigma: float = 8.0,
    views: tuple[torch.Tensor, torch.Tensor] | None = None,
    layers: torch.Tensor | None = None,
) -> torch.Tensor:
    """The search term's target ``(B, 1, H, W)`` in px, without gradient: ``|CoC|`` from the combined image
    (:func:`~defocusgan_hf.models.reblur.search_coc`, reusing ``layers = bank_layers(sharp, kernels)`` when given),
    or with ``views = (left, right)`` the signed CoC from the DP views
    (:func:`~defocusgan_hf.models.reblur.search_signed_coc` with the kernels split into half-aperture PSFs)."""
    kernels = kernels.detach()
    if views is None:
        return search_coc(sharp, blurred, kernels, window_sigma, None if layers is None else layers.detach())
    return search_signed_coc(sharp, *views, dual_pixel_view_kernels(kernels), window_sigma)


def defocus_map_loss(
    sharp: torch.Tensor,
    blurred: torch.Tensor,
    coc: torch.Tensor,
    kernels: torch.Tensor,
    smoothness_weight: float = 1e-5,
    reblur_weight: float = 1.0,
    search_weight: float = 0.0,
    search_window_sigma: float = 8.0,
    search_views: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 5: ``L_DM = reblur_weight · L_gem + smoothness_weight · ‖∇coc‖`` (+ our optional search term).

    The paper's λ is ``smoothness_weight`` (1e-5). The released code scales the L1 term by 1000 as well
    (``**RELEASED_DEFOCUS_MAP_WEIGHTS``: ``reblur_weight=1000``), and switches the smoothness term on after 3,000
    steps (pass ``smoothness_weight=0`` before that).

    ``search_weight > 0`` adds a term that is not in the paper: ``mean| |coc| − search_coc(sharp, blurred) |`` (px),
    the L1 to the radius that an exhaustive per-pixel search of the same Eq. 2 residual finds
    (:func:`~defocusgan_hf.models.reblur.search_coc`, window ``search_window_sigma`` px, kernels detached). It uses
    no ground truth either; it gives the net the loss's global minimum where the gradient of Eq. 2 only sees the
    neighbouring radius. With ``search_views = (left, right)``, the DP views ``(B, C, H, W)`` in [0, 1], the target
    is the *signed* radius that explains both views under the kernels split into half-aperture PSFs
    (:func:`~defocusgan_hf.models.reblur.search_signed_coc`) and the term is ``mean|coc − target|``: the combined
    image cannot tell the two sides of the focal plane apart, the views can. Returns
    ``(total, {"reblur", "smoothness"[, "search"]})``, the components unweighted.
    """
    if reblur_weight < 0 or smoothness_weight < 0 or search_weight < 0:
        raise ValueError(
            f"Loss weights must be >= 0, got reblur {reblur_weight}, smoothness {smoothness_weight}, "
            f"search {search_weight}."
        )
    # With the combined-image search, every layer is needed anyway: convolve the image with the bank once for both.
    layers = bank_layers(sharp, kernels) if search_weight > 0 and search_views is None else None
    geometric = reblur_loss(sharp, blurred, coc, kernels, layers)
    smooth = smoothness_loss(coc) if smoothness_weight > 0 else coc.new_zeros(())
    total = reblur_weight * geometric + smoothness_weight * smooth
    parts = {"reblur": geometric.detach(), "smoothness": smooth.detach()}
    if search_weight > 0:
        target = search_target(sharp, blurred, kernels, search_window_sigma, search_views, layers)
        searched = F.l1_loss(coc.abs() if search_views is None else coc, target)
        total = total + search_weight * searched
        parts["search"] = searched.detach()
    return total, parts


# --------------------------------------------------------------------------------------------------------------
# Stage 2: Eq. 7 (defocus adversarial loss, WGAN-GP) and Eq. 8
# --------------------------------------------------------------------------------------------------------------

WEIGHT_MODES = ("defocus", "uniform")


def defocus_weights(
    coc: torch.Tensor,
    size: Sequence[int] | torch.Tensor,
    max_coc: float = 25.0,
    gamma: float = 4.0,
    mode: str = "defocus",
) -> torch.Tensor:
    """φ(DM) of Eq. 7: per-patch weights ``(B, 1, h, w)`` for the critic's scores, mean 1 per image.

    ``"defocus"``: ``w = 1 + gamma · min(|coc|, max_coc) / max_coc``, averaged over each critic patch
    (adaptive average pooling to ``size``), then divided by its per-image mean. Monotone and continuous in the
    CoC radius, as the paper asks ("the larger the radius of the CoC ... the greater the defocus weight"); the
    paper gives no formula, so this is our choice. With the defaults a patch at 6.2 px (the top threshold of the
    released guidance bins) weighs about twice an in-focus one, and one at 25 px five times; in-focus patches
    keep a non-zero weight. ``"uniform"``: all ones (Table 6's plain adversarial loss). The weights carry no
    gradient to ``coc``.

    Args:
        coc: ``(B, 1, H, W)`` signed CoC radius in pixels (only ``|coc|`` is used).
        size: the critic's score-map size ``(h, w)``, e.g. ``critic.output_size(H, W)``, or a score tensor.
        max_coc: radius (pixels) at which the weight saturates.
        gamma: extra weight at ``max_coc`` relative to an in-focus pixel, before normalisation.
        mode: ``"defocus"`` or ``"uniform"``.
    """
    if mode not in WEIGHT_MODES:
        raise ValueError(f"`mode` must be one of {WEIGHT_MODES}, got {mode!r}.")
    if max_coc <= 0 or gamma < 0:
        raise ValueError(f"Need max_coc > 0 and gamma >= 0, got max_coc={max_coc}, gamma={gamma}.")
    if coc.dim() != 4 or coc.shape[1] != 1:
        raise ValueError(f"Expected coc (B, 1, H, W), got {tuple(coc.shape)}.")
    h, w = (int(s) for s in (size.shape[-2:] if isinstance(size, torch.Tensor) else size))
    if mode == "uniform":
        return coc.new_ones(coc.shape[0], 1, h, w)
    radius = coc.detach().abs().clamp(max=max_coc)
    raw = 1.0 + gamma * F.adaptive_avg_pool2d(radius, (h, w)) / max_coc
    return raw / raw.mean(dim=(-2, -1), keepdim=True)


def _weighted_mean(scores: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``mean(weights · scores)`` over batch and patches; a plain mean when ``weights`` is None."""
    if weights is None:
        return scores.mean()
    if weights.shape[-2:] != scores.shape[-2:] or weights.shape[0] not in (1, scores.shape[0]):
        raise ValueError(
            f"`weights` {tuple(weights.shape)} must match the critic's scores {tuple(scores.shape)}; build them "
            "with `defocus_weights(coc, critic.output_size(H, W))`."
        )
    return (weights * scores).mean()


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP term (Gulrajani et al. 2017): ``mean((‖∇x̂ Σ D(x̂)‖₂ − 1)²)`` on random interpolates.

    ``x̂ = ε·real + (1 − ε)·fake`` with one ``ε ~ U[0, 1]`` per sample (drawn from ``generator`` when given, for
    determinism). The gradient is that of the *unweighted* sum of the sample's patch scores, taken with respect
    to the [0, 1] image, as in DeblurGAN-v2's PatchGAN critic: the penalty constrains the critic itself,
    whatever φ later weighs its patches with. Built with ``create_graph=True`` so it trains the critic.
    """
    _check_pair(real, fake, "`real` and `fake`")
    device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=device, dtype=real.dtype).to(real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def critic_loss(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    weights: torch.Tensor | None = None,
    gp_weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Critic step of the defocus-weighted WGAN-GP: ``mean(w·D(fake)) − mean(w·D(real)) + gp_weight·GP``.

    ``fake`` is detached here, so the deblurring network gets no gradient from this loss. ``weights`` come from
    :func:`defocus_weights` (None = uniform). Returns ``(total, {"wasserstein", "gradient_penalty",
    "real_score", "fake_score"})`` where ``wasserstein = mean(w·D(real)) − mean(w·D(fake))`` is the critic's
    estimate of the (weighted) Wasserstein distance and ``gradient_penalty`` is unweighted.
    """
    _check_pair(real, fake, "`real` and `fake`")
    if gp_weight < 0:
        raise ValueError(f"`gp_weight` must be >= 0, got {gp_weight}.")
    fake = fake.detach()
    # One critic call for both batches: InstanceNorm is per sample, so this equals two separate calls.
    real_scores, fake_scores = critic(torch.cat([real, fake])).chunk(2)
    real_term, fake_term = _weighted_mean(real_scores, weights), _weighted_mean(fake_scores, weights)
    wasserstein = real_term - fake_term
    penalty = gradient_penalty(critic, real, fake, generator) if gp_weight > 0 else real.new_zeros(())
    total = -wasserstein + gp_weight * penalty
    components = {
        "wasserstein": wasserstein,
        "gradient_penalty": penalty,
        "real_score": real_term,
        "fake_score": fake_term,
    }
    return total, {k: v.detach() for k, v in components.items()}


def generator_adversarial_loss(
    critic: nn.Module, fake: torch.Tensor, weights: torch.Tensor | None = None, freeze_critic: bool = True
) -> torch.Tensor:
    """Eq. 7: ``L_defocusadv = −mean(φ(DM) · D(G(I_OoF)))``, differentiable in ``fake``.

    With ``freeze_critic`` (default) the critic's parameters have ``requires_grad`` switched off during the
    forward pass (and restored after), so backpropagating this loss leaves their ``.grad`` untouched. Under
    DDP, pass the unwrapped critic (``accelerator.unwrap_model(critic)``) for this call, or use
    ``freeze_critic=False`` and zero the critic's gradients before its own step.
    """
    if not freeze_critic:
        return -_weighted_mean(critic(fake), weights)
    params = [p for p in critic.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        scores = critic(fake)
    finally:
        for p in params:
            p.requires_grad_(True)
    return -_weighted_mean(scores, weights)


class PerceptualLoss(nn.Module):
    """``L_p``: MSE between frozen VGG19 features (conv3_3 by default) of ``restored`` and ``sharp``, both [0, 1].

    Gradients flow to ``restored`` only. ``vgg`` defaults to random weights (tests only): use
    ``PerceptualLoss(VGG19Features.from_pretrained(path))`` for training.
    """

    def __init__(self, vgg: VGG19Features | None = None):
        super().__init__()
        self.vgg = vgg if vgg is not None else VGG19Features()

    def forward(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        _check_pair(restored, sharp, "`restored` and `sharp`")
        with torch.no_grad():
            target = self.vgg(sharp)
        return F.mse_loss(self.vgg(restored), target)


class GeneratorLoss(nn.Module):
    """Eq. 8: ``L_G = content_weight·L1 + perceptual_weight·L_p + adversarial_weight·L_defocusadv``.

    Defaults are the paper's α = 0.012 and β = 0.002 with a unit content weight. The released code uses
    0.5 / 0.006 / 0.001, the same ratios: ``GeneratorLoss(**RELEASED_GENERATOR_WEIGHTS, perceptual=...)``.
    A term whose weight is 0 is not computed (reported as 0); with ``perceptual_weight=0`` no VGG is needed.

    Args:
        content_weight, perceptual_weight, adversarial_weight: the term weights, each >= 0.
        perceptual: the :class:`PerceptualLoss` (with ImageNet VGG19 weights); required when
            ``perceptual_weight > 0``.
    """

    def __init__(
        self,
        content_weight: float = 1.0,
        perceptual_weight: float = 0.012,
        adversarial_weight: float = 0.002,
        perceptual: PerceptualLoss | None = None,
    ):
        super().__init__()
        weights = {"content": content_weight, "perceptual": perceptual_weight, "adversarial": adversarial_weight}
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"Loss weights must be >= 0, got {weights}.")
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError(
                f"`perceptual_weight` is {perceptual_weight} but no `perceptual` loss was given: pass "
                "`PerceptualLoss(VGG19Features.from_pretrained(path))`, or set the perceptual weight to 0."
            )
        self.content_weight, self.perceptual_weight, self.adversarial_weight = (
            content_weight,
            perceptual_weight,
            adversarial_weight,
        )
        self.perceptual = perceptual if perceptual_weight > 0 else None

    def forward(
        self,
        restored: torch.Tensor,
        sharp: torch.Tensor,
        critic: nn.Module | None = None,
        weights: torch.Tensor | None = None,
        freeze_critic: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``restored``, ``sharp``: ``(B, 3, H, W)`` in [0, 1]. ``critic=None`` leaves the adversarial term out
        (e.g. before the adversarial warm-up ends); ``weights`` as for :func:`generator_adversarial_loss`.

        Returns ``(total, {"content", "perceptual", "adversarial"})``, the components unweighted.
        """
        _check_pair(restored, sharp, "`restored` and `sharp`")
        zero = restored.new_zeros(())
        content = F.l1_loss(restored, sharp) if self.content_weight > 0 else zero
        perceptual = self.perceptual(restored, sharp) if self.perceptual is not None else zero
        use_adv = critic is not None and self.adversarial_weight > 0
        adversarial = generator_adversarial_loss(critic, restored, weights, freeze_critic) if use_adv else zero
        total = (
            self.content_weight * content + self.perceptual_weight * perceptual + self.adversarial_weight * adversarial
        )
        components = {"content": content, "perceptual": perceptual, "adversarial": adversarial}
        return total, {k: v.detach() for k, v in components.items()}
