"""Data: the synthetic dual-pixel engine (scenes, DP PSFs, rendering, sensor), image sources, and real loaders.

See ``docs/DATA.md`` for the conventions: images float32 in [0, 1]; ``coc`` a signed CoC radius in pixels
(``> 0`` behind the focal plane, ``< 0`` in front); ``blurred = (left + right) / 2``.
"""

from .config import ENGINE_CHANGES, coc_histogram_from_values
from .datasets import SharpImageDataset, SyntheticDualPixelDataset, coc_statistics, engine_source, sample_generator
from .dpdd import DPDD_LAYOUT, DPDDDataset, DualPixelFolderDataset, PairedFolderDataset
from .procedural import DeadLeavesSource, TextSource
from .psf import DualPixelPSFBank, aperture_masks, dual_pixel_psf, dual_pixel_view_kernels
from .render import composite_sharp, render_layers
from .scene import DualPixelScene, sample_scene
from .sensor import jpeg_compress, poisson_gaussian_noise
from .sources import (
    SKIMAGE_SPLITS,
    ArraySource,
    CUHKInFocusSource,
    FolderSource,
    ImageSource,
    MixedSource,
    SkimageSource,
    augment,
    build_source,
)
from .synthetic import DualPixelConfig, DualPixelRenderer, render_dual_pixel_batch

__all__ = [
    "DPDD_LAYOUT",
    "ENGINE_CHANGES",
    "SKIMAGE_SPLITS",
    "ArraySource",
    "CUHKInFocusSource",
    "DPDDDataset",
    "DeadLeavesSource",
    "DualPixelConfig",
    "DualPixelFolderDataset",
    "DualPixelPSFBank",
    "DualPixelRenderer",
    "DualPixelScene",
    "FolderSource",
    "ImageSource",
    "MixedSource",
    "PairedFolderDataset",
    "SharpImageDataset",
    "SkimageSource",
    "SyntheticDualPixelDataset",
    "TextSource",
    "ValidationSet",
    "aperture_masks",
    "augment",
    "build_source",
    "coc_histogram_from_values",
    "coc_statistics",
    "composite_sharp",
    "dual_pixel_psf",
    "dual_pixel_view_kernels",
    "engine_source",
    "jpeg_compress",
    "poisson_gaussian_noise",
    "render_dual_pixel_batch",
    "render_layers",
    "sample_generator",
    "sample_scene",
    "write_validation_set",
]


def __getattr__(name: str):
    # Imported lazily so that `python -m defocusgan_hf.data.validation_set` does not import the module twice.
    if name in ("ValidationSet", "write_validation_set"):
        from . import validation_set

        return getattr(validation_set, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
