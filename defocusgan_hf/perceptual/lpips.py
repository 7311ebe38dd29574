"""LPIPS (Zhang et al., CVPR 2018, version 0.1) with the AlexNet and SqueezeNet-1.1 backbones.

Defined here because the ``lpips`` package needs torchvision, which cannot be used with this project's torch
build. The networks follow torchvision's module indices, so that weights saved from ``lpips.LPIPS(net=...)``
(keys ``net.slice{k}.{i}.*``, ``lin{k}.model.1.weight``, ``scaling_layer.*``) or from torchvision's
``alexnet`` / ``squeezenet1_1`` (keys ``features.{i}.*``) plus the LPIPS heads load as they are.

d(x, y) = Σ_l mean_hw( w_l · (f̂_l(x) − f̂_l(y))² ), where f̂_l is layer l's ReLU output normalised to unit
length across channels and w_l ≥ 0 the learnt per-channel weights (1×1 conv without bias).

Weights are read with ``safetensors`` only. There is no download and no fallback: without weights there is no
LPIPS, never a number from random weights (a fresh :class:`LPIPS` is random and only serves tests).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from .weights import load_strict

# LPIPS's ScalingLayer: inputs in [-1, 1] are shifted and scaled to ImageNet-like statistics.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# Per backbone: the ``features`` indices after which LPIPS taps a layer, and that layer's channels.
TAPS = {
    "alex": ((1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "squeeze": ((1, 4, 7, 9, 10, 11, 12), (64, 128, 256, 384, 384, 512, 512)),
}
NET_NAMES = {"alex": "AlexNet", "squeeze": "SqueezeNet-1.1"}


class Fire(nn.Module):
    """SqueezeNet's fire module: 1×1 squeeze, then 1×1 and 3×3 expands concatenated (torchvision's names)."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.squeeze(x))
        return torch.cat([self.relu(self.expand1x1(x)), self.relu(self.expand3x3(x))], dim=1)


def _alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
    )  # fmt: skip


def _squeezenet11_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
    )  # fmt: skip


class LPIPSWeightsError(ValueError):
    """A weights file does not hold an LPIPS model of the expected backbone; the message lists what is wrong."""


class LPIPS(nn.Module):
    """LPIPS distance. ``forward(x, y)``: two ``(B, 3, H, W)`` images in [0, 1] -> ``(B,)`` distances (0 = same).

    :meth:`distance` takes two ``(H, W, 3)`` arrays in [0, 1] and returns a float.

    Args:
        net: ``"alex"`` (AlexNet, peers' choice) or ``"squeeze"`` (SqueezeNet-1.1, the seed's choice).
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in TAPS:
            raise ValueError(f"`net` must be one of {sorted(TAPS)}, got {net!r}.")
        self.net_name = net
        self.taps, channels = TAPS[net]
        self.features = _alexnet_features() if net == "alex" else _squeezenet11_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Always stays in eval mode: LPIPS is a fixed metric."""
        return super().train(False)

    def _layers(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = ((2.0 * image - 1.0) - self.shift) / self.scale
        taps, outputs = set(self.taps), []
        for index, module in enumerate(self.features):
            x = module(x)
            if index in taps:
                outputs.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
            if index == self.taps[-1]:
                break
        return outputs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"Expected two images (B, 3, H, W) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}."
            )
        distance = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for lin, fx, fy in zip(self.lins, self._layers(x), self._layers(y)):
            distance = distance + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return distance

    @torch.no_grad()
    def distance(self, x: np.ndarray, y: np.ndarray) -> float:
        """LPIPS of two ``(H, W, 3)`` arrays in [0, 1] (computed in float32 on the module's device)."""
        param = next(self.parameters())

        def to_tensor(a):
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None].to(param.device)

        return float(self(to_tensor(x), to_tensor(y))[0])

    def load_lpips_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> None:
        """Load weights in the ``lpips`` package's layout or torchvision's, strictly (see the module docstring)."""
        own = self.state_dict()
        mapped, unexpected = {}, []
        for key, value in state_dict.items():
            new = _map_key(key)
            if new is None:
                continue
            if new in own:
                mapped[new] = value
            else:
                unexpected.append(key)
        load_strict(
            self,
            mapped,
            unexpected,
            LPIPSWeightsError,
            f"{source} is not an LPIPS-{NET_NAMES[self.net_name]} checkpoint",
        )

    @classmethod
    def from_pretrained(cls, sources: str | os.PathLike | list, net: str | None = None) -> LPIPS:
        """Build LPIPS and load weights from one or more ``.safetensors`` files (merged in order).

        ``sources``: a path, or a list of paths (e.g. a torchvision backbone file and an LPIPS heads file), or
        ``"org/repo:file.safetensors"`` for a file in a Hub repo (fetched with ``hf_hub_download``, which
        honours ``HF_HUB_OFFLINE``). ``net``: the expected backbone; ``None`` detects it from the keys.
        """
        paths = sources if isinstance(sources, (list, tuple)) else [sources]
        state_dict: dict[str, torch.Tensor] = {}
        for source in paths:
            state_dict.update(load_file(_resolve(source)))
        detected = detect_backbone(state_dict)
        if net is None:
            net = detected
        elif detected is not None and detected != net:
            raise LPIPSWeightsError(
                f"{', '.join(map(str, paths))} hold LPIPS-{NET_NAMES[detected]} weights, but LPIPS-{NET_NAMES[net]} "
                "was asked for (the protocol fixes the backbone: 'seed' uses SqueezeNet, 'peer' AlexNet)."
            )
        if net is None:
            raise LPIPSWeightsError(f"Cannot tell the LPIPS backbone of {', '.join(map(str, paths))} from its keys.")
        model = cls(net)
        model.load_lpips_state_dict(state_dict, source=", ".join(map(str, paths)))
        return model


_LPIPS_NET_KEY = re.compile(r"^net\.slice\d+\.(\d+)\.(.+)$")
_LIN_KEY = re.compile(r"^(?:lin(\d+)|lins\.(\d+))\.model\.1\.weight$")


def _map_key(key: str) -> str | None:
    """Our key for a key of an LPIPS or torchvision state dict; ``None`` for keys that are ignored on purpose."""
    if key.startswith(("scaling_layer.", "classifier.")):  # LPIPS's fixed constants; torchvision's classifier
        return None
    match = _LPIPS_NET_KEY.match(key)
    if match:
        return f"features.{match.group(1)}.{match.group(2)}"
    match = _LIN_KEY.match(key)
    if match:
        return f"lins.{match.group(1) or match.group(2)}.weight"
    return key


def detect_backbone(state_dict: dict[str, torch.Tensor]) -> str | None:
    """``"alex"`` / ``"squeeze"`` from the first conv's weight (64×3×11×11 vs 64×3×3×3), else ``None``."""
    for key in ("features.0.weight", "net.slice1.0.weight"):
        if key in state_dict:
            size = state_dict[key].shape[-1]
            return {11: "alex", 3: "squeeze"}.get(size)
    return None


def _resolve(source: str | os.PathLike) -> str:
    path = Path(source)
    if path.is_file():
        return str(path)
    text = str(source)
    if ":" in text and text.count("/") >= 1 and not path.is_absolute():
        from huggingface_hub import hf_hub_download

        repo_id, filename = text.split(":", 1)
        return hf_hub_download(repo_id, filename)
    raise FileNotFoundError(
        f"LPIPS weights not found at {text!r}: pass a .safetensors file (e.g. converted from "
        "`lpips.LPIPS(net='alex').state_dict()` on a machine with torchvision) or 'org/repo:file.safetensors'."
    )
