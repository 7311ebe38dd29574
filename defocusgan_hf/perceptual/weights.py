"""Strict loading of third-party weight files (VGG19, LPIPS) into modules defined here."""

from __future__ import annotations

import torch
from torch import nn


def load_strict(
    module: nn.Module,
    state_dict: dict[str, torch.Tensor],
    unexpected: list[str],
    error: type[Exception],
    what: str,
) -> None:
    """Copy ``state_dict`` (already mapped to ``module``'s key names) into ``module``, or raise ``error`` listing
    missing keys, the ``unexpected`` keys the caller found, and shape mismatches. ``what`` names the expected file,
    e.g. ``"'vgg.safetensors' is not a VGG19 checkpoint in torchvision/timm layout"``."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state_dict)
    mismatched = sorted(
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    if missing or unexpected or mismatched:
        raise error(
            f"{what}. Missing keys: {missing}; unexpected keys: {sorted(unexpected)}; shape mismatches: {mismatched}."
        )
    module.load_state_dict({k: state_dict[k].to(v.dtype) for k, v in own.items()}, strict=True)
