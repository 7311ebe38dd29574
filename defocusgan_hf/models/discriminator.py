"""DefocusGAN's critic D (paper, "DefocusGAN Discriminator"): a pix2pix-style PatchGAN (Isola et al. 2017).

Three stride-2 4×4 convolutions (64, 128, 256 filters), one stride-1 convolution (512) and a 1-filter output
convolution, LeakyReLU(0.2) and InstanceNorm between them: each output score sees a 70×70 patch of the image.
Trained as a WGAN-GP critic (``defocusgan_hf.training.losses``), so there is no sigmoid: scores are unbounded reals.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from torch import nn

# diffusers' pipeline loader looks `ModelMixin` up in the module that defines a component: keep it importable here.
from .modeling_utils import ModelMixin, StrictConfigModel  # noqa: F401

NORMS = ("instance", "none")


class PatchDiscriminator(StrictConfigModel):
    """PatchGAN critic: image ``(B, in_channels, H, W)`` in [0, 1] -> patch scores ``(B, 1, h, w)``.

    The input is rescaled to [-1, 1] inside ``forward`` (the range pix2pix and DeblurGAN critics are trained on),
    so callers pass the package's usual [0, 1] images. With the default three layers, a 256×256 image gives
    30×30 scores; :meth:`output_size` gives ``(h, w)`` for any input size without running the network.

    Args:
        in_channels: channels of the judged image (3 for RGB).
        base_channels: filters of the first layer; layer n has ``base_channels * min(2**n, 8)``.
        num_layers: stride-2 downsampling layers (the paper's 3).
        norm: ``"instance"`` (InstanceNorm2d without affine parameters, as in pix2pix) or ``"none"``.
            Never batch norm: the WGAN-GP penalty assumes per-sample critic outputs.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3, norm: str = "instance"):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"`in_channels` must be >= 1, got {in_channels}.")
        if base_channels < 1:
            raise ValueError(f"`base_channels` must be >= 1, got {base_channels}.")
        if not 1 <= num_layers <= 6:
            raise ValueError(f"`num_layers` must be in 1..6, got {num_layers}.")
        if norm not in NORMS:
            raise ValueError(f"`norm` must be one of {NORMS}, got {norm!r}.")

        def block(c_in: int, c_out: int, stride: int, normed: bool) -> list[nn.Module]:
            instance = normed and norm == "instance"
            # No bias before InstanceNorm: the normalisation would cancel it (pix2pix keeps that dead bias).
            layers: list[nn.Module] = [
                nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride, padding=1, bias=not instance)
            ]
            if instance:
                layers.append(nn.InstanceNorm2d(c_out, affine=False))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        layers = block(in_channels, base_channels, stride=2, normed=False)
        channels = base_channels
        for n in range(1, num_layers):
            out = base_channels * min(2**n, 8)
            layers += block(channels, out, stride=2, normed=True)
            channels = out
        out = base_channels * min(2**num_layers, 8)
        layers += block(channels, out, stride=1, normed=True)
        layers.append(nn.Conv2d(out, 1, kernel_size=4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the score map for an ``height × width`` input (4×4 kernels, padding 1)."""

        def shrink(size: int) -> int:
            for _ in range(self.config.num_layers):
                size = (size - 2) // 2 + 1  # stride-2 conv: floor((size + 2 - 4) / 2) + 1
            return size - 2  # two stride-1 convs each lose one pixel

        h, w = shrink(height), shrink(width)
        if h < 1 or w < 1:
            raise ValueError(
                f"A {height}x{width} image is too small for a {self.config.num_layers}-layer PatchGAN "
                f"(it would give a {h}x{w} score map)."
            )
        return h, w

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` ``(B, in_channels, H, W)`` in [0, 1] -> unbounded patch scores ``(B, 1, h, w)``."""
        if image.dim() != 4 or image.shape[1] != self.config.in_channels:
            raise ValueError(f"Expected an image (B, {self.config.in_channels}, H, W), got {tuple(image.shape)}.")
        self.output_size(image.shape[-2], image.shape[-1])  # raises a clear error for too-small inputs
        return self.net(image * 2.0 - 1.0)
