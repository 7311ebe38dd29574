"""Building blocks shared by the generator and the defocus-map net: RCAB (Zhang et al. 2018) and the
U-Net-like branch of a defocus-map guide block (paper, "DefocusGAN Generator"; facts.md, "Generator")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias)


class ChannelAttention(nn.Module):
    """Squeeze-and-excite gate: global average pool -> 1x1 down -> ReLU -> 1x1 up -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            conv1x1(channels, hidden),
            nn.ReLU(inplace=True),
            conv1x1(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class RCAB(nn.Module):
    """Residual channel-attention block: conv-ReLU-conv, channel attention, residual. Shape-preserving."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels))
        self.attention = ChannelAttention(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))


def make_unit(depth: int, channels: int, block_type: str = "rcab") -> nn.Module:
    """One layer of a branch: ``depth`` 0 is a plain 3x3 conv + ReLU, ``depth`` n >= 1 is n RCABs in a row
    (``block_type="conv"``: n pairs of plain 3x3 conv + ReLU instead, Table 4's ablation without RCAB)."""
    if depth < 0:
        raise ValueError(f"A branch depth must be >= 0, got {depth}.")
    if depth == 0 or block_type == "conv":
        layers = []
        for _ in range(max(2 * depth, 1)):
            layers += [conv3x3(channels, channels), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)
    return nn.Sequential(*[RCAB(channels) for _ in range(depth)])


class BranchUNet(nn.Module):
    """One branch of a guide block: a U-Net over absolute pyramid levels with max-pool down, bilinear up and
    additive skips. Level ``l`` works at stride ``2**l`` of the input image with ``level_channels[l]`` channels.

    The units of every level exist once; :meth:`forward` can enter at any ``first_level`` and run
    ``num_levels`` levels, which is how the coarse scales reuse the same modules on fewer levels.
    With ``num_levels`` = 4 the branch has 8 units (4 encoder + 4 decoder), the paper's "8 conv layers".
    """

    def __init__(self, level_channels: tuple[int, ...], depth: int, block_type: str = "rcab"):
        super().__init__()
        self.level_channels = tuple(level_channels)
        n = len(level_channels)
        self.encoders = nn.ModuleList(make_unit(depth, c, block_type) for c in level_channels)
        self.decoders = nn.ModuleList(make_unit(depth, c, block_type) for c in level_channels)
        self.downs = nn.ModuleList(conv1x1(level_channels[i], level_channels[i + 1]) for i in range(n - 1))
        self.ups = nn.ModuleList(conv1x1(level_channels[i + 1], level_channels[i]) for i in range(n - 1))

    def forward(self, x: torch.Tensor, first_level: int, num_levels: int) -> torch.Tensor:
        """``x``: ``(B, level_channels[first_level], H, W)`` with H, W divisible by ``2**(num_levels - 1)``."""
        last = first_level + num_levels - 1
        skips = []
        for level in range(first_level, last + 1):
            x = self.encoders[level](x)
            if level < last:
                skips.append(x)
                x = self.downs[level](F.max_pool2d(x, 2))
        for level in range(last, first_level - 1, -1):
            x = self.decoders[level](x)
            if level > first_level:
                x = self.ups[level - 1](F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
                x = x + skips.pop()
        return x


class MultiBranchBlock(nn.Module):
    """Parallel :class:`BranchUNet` s whose outputs are gated per pixel and summed, plus a residual.

    ``gates``: ``(B, num_branches, H, W)`` at the block's resolution, or ``None`` (all ones).
    """

    def __init__(self, level_channels: tuple[int, ...], branch_depths: tuple[int, ...], block_type: str = "rcab"):
        super().__init__()
        self.branches = nn.ModuleList(BranchUNet(level_channels, d, block_type) for d in branch_depths)

    def forward(
        self, x: torch.Tensor, first_level: int, num_levels: int, gates: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = x
        for index, branch in enumerate(self.branches):
            y = branch(x, first_level, num_levels)
            out = out + (y if gates is None else y * gates[:, index : index + 1])
        return out


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad ``(B, C, H, W)`` at the bottom/right so H and W are multiples of ``multiple``; returns the
    padded tensor and the original ``(H, W)`` to crop back to."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)
