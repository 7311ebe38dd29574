"""VGG19 feature extractor for the perceptual loss (paper, "Overall loss function": VGG19 conv3_3 features).

The convolutional stack is defined here (torchvision cannot be used with this project's torch build) with
torchvision's module indices, so the state-dict keys ``features.{i}.weight`` / ``features.{i}.bias`` match both
torchvision's ``vgg19`` and ``timm/vgg19.tv_in1k`` (the same ImageNet weights, stored as safetensors on the Hub).
Weights are read with ``safetensors`` only, never with pickle.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .weights import load_strict

DEFAULT_VGG_SOURCE = "timm/vgg19.tv_in1k"
WEIGHTS_NAME = "model.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# VGG19 ("configuration E"): channels per conv, "M" = 2x2 max pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _conv_names() -> dict[str, int]:
    """``{"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, ..., "conv5_4": 34}``: names -> indices in ``features``."""
    names, index, block, conv = {}, 0, 1, 1
    for item in VGG19_LAYOUT:
        if item == "M":
            index, block, conv = index + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            index, conv = index + 2, conv + 1  # conv + ReLU
    return names


VGG19_CONVS = _conv_names()
# Keys a full VGG19 checkpoint may hold besides the features we keep: later convs and the classifier, in
# torchvision's (``classifier.{0,3,6}``) or timm's (``pre_logits.fc{1,2}``, ``head.fc``) naming. They are ignored.
_CLASSIFIER_PREFIXES = ("classifier.", "pre_logits.", "head.")


class VGGWeightsNotFoundError(FileNotFoundError):
    """The ImageNet VGG19 weights are not available locally and cannot be downloaded."""


def _how_to_provide(source: str) -> str:
    return (
        f"The perceptual loss needs ImageNet VGG19 weights and none were found at {source!r}. On a machine with "
        f"internet access, download `{WEIGHTS_NAME}` from the Hub repo `{DEFAULT_VGG_SOURCE}` (e.g. "
        f"`hf download {DEFAULT_VGG_SOURCE} {WEIGHTS_NAME} --local-dir vgg19`), copy it here and pass its path "
        "(`--vgg_weights path/to/model.safetensors` in the training script, or "
        "`VGG19Features.from_pretrained(path)`); or train without the perceptual term (perceptual weight 0)."
    )


class VGG19Features(nn.Module):
    """Frozen VGG19 ``features`` up to ``last_layer``: image ``(B, 3, H, W)`` in [0, 1] -> feature map.

    The ImageNet mean/std normalisation is applied inside. The default ``"conv3_3"`` stops at the output of
    conv3_3 (``features.14``) *before* its ReLU, as DeblurGAN's and DeblurGAN-v2's perceptual losses (whose
    0.006 weight the released DefocusGAN code uses) do; for 256-channel features at 1/4 resolution.
    Freshly built, the weights are random (for tests); use :meth:`from_pretrained` for the ImageNet ones.

    Args:
        last_layer: name of the last convolution kept, ``"conv{block}_{n}"`` (``conv1_1`` .. ``conv5_4``).
        include_relu: also keep that convolution's ReLU.
    """

    def __init__(self, last_layer: str = "conv3_3", include_relu: bool = False):
        super().__init__()
        if last_layer not in VGG19_CONVS:
            raise ValueError(f"`last_layer` must be one of {list(VGG19_CONVS)}, got {last_layer!r}.")
        self.last_layer, self.include_relu = last_layer, include_relu
        stop = VGG19_CONVS[last_layer] + (2 if include_relu else 1)
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers[:stop])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode: the extractor is a fixed loss network."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` ``(B, 3, H, W)`` in [0, 1] -> features ``(B, C, H / 2**k, W / 2**k)`` (k pools passed)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"Expected an RGB image (B, 3, H, W) in [0, 1], got {tuple(image.shape)}.")
        return self.features((image - self.mean) / self.std)

    def load_vgg_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> None:
        """Copy a torchvision/timm-layout VGG19 state dict into this extractor, strictly.

        Keys of later VGG19 layers and of the classifier are ignored; any other key, a missing key or a shape
        mismatch raises a ``ValueError`` that lists them.
        """
        known = {f"features.{i}.{p}" for i in VGG19_CONVS.values() for p in ("weight", "bias")}
        unexpected = [k for k in state_dict if k not in known and not k.startswith(_CLASSIFIER_PREFIXES)]
        own = self.state_dict()
        load_strict(
            self,
            {k: v for k, v in state_dict.items() if k in own},
            unexpected,
            ValueError,
            f"{source} is not a VGG19 checkpoint in torchvision/timm layout",
        )

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike = DEFAULT_VGG_SOURCE,
        *,
        last_layer: str = "conv3_3",
        include_relu: bool = False,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
    ) -> VGG19Features:
        """Build the extractor and load ImageNet weights from ``source``.

        Args:
            source: a ``.safetensors`` file, a folder holding ``model.safetensors``, or a Hub repo id in timm
                layout (default ``"timm/vgg19.tv_in1k"``), fetched with ``huggingface_hub.hf_hub_download``.
            cache_dir: Hub cache folder (default: huggingface_hub's).
            local_files_only: only look in the Hub cache. ``None`` follows ``HF_HUB_OFFLINE``, read when called
                (so setting it after import works too).

        Raises:
            VGGWeightsNotFoundError: (a ``FileNotFoundError``) the weights are absent or cannot be downloaded;
                its message says how to provide them.
        """
        path = Path(source)
        if path.is_dir():
            path = path / WEIGHTS_NAME
            if not path.is_file():
                raise VGGWeightsNotFoundError(_how_to_provide(str(path)))
        elif not path.is_file():
            looks_local = str(source).endswith(".safetensors") or path.is_absolute() or str(source).startswith(".")
            if looks_local or str(source).count("/") != 1:
                raise VGGWeightsNotFoundError(_how_to_provide(str(source)))
            path = Path(_hub_download(str(source), cache_dir, local_files_only))
        model = cls(last_layer=last_layer, include_relu=include_relu)
        model.load_vgg_state_dict(load_file(str(path)), source=str(path))
        return model


def _hub_download(repo_id: str, cache_dir: str | os.PathLike | None, local_files_only: bool | None) -> str:
    """Path of ``model.safetensors`` from the Hub repo ``repo_id`` (cached), or a clear error."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    if local_files_only is None:
        env = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
        local_files_only = env or constants.is_offline_mode()
    try:
        return hf_hub_download(repo_id, WEIGHTS_NAME, cache_dir=cache_dir, local_files_only=local_files_only)
    except (OSError, ValueError, EntryNotFoundError) as error:  # hub not-found/offline/HTTP errors, bad repo ids
        offline = " (offline mode: only the local Hub cache was searched)" if local_files_only else ""
        raise VGGWeightsNotFoundError(f"{_how_to_provide(repo_id)}{offline} Cause: {error}") from error
