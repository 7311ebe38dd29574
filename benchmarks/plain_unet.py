"""The equal-parameter baseline of the speed benchmark: a plain U-Net (Ronneberger et al., 2015).

Two 3×3 conv + ReLU per level, channels doubling at every level, 2×2 max-pool down, 2×2 transposed conv up,
concatenated skips, a 1×1 conv head, and the same global residual and clamp as :class:`DefocusDeblurNet`.
:func:`matched_plain_unet` picks the base width whose parameter count is closest to a target (±5% is checked).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class PlainUNet(nn.Module):
    """``forward(image)``: ``(B, 3, H, W)`` in [0, 1], any H×W -> restored ``(B, 3, H, W)`` in [0, 1].

    Args:
        base_channels: channels of the full-resolution level; level l has ``base_channels * 2**l``.
        depth: number of downsamplings (levels = depth + 1).
    """

    def __init__(self, base_channels: int = 24, depth: int = 4, in_channels: int = 3):
        super().__init__()
        if base_channels < 1 or depth < 1:
            raise ValueError(f"`base_channels` and `depth` must be >= 1, got {base_channels}, {depth}.")
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.stride = 2**depth
        self.encoders = nn.ModuleList(
            _double_conv(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth + 1)
        )
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.decoders = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in range(depth))
        self.head = nn.Conv2d(widths[0], in_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        x = F.pad(image, (0, -w % self.stride, 0, -h % self.stride), mode="replicate")
        skips, features = [], x
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                features = F.max_pool2d(features, 2)
            features = encoder(features)
            skips.append(features)
        for level in range(len(self.decoders) - 1, -1, -1):
            features = self.decoders[level](torch.cat([skips[level], self.ups[level](features)], dim=1))
        return (x + self.head(features)).clamp(0.0, 1.0)[..., :h, :w]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def plain_unet_parameters(base_channels: int, depth: int = 4, in_channels: int = 3) -> int:
    """Parameter count of ``PlainUNet(base_channels, depth, in_channels)``, without building it."""
    widths = [base_channels * 2**level for level in range(depth + 1)]
    total = in_channels * widths[0] + in_channels  # head
    for i, w in enumerate(widths):
        c_in = in_channels if i == 0 else widths[i - 1]
        total += (9 * c_in * w + w) + (9 * w * w + w)  # encoder
        if i < depth:
            total += 4 * widths[i + 1] * w + w  # transposed conv up
            total += (9 * 2 * w * w + w) + (9 * w * w + w)  # decoder
    return total


def matched_plain_unet(target_params: int, depth: int = 4, tolerance: float = 0.05) -> PlainUNet:
    """The :class:`PlainUNet` of ``depth`` whose parameter count is closest to ``target_params``."""
    best = min(range(4, 129), key=lambda c: abs(plain_unet_parameters(c, depth) - target_params))
    model = PlainUNet(best, depth)
    assert count_parameters(model) == plain_unet_parameters(best, depth)
    error = count_parameters(model) / target_params - 1
    if abs(error) > tolerance:
        raise ValueError(f"No depth-{depth} plain U-Net within ±{tolerance:.0%} of {target_params} parameters.")
    return model
