"""Conversions between PIL images, NumPy arrays, torch tensors and :class:`LoadedImage`: ``(B, 3, H, W)`` float32
tensors in [0, 1] in, ``"pil"`` / ``"np"`` / ``"pt"`` out; and :func:`to_pixels`, one image ``(H, W, 3)`` in its own
precision (uint8 / uint16), for tiled inference that never holds the whole image as float."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .colour import _channels_to_rgb, _native, _scale_to_unit
from .decoding import _check_min_size, load_image
from .types import _FLOAT_TOLERANCE, DEFAULT_MIN_SIZE, ImageLoadError, LoadedImage, _quantize


def to_tensor(images: Any, min_size: int | None = DEFAULT_MIN_SIZE) -> tuple[torch.Tensor, list[int]]:
    """Convert images to a ``(B, 3, H, W)`` float32 tensor in [0, 1] and the list of their bit depths.

    Accepted, alone or in a list (all the same size): a PIL image; a :class:`LoadedImage`; a NumPy array
    ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` with C in {1, 3, 4}, of uint8, uint16 or float in [0, 1];
    a torch tensor ``(C, H, W)`` or ``(B, C, H, W)`` with C in {1, 3}, uint8 or float in [0, 1]. Gray is
    replicated, alpha composited over white. Float inputs count as 16-bit. Tensors keep their device.

    This is the pipeline's one validation path for every input type: the same checks as :func:`load_image`
    (images smaller than ``min_size`` px on a side are refused with :class:`ImageLoadError`, 16 px by default as in
    ``load_image``; ``None`` skips the check), and the bit depth reported is the one of the pixel data given (a PIL
    image of a 16-bit file that Pillow decoded at 8 bits counts as 8-bit).
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise ValueError("no images were given (an empty list)")
    tensors, bit_depths = [], []
    for index, item in enumerate(items):
        name = "the image" if len(items) == 1 else f"image {index}"
        tensor, depth = _one_to_tensor(item, name)
        tensors.append(tensor)
        bit_depths.extend([depth] * tensor.shape[0])
    sizes = [(t.shape[-1], t.shape[-2]) for t in tensors]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"{w}×{h}" for w, h in sizes)
        raise ValueError(f"all images of a batch must have the same size, got {listed} (width×height)")
    if min_size is not None:
        _check_min_size("the image" if len(items) == 1 else "each image", *sizes[0], min_size)
    device = tensors[0].device
    batch = torch.cat([t.to(device) for t in tensors]) if len(tensors) > 1 else tensors[0]
    return batch.contiguous(), bit_depths


def is_single_image(image: Any) -> bool:
    """True for what :func:`to_pixels` takes: one PIL image, :class:`LoadedImage` or array ``(H, W[, C])``, alone or
    as a list of one."""
    if isinstance(image, (list, tuple)):
        return len(image) == 1 and is_single_image(image[0])
    return isinstance(image, (Image.Image, LoadedImage)) or (isinstance(image, np.ndarray) and image.ndim in (2, 3))


def to_pixels(image: Any, min_size: int | None = DEFAULT_MIN_SIZE) -> tuple[np.ndarray, int]:
    """One image as ``(H, W, 3)`` RGB in its own precision, and its bit depth (8 or 16; float counts as 16).

    ``image``: a PIL image, a :class:`LoadedImage` or an array ``(H, W)`` / ``(H, W, C)`` (C in {1, 3, 4}; uint8,
    uint16 or float in [0, 1]), alone or in a list of one. The result is uint8 or uint16 for integer input (no copy
    for RGB arrays and LoadedImages; gray is replicated in its dtype) and float32 in [0, 1] for float input or
    transparent alpha (composited over white). The checks and messages are those of :func:`to_tensor`;
    ``x / 255`` (``x / 65535``) of the result equals its image in ``to_tensor``.
    """
    if not is_single_image(image):
        raise TypeError(
            "to_pixels takes one PIL image, LoadedImage or array (H, W[, C]); use to_tensor for batches and "
            f"tensors, got {type(image).__name__}"
        )
    item = image[0] if isinstance(image, (list, tuple)) else image
    if isinstance(item, Image.Image):
        item = load_image(item, max_pixels=None, min_size=1)
    if isinstance(item, LoadedImage):
        pixels, depth = item.pixels, item.bit_depth
    else:
        _check_array(item, "the image")
        try:
            values, depth = _native(item, "the image")
            pixels = _channels_to_rgb(values, "the image", [])
        except ImageLoadError as err:
            raise ValueError(str(err)) from None
    if min_size is not None:
        _check_min_size("the image", pixels.shape[1], pixels.shape[0], min_size)
    return pixels, depth


def _one_to_tensor(item: Any, name: str) -> tuple[torch.Tensor, int]:
    if isinstance(item, LoadedImage):
        return torch.from_numpy(np.ascontiguousarray(item.array, dtype=np.float32)).permute(2, 0, 1)[
            None
        ], item.bit_depth
    if isinstance(item, Image.Image):
        loaded = load_image(item, max_pixels=None, min_size=1)
        return _one_to_tensor(loaded, name)
    if isinstance(item, np.ndarray):
        return _array_to_tensor(item, name)
    if isinstance(item, torch.Tensor):
        return _torch_to_tensor(item, name)
    raise TypeError(
        f"{name} must be a PIL image, a NumPy array, a torch tensor or a LoadedImage, got {type(item).__name__}"
    )


def _array_to_tensor(array: np.ndarray, name: str) -> tuple[torch.Tensor, int]:
    if array.ndim == 4:
        parts = [_array_to_tensor(a, f"{name}[{i}]") for i, a in enumerate(array)]
        return torch.cat([p[0] for p in parts]), parts[0][1]
    _check_array(array, name)
    try:
        values, depth = _scale_to_unit(array, name)
        rgb = _channels_to_rgb(values, name, [])
    except ImageLoadError as err:
        raise ValueError(str(err)) from None
    return torch.from_numpy(rgb).permute(2, 0, 1)[None], depth


def _check_array(array: np.ndarray, name: str) -> None:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{name} must be an array (H, W), (H, W, C) or (B, H, W, C) with C in 1, 3, 4, got shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if array.dtype not in (np.uint8, np.uint16) and not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} has dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")


def _torch_to_tensor(tensor: torch.Tensor, name: str) -> tuple[torch.Tensor, int]:
    shape = tuple(tensor.shape)
    if tensor.dim() == 3:
        tensor = tensor[None]
    if tensor.dim() != 4 or tensor.shape[1] not in (1, 3) or tensor.numel() == 0:
        raise ValueError(f"{name} must be a tensor (3, H, W), (B, 3, H, W) or (B, 1, H, W), got shape {shape}")
    tensor = tensor.detach()
    if tensor.dtype == torch.uint8:
        tensor, depth = tensor.float() / 255.0, 8
    elif tensor.dtype == torch.uint16:
        tensor, depth = tensor.float() / 65535.0, 16
    elif tensor.is_floating_point():
        tensor, depth = tensor.float(), 16
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        low, high = tensor.min().item(), tensor.max().item()
        if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
            raise ValueError(f"{name} has values in [{low:.4g}, {high:.4g}]; float images must lie in [0, 1]")
        tensor = tensor.clamp(0.0, 1.0)
    else:
        raise TypeError(f"{name} has dtype {tensor.dtype}; use uint8 or float in [0, 1]")
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    return tensor, depth


def to_output(
    images: torch.Tensor, output_type: str = "pil", bit_depths: Sequence[int] | None = None
) -> list[Image.Image] | np.ndarray | torch.Tensor:
    """Convert a ``(B, 3, H, W)`` tensor in [0, 1] to ``output_type``.

    ``"pt"``: the tensor (clamped to [0, 1]); ``"np"``: float32 ``(B, H, W, 3)``; ``"pil"``: a list of 8-bit RGB
    PIL images (PIL has no 16-bit RGB mode: write 16-bit files with :func:`save_image` from the ``"np"`` output).
    ``bit_depths`` (one per image, as returned by :func:`to_tensor`) is only checked here; pass it on to
    :func:`save_image`.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"`images` must be a torch tensor (B, 3, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if bit_depths is not None:
        if len(bit_depths) != images.shape[0] or any(d not in (8, 16) for d in bit_depths):
            raise ValueError(
                f"`bit_depths` must hold 8 or 16 for each of the {images.shape[0]} images, got {bit_depths}"
            )
    images = images.detach().float().clamp(0.0, 1.0)
    if output_type == "pt":
        return images
    array = images.permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        return [Image.fromarray(_quantize(a, 8)) for a in array]
    raise ValueError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}")
