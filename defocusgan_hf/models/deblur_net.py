"""The DefocusGAN generator (paper, "DefocusGAN Generator", Eq. 6): a multi-scale cascade of defocus-map guide
blocks (DGB). Each DGB has 4 U-Net-like branches (plain conv / 1 / 2 / 3 RCAB per layer); 4 masks cut from the
CoC map gate the branches with weight w, ``gate = mask * w + (1 - w)``, and training anneals w to 0 so that
inference takes the image alone. The coarse scales (1/4, 1/8) re-enter the same branch modules at deeper
pyramid levels (shared weights, fewer levels): the paper's "smaller DGBs at coarse scales".

Cost: the pyramid starts at stride 2 behind a lossless space-to-depth stem (``stem_stride=2``: pixel unshuffle
+ 3x3 conv in, 3x3 conv + pixel shuffle out, as in FFDNet), so no branch runs at full resolution, and the 1/8
DGB reaches stride 32, where most parameters sit (128 channels at 1/1024 of the pixels). At 512x512 this is 6.7
GMACs instead of 25.9 for the first layout (``stem_stride=1``, DGB levels 4/3/2, kept for the checkpoints trained
with it), with the same parameters: ``python benchmarks/bench_generator.py --compare_only`` measures both beside
a plain U-Net of equal size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from .blocks import RCAB, MultiBranchBlock, conv1x1, conv3x3, pad_to_multiple

# diffusers' pipeline loader looks `ModelMixin` up in the module that defines a component: keep it importable here.
from .modeling_utils import ModelMixin, StrictConfigModel  # noqa: F401


@dataclass
class DefocusDeblurNetOutput(BaseOutput):
    """
    Args:
        sample: ``(B, 3, H, W)`` restored all-in-focus image in [0, 1].
    """

    sample: torch.Tensor


def defocus_masks(coc: torch.Tensor, thresholds: tuple[float, ...]) -> torch.Tensor:
    """One-hot CoC bins: ``coc`` ``(B, 1, H, W)`` signed px -> ``(B, len(thresholds) + 1, H, W)`` in {0, 1}.

    Bin i holds the pixels with ``thresholds[i - 1] <= |coc| < thresholds[i]`` (released code: 1.9 / 4.2 / 6.2 px).
    """
    edges = torch.tensor(thresholds, dtype=coc.dtype, device=coc.device)
    index = torch.bucketize(coc.abs(), edges, right=True)  # (B, 1, H, W) in 0..len(thresholds)
    return F.one_hot(index[:, 0], len(thresholds) + 1).permute(0, 3, 1, 2).to(coc.dtype)


GENERATOR_PRESETS: dict[str, dict] = {
    # ours, the default: stride-2 stem, nothing learned at full resolution, 4.69M parameters, 6.7 GMACs at 512²
    "lean": {},
    # the first layout: the same channels from full resolution (8 there), DGB levels 4/3/2, 4.69M, 25.9 GMACs
    "full_res": {"stem_stride": 1, "levels_per_scale": (4, 3, 2)},
    # wider at full resolution: 16 channels there, 7.0M parameters, 79 GMACs
    "full_res16": {"stem_stride": 1, "levels_per_scale": (4, 3, 2), "level_channels": (16, 24, 48, 96, 128)},
    # the paper's released code: 64 channels throughout from full resolution, 5.0M parameters, 369 GMACs
    "paper": {"stem_stride": 1, "levels_per_scale": (4, 3, 2), "level_channels": (64, 64, 64, 64, 64)},
}
"""Named generator configurations (``DefocusDeblurNet.from_preset``); parameters and GMACs at 512x512 from
``python benchmarks/bench_generator.py --compare_only``."""


def guidance_weight_at(step: int, anneal_steps: float = 2e4) -> float:
    """The released code's annealing of the mask weight: ``w = exp(-(2 * step / anneal_steps) ** 2)``.

    w = 1 at step 0, 0.37 at ``anneal_steps / 2``, 0.018 at ``anneal_steps``; 0 when ``anneal_steps`` is 0.
    """
    if anneal_steps <= 0:
        return 0.0
    return math.exp(-((2.0 * step / anneal_steps) ** 2))


class DefocusDeblurNet(StrictConfigModel):
    """DefocusGAN generator. ``forward(image)``: ``(B, 3, H, W)`` blurred image in [0, 1], any H×W
    -> :class:`DefocusDeblurNetOutput` with the restored image in [0, 1] (residual on the input, clamped).

    Args:
        level_channels: channels of pyramid level l, which works at stride ``stem_stride * 2**l``. Narrow at high
            resolution, wide at low resolution: that is where the parameters are cheap to run.
        branch_depths: per branch, 0 = a plain 3x3 conv layer, n = n RCABs per layer (paper: 0, 1, 2, 3).
        block_type: ``"rcab"``, or ``"conv"`` for Table 4's ablation without RCAB (each RCAB -> two plain convs).
        scales: downsampling factor of each DGB (powers of 2, the first 1). ``(1,)`` is Table 4's single scale.
        levels_per_scale: pyramid levels (U-Net depth) of the DGB at each scale; 4 levels = 8 layers per branch.
        mask_thresholds: |CoC| bin edges in px that cut the 4 defocus masks.
        max_coc: largest CoC radius in px that the guidance map may hold.
        stem_stride: stride of level 0 (a power of 2): the image enters by pixel unshuffle and leaves by pixel
            shuffle, both lossless. A scale's DGB starts at the level of its own stride (scale 1: level 0).
        output_residual: ``"rgb"``, a residual per colour channel, or ``"luma"``, one residual added to all three
            channels: the output's colour differences (R - G, B - G) are the input's, so grey stays exactly grey
            and no false colour can appear (:func:`to_luma_residual` converts an RGB net).
        residual_lowpass_sigma: brightness preservation. ``None`` (the default): off. A value ``s`` in px removes
            the residual's Gaussian low-pass of standard deviation ``s`` (:func:`gaussian_lowpass`), so the output
            keeps the input's local mean at scales above ``s``, as blur does (a PSF sums to 1): the net can
            sharpen but not darken or brighten regions. A post-processing of the output, no parameters.
        refine_channels: capacity by growth. 0 (the default): none. ``C > 0`` adds a full-resolution refinement
            level (image, the upsampled level-0 features and the coarse residual -> conv, RCAB, conv with ``C``
            channels) whose residual is added to the net's; its last conv starts at zero, so a grown net computes
            exactly what the net it grew from computed (:func:`grow_refinement`).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        level_channels: tuple[int, ...] = (8, 12, 24, 48, 128),
        branch_depths: tuple[int, ...] = (0, 1, 2, 3),
        block_type: str = "rcab",
        scales: tuple[int, ...] = (1, 4, 8),
        levels_per_scale: tuple[int, ...] = (4, 3, 3),
        mask_thresholds: tuple[float, ...] = (1.9, 4.2, 6.2),
        max_coc: float = 25.0,
        stem_stride: int = 2,
        output_residual: str = "rgb",
        residual_lowpass_sigma: float | None = None,
        refine_channels: int = 0,
    ):
        super().__init__()
        level_channels, branch_depths = tuple(level_channels), tuple(branch_depths)
        scales, levels_per_scale = tuple(scales), tuple(levels_per_scale)
        if (
            not scales
            or scales[0] != 1
            or any(s <= 0 or s & (s - 1) for s in scales)
            or list(scales) != sorted(set(scales))
        ):
            raise ValueError(f"`scales` must be increasing powers of 2 starting at 1, got {scales}.")
        if len(levels_per_scale) != len(scales) or min(levels_per_scale) < 1:
            raise ValueError(f"`levels_per_scale` needs one entry >= 1 per scale {scales}, got {levels_per_scale}.")
        if len(mask_thresholds) + 1 != len(branch_depths) or list(mask_thresholds) != sorted(mask_thresholds):
            raise ValueError(
                f"{len(branch_depths)} branches need {len(branch_depths) - 1} increasing `mask_thresholds`, "
                f"got {mask_thresholds}."
            )
        if block_type not in ("rcab", "conv"):
            raise ValueError(f"`block_type` must be 'rcab' or 'conv', got {block_type!r}.")
        if output_residual not in ("rgb", "luma"):
            raise ValueError(f"`output_residual` must be 'rgb' or 'luma', got {output_residual!r}.")
        if residual_lowpass_sigma is not None and not residual_lowpass_sigma > 0:
            raise ValueError(f"`residual_lowpass_sigma` must be None or > 0 px, got {residual_lowpass_sigma}.")
        if stem_stride < 1 or stem_stride & (stem_stride - 1):
            raise ValueError(f"`stem_stride` must be a power of 2, got {stem_stride}.")
        stem_level = int(math.log2(stem_stride))
        self.first_levels = tuple(max(int(math.log2(s)) - stem_level, 0) for s in scales)
        if len(set(self.first_levels)) != len(scales):
            raise ValueError(f"`scales` {scales} must all be >= 2 x `stem_stride` ({stem_stride}) but the first.")
        deepest = max(f + n for f, n in zip(self.first_levels, levels_per_scale))
        if len(level_channels) < deepest or min(level_channels) < 1:
            raise ValueError(
                f"`level_channels` needs {deepest} positive entries for these scales, got {level_channels}."
            )
        self.stride = stem_stride * 2 ** (deepest - 1)

        # The stem: pixel (un)shuffle around `head` and `tail` in forward (no parameters: same keys for every stride).
        self.head = conv3x3(in_channels * stem_stride**2, level_channels[0])
        self.block = MultiBranchBlock(level_channels[:deepest], branch_depths, block_type)
        # Between scales: the finer scale's output is pooled and projected, the downsampled image is added in.
        self.scale_downs = nn.ModuleList()
        self.image_heads = nn.ModuleList()
        self.scale_ups = nn.ModuleList()
        for fine, coarse in zip(self.first_levels, self.first_levels[1:]):
            self.scale_downs.append(conv1x1(level_channels[fine], level_channels[coarse]))
            self.image_heads.append(conv3x3(in_channels, level_channels[coarse]))
            self.scale_ups.append(conv1x1(level_channels[coarse], level_channels[fine]))
        out_channels = 1 if output_residual == "luma" else in_channels
        self.tail = conv3x3(level_channels[0], out_channels * stem_stride**2)
        nn.init.zeros_(self.tail.weight)  # starts as the identity: restored == input
        nn.init.zeros_(self.tail.bias)
        self.refine = None
        if refine_channels < 0:
            raise ValueError(f"`refine_channels` must be >= 0, got {refine_channels}.")
        if refine_channels:
            self.refine = nn.Sequential(
                conv3x3(in_channels + level_channels[0] + out_channels, refine_channels),
                nn.LeakyReLU(0.2, inplace=True),
                RCAB(refine_channels),
                conv3x3(refine_channels, out_channels),
            )
            nn.init.zeros_(self.refine[-1].weight)  # adds nothing at first: the grown net is the net it grew from
            nn.init.zeros_(self.refine[-1].bias)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> DefocusDeblurNet:
        """A new, untrained generator of a :data:`GENERATOR_PRESETS` layout (``overrides`` change its config)."""
        if name not in GENERATOR_PRESETS:
            raise ValueError(f"Unknown generator preset {name!r}; choose from {sorted(GENERATOR_PRESETS)}.")
        return cls(**{**GENERATOR_PRESETS[name], **overrides})

    def guidance_gates(self, coc: torch.Tensor | None, guidance_weight: float) -> torch.Tensor | None:
        """``(B, 4, H, W)`` gates ``mask * w + (1 - w)``, or ``None`` when there is no guidance (w = 0 or no map)."""
        if coc is None or guidance_weight <= 0:
            return None
        if not 0 <= guidance_weight <= 1:
            raise ValueError(f"`guidance_weight` must be in [0, 1], got {guidance_weight}.")
        masks = defocus_masks(coc.clamp(-self.config.max_coc, self.config.max_coc), self.config.mask_thresholds)
        return masks * guidance_weight + (1.0 - guidance_weight)

    def forward(
        self,
        image: torch.Tensor,
        coc: torch.Tensor | None = None,
        guidance_weight: float = 0.0,
        return_dict: bool = True,
    ) -> DefocusDeblurNetOutput | tuple[torch.Tensor]:
        """
        Args:
            image: ``(B, 3, H, W)`` defocus-blurred image in [0, 1].
            coc: optional ``(B, 1, H, W)`` signed CoC map in px, used only for training guidance.
            guidance_weight: mask weight w in [0, 1] (see :func:`guidance_weight_at`); 0 ignores ``coc``.
        """
        if image.dim() != 4 or image.shape[1] != self.config.in_channels:
            raise ValueError(f"Expected image (B, {self.config.in_channels}, H, W), got {tuple(image.shape)}.")
        if coc is not None and (
            coc.shape[0] != image.shape[0] or coc.shape[1] != 1 or coc.shape[-2:] != image.shape[-2:]
        ):
            raise ValueError(
                f"`coc` must be (B, 1, H, W) matching the image {tuple(image.shape)}, got {tuple(coc.shape)}."
            )
        x, (h, w) = pad_to_multiple(image, self.stride)
        gates = self.guidance_gates(None if coc is None else pad_to_multiple(coc, self.stride)[0], guidance_weight)
        outputs = []
        stem = self.config.stem_stride
        features = self.head(F.pixel_unshuffle(x, stem))
        for index, (scale, first, levels) in enumerate(
            zip(self.config.scales, self.first_levels, self.config.levels_per_scale)
        ):
            stride = stem * 2**first  # of this scale's features: `scale` itself, but for scale 1
            if index > 0:
                features = self.scale_downs[index - 1](
                    F.avg_pool2d(features, 2 ** (first - self.first_levels[index - 1]))
                )
                features = features + self.image_heads[index - 1](F.avg_pool2d(x, scale))
            scale_gates = None if gates is None else F.avg_pool2d(gates, stride) if stride > 1 else gates
            features = self.block(features, first, levels, scale_gates)
            outputs.append(features)
        fused = outputs[-1]
        for index in range(len(outputs) - 2, -1, -1):
            factor = 2 ** (self.first_levels[index + 1] - self.first_levels[index])
            up = F.interpolate(fused, scale_factor=float(factor), mode="bilinear", align_corners=False)
            fused = outputs[index] + self.scale_ups[index](up)
        residual = F.pixel_shuffle(self.tail(fused), stem)  # (B, 3 or 1, H, W); a luma residual broadcasts
        if self.refine is not None:
            upsampled = F.interpolate(fused, scale_factor=float(stem), mode="bilinear", align_corners=False)
            residual = residual + self.refine(torch.cat([x, upsampled, residual], dim=1))
        residual = residual[..., :h, :w]
        if self.config.residual_lowpass_sigma is not None:
            residual = residual - gaussian_lowpass(residual, self.config.residual_lowpass_sigma)
        restored = (image + residual).clamp(0.0, 1.0)
        if not return_dict:
            return (restored,)
        return DefocusDeblurNetOutput(sample=restored)


