"""Stage 1 (paper, "Learnable blur kernel for defocus map estimation", Eq. 1): f(I_left, I_right) -> defocus map.

"A network similar to the defocus deblurring network is used": the same multi-branch U-Net block as the
generator, without masks (there is no map yet), on the 6-channel stack of the two DP views. The released code's
net has four parallel RCAB branches summed and about 3.3M parameters; the default here has 3.3M.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from .blocks import MultiBranchBlock, conv3x3, pad_to_multiple

# diffusers' pipeline loader looks `ModelMixin` up in the module that defines a component: keep it importable here.
from .modeling_utils import ModelMixin, StrictConfigModel  # noqa: F401


@dataclass
class DualPixelDefocusNetOutput(BaseOutput):
    """
    Args:
        defocus_map: ``(B, 1, H, W)`` signed CoC radius in pixels, in [-max_coc, max_coc]. ``|defocus_map|`` is
            the paper's defocus map; the sign says on which side of the focal plane a point lies.
    """

    defocus_map: torch.Tensor


class DualPixelDefocusNet(StrictConfigModel):
    """f(left, right): two DP views ``(B, 3, H, W)`` in [0, 1], any H×W -> signed CoC map in pixels.

    Args:
        level_channels: channels of pyramid level l (stride ``2**l``); the deepest level sets the receptive field,
            which must cover the DP disparity of the largest CoC (stride 16 by default).
        branch_depths: RCABs per layer of each parallel branch.
        max_coc: largest CoC radius in px (the paper's limit is 25); the output is ``max_coc * tanh(x / max_coc)``.
    """

    @register_to_config
    def __init__(
        self,
        view_channels: int = 3,
        level_channels: tuple[int, ...] = (8, 16, 32, 64, 128),
        branch_depths: tuple[int, ...] = (1, 1, 1, 1),
        max_coc: float = 25.0,
    ):
        super().__init__()
        level_channels, branch_depths = tuple(level_channels), tuple(branch_depths)
        if not level_channels or min(level_channels) < 1:
            raise ValueError(f"`level_channels` must be positive channel counts, got {level_channels}.")
        if not branch_depths or min(branch_depths) < 0:
            raise ValueError(f"`branch_depths` must be non-negative RCAB counts, got {branch_depths}.")
        if not 0 < max_coc <= 64:
            raise ValueError(f"`max_coc` must be in (0, 64] pixels, got {max_coc}.")
        self.stride = 2 ** (len(level_channels) - 1)
        self.head = conv3x3(2 * view_channels, level_channels[0])
        self.block = MultiBranchBlock(level_channels, branch_depths)
        self.tail = conv3x3(level_channels[0], 1)
        # Start near an all-in-focus map, but not exactly at 0: the reblur loss sees |map|, whose gradient is 0 there.
        nn.init.normal_(self.tail.weight, std=1e-3)
        nn.init.constant_(self.tail.bias, 0.5)

    def forward(
        self, left: torch.Tensor, right: torch.Tensor, return_dict: bool = True
    ) -> DualPixelDefocusNetOutput | tuple[torch.Tensor]:
        """``left``, ``right``: ``(B, 3, H, W)`` DP views in [0, 1] of the same size."""
        expected = self.config.view_channels
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != expected:
            raise ValueError(
                f"`left` and `right` must both be (B, {expected}, H, W) of one size, "
                f"got {tuple(left.shape)} and {tuple(right.shape)}."
            )
        x, (h, w) = pad_to_multiple(torch.cat([left, right], dim=1), self.stride)
        features = self.block(self.head(x), 0, len(self.config.level_channels))
        max_coc = self.config.max_coc
        coc = (max_coc * torch.tanh(self.tail(features) / max_coc))[..., :h, :w]
        if not return_dict:
            return (coc,)
        return DualPixelDefocusNetOutput(defocus_map=coc)
