"""Datasets of the synthetic engine: sharp crops for rendering on the training device
(:class:`SharpImageDataset`) and fully rendered CPU samples (:class:`SyntheticDualPixelDataset`), each sample a pure
function of ``(seed, epoch, index)``; and the CoC statistics of a rendered map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .config import DualPixelConfig
from .crop_cache import CropCache
from .procedural import DeadLeavesSource
from .source_base import sample_generator
from .sources import DEFAULT_TRAIN_SOURCES, CUHKInFocusSource, ImageSource, MixedSource, augment, build_source
from .synthetic import DualPixelRenderer


def engine_source(sources, config: DualPixelConfig | None = None) -> ImageSource:
    """:func:`~defocusgan_hf.data.sources.build_source` of ``sources``, mixed with fine-pattern dead leaves when
    ``config.fine_pattern_weight`` > 0 and with the CUHK in-focus crops when ``config.cuhk_in_focus_root`` is set
    (weight ``config.cuhk_in_focus_weight``); otherwise the same source."""
    source = build_source(sources)
    if config is None:
        return source
    if config.fine_pattern_weight > 0:
        weight = config.fine_pattern_weight
        source = MixedSource([source, DeadLeavesSource(fine_patterns=True)], [1 - weight, weight])
    if config.cuhk_in_focus_root is None:
        return source
    weight = config.cuhk_in_focus_weight
    return MixedSource([source, CUHKInFocusSource(config.cuhk_in_focus_root)], [1 - weight, weight])


class SharpImageDataset(Dataset):
    """Random sharp crops ``{"sharp": (3, resolution, resolution)}`` with flips and colour jitter.

    Deterministic per ``(seed, epoch, index)`` whatever the number of DataLoader workers; call
    :meth:`set_epoch` between epochs (before creating the DataLoader iterator) for new crops.

    Args:
        sources: an :class:`~defocusgan_hf.data.sources.ImageSource`, a name (``"skimage"``, ``"skimage:val"``,
            ``"dead_leaves"``, ``"text"``), a folder path, or a list of these (mixed).
        resolution: crop side in pixels.
        length: number of samples per epoch (sources are unlimited).
        config: only its sharp-source fields matter here (``cuhk_in_focus_root``: see :func:`engine_source`).
        crop_cache: draw the procedural sources (dead leaves, text) once into banks of ``resolution``-px tiles under
            ``crop_cache.cache_dir`` and crop from those (:class:`~defocusgan_hf.data.crop_cache.CropCache`; built
            here, in the constructing process, seeded by ``seed``). ``None``: draw every crop anew.
    """

    def __init__(
        self,
        sources: ImageSource | str | Sequence = DEFAULT_TRAIN_SOURCES,
        resolution: int = 256,
        length: int = 10_000,
        seed: int = 0,
        color_jitter: float = 0.1,
        flip: bool = True,
        config: DualPixelConfig | None = None,
        crop_cache: CropCache | None = None,
    ):
        if resolution < 16:
            raise ValueError(f"`resolution` must be at least 16 pixels, got {resolution}.")
        if length < 1:
            raise ValueError(f"`length` must be positive, got {length}.")
        self.source = engine_source(sources, config)
        if crop_cache is not None:
            self.source = crop_cache.wrap(self.source, tile_size=int(resolution), seed=int(seed))
        self.resolution, self.length, self.seed = int(resolution), int(length), int(seed)
        self.color_jitter, self.flip, self.epoch = color_jitter, flip, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _crop(self, generator: torch.Generator) -> torch.Tensor:
        image = self.source.sample(self.resolution, generator)
        return augment(image, generator, self.flip, self.color_jitter).float()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of {self.length} samples.")
        return {"sharp": self._crop(sample_generator(self.seed, index, self.epoch))}


class SyntheticDualPixelDataset(SharpImageDataset):
    """Rendered synthetic DP samples ``{sharp, blurred, left, right: (3, H, W), coc: (1, H, W)}`` (float32, CPU).

    Each sample draws its own sharp crop plus ``num_contents - 1`` more crops for the objects' content, and is
    rendered by :class:`DualPixelRenderer` on the CPU. Deterministic per ``(seed, epoch, index)`` whatever the
    number of workers. For training on a GPU, prefer :class:`SharpImageDataset` plus a renderer on the device.

    Args:
        noise: ``False`` turns off noise, JPEG and DP vignetting (gamma and exposure variation stay).
        max_coc: overrides ``config.max_coc`` when given (default 25 px).
        config: the data distribution (default :class:`DualPixelConfig`).
    """

    def __init__(
        self,
        sources: ImageSource | str | Sequence = DEFAULT_TRAIN_SOURCES,
        resolution: int = 256,
        length: int = 10_000,
        seed: int = 0,
        max_coc: float | None = None,
        noise: bool = True,
        config: DualPixelConfig | None = None,
        num_contents: int = 3,
        color_jitter: float = 0.1,
    ):
        config = config or DualPixelConfig()
        super().__init__(sources, resolution, length, seed, color_jitter, config=config)
        if max_coc is not None:
            config = config.replace(max_coc=max_coc)
        if not noise:
            config = config.replace(noise_prob=0.0, jpeg_prob=0.0, vignetting_range=(0.0, 0.0))
        if num_contents < 1:
            raise ValueError(f"`num_contents` must be at least 1, got {num_contents}.")
        self.config, self.num_contents = config, int(num_contents)
        self.renderer = DualPixelRenderer(config)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of {self.length} samples.")
        generator = sample_generator(self.seed, index, self.epoch)
        crops = torch.stack([self._crop(generator) for _ in range(self.num_contents)])
        out = self.renderer(crops[:1], generator, pool=crops[None])
        return {key: value[0] for key, value in out.items()}


def coc_statistics(coc: torch.Tensor, max_coc: float = 25.0) -> dict[str, float]:
    """Fractions of pixels in focus (|coc| < 1), near (coc <= -1) and far (coc >= 1), and the mean |coc|."""
    return {
        "in_focus": float((coc.abs() < 1).float().mean()),
        "near": float((coc <= -1).float().mean()),
        "far": float((coc >= 1).float().mean()),
        "mean_abs": float(coc.abs().mean()),
        "saturated": float((coc.abs() >= max_coc - 1e-3).float().mean()),
    }


__all__ = ["SharpImageDataset", "SyntheticDualPixelDataset", "coc_statistics", "engine_source", "sample_generator"]