def gaussian_lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(B, C, H, W)`` blurred by a Gaussian of standard deviation ``sigma`` px (truncated at 3 sigma), separable,
    mirrored at the borders (replicated where the image is smaller than the kernel's radius), so it keeps the mean.

    Written here because torchvision's and kornia's Gaussian blurs are not dependencies of this package (see
    README), and the separable convolution is four lines."""
    radius = max(1, math.ceil(3.0 * sigma))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    out = F.pad(x, (radius, radius, 0, 0), mode=mode)
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode=mode)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def grow_refinement(net: DefocusDeblurNet, channels: int) -> DefocusDeblurNet:
    """A copy of ``net`` with a zero-initialised full-resolution refinement level of ``channels`` channels
    (``refine_channels``): every other weight is ``net``'s, so its output is ``net``'s until it is trained."""
    if net.config.refine_channels:
        raise ValueError(f"This net already has a refinement level ({net.config.refine_channels} channels).")
    config = {k: v for k, v in net.config.items() if not k.startswith("_")}
    grown = DefocusDeblurNet(**{**config, "refine_channels": channels})
    missing, unexpected = grown.load_state_dict(net.state_dict(), strict=False)
    if unexpected or any(not key.startswith("refine.") for key in missing):
        raise RuntimeError(f"Unexpected weights when growing: missing {missing}, unexpected {unexpected}.")
    return grown.to(dtype=next(net.parameters()).dtype)


def to_luma_residual(net: DefocusDeblurNet) -> DefocusDeblurNet:
    """A copy of an ``output_residual="rgb"`` net whose residual is the mean of its three channel residuals
    (the tail's filters averaged over colour), added to every channel: the same weights elsewhere."""
    if net.config.output_residual == "luma":
        return net
    config = {k: v for k, v in net.config.items() if not k.startswith("_")}
    luma = DefocusDeblurNet(**{**config, "output_residual": "luma"})
    state = net.state_dict()
    stem, channels = net.config.stem_stride, net.config.in_channels
    # pixel_shuffle reads channel c * stem**2 + k as sub-pixel k of colour c: average over c for each k.
    state["tail.weight"] = state["tail.weight"].view(channels, stem**2, *state["tail.weight"].shape[1:]).mean(0)
    state["tail.bias"] = state["tail.bias"].view(channels, stem**2).mean(0)
    luma.load_state_dict(state)
    dtype = next(net.parameters()).dtype
    return luma if dtype == torch.float32 else luma.to(dtype=dtype)
