"""Sharp-image sources that need no download, and the crop / flip / colour-jitter augmentation.

Every source has ``sample(size, generator) -> (3, size, size)`` float32 sRGB in [0, 1] and draws all its
randomness from the ``torch.Generator`` it is given, so a sample is fixed by the generator's seed.

- :class:`SkimageSource`: the colour natural photographs that ship with scikit-image, split into a training and a
  held-out validation set (see ``SKIMAGE_SPLITS``).
- :class:`FolderSource`: any folder of images (recursive; jpg, png, tif, webp, bmp; 16-bit kept).
- :class:`~defocusgan_hf.data.procedural.DeadLeavesSource` and :class:`~defocusgan_hf.data.procedural.TextSource`:
  procedural images with natural statistics, unlimited.
- :class:`CUHKInFocusSource`: crops from the in-focus parts (blur mask black, eroded) of the CUHK blur-detection
  photos 41-204; photos 1-40 are the in-focus test set and are never read.
- :class:`MixedSource`: picks one of several sources with given weights.

Crops are taken at a random scale and resized with area averaging, so most crops are *downscaled* (sharper than
the source); a source image smaller than the crop is upscaled, which makes it softer (avoid for training targets).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from ..image_io import IMAGE_SUFFIXES, load_image
from .procedural import DeadLeavesSource, TextSource
from .source_base import ImageSource, _rand, rand_float, rand_int  # noqa: F401 (re-exported)

SKIMAGE_SPLITS = {
    "train": ("astronaut", "rocket", "motorcycle_left", "motorcycle_right"),
    "val": ("chelsea", "coffee"),
}
"""scikit-image photographs used for training and held out for the validation set."""


def random_resized_crop(
    image: np.ndarray, size: int, generator: torch.Generator, scale_range: tuple[float, float] = (0.5, 1.0)
) -> torch.Tensor:
    """A random square crop of ``image`` ``(H, W, 3)`` float32, resized to ``size``: ``(3, size, size)``.

    The crop's side in source pixels is ``size / s`` with ``s`` drawn from ``scale_range`` (``s < 1`` downscales),
    capped at the image's shorter side.
    """
    height, width = image.shape[:2]
    scale = rand_float(generator, *scale_range)
    side = int(min(round(size / scale), height, width))
    top, left = rand_int(generator, 0, height - side), rand_int(generator, 0, width - side)
    crop = np.ascontiguousarray(image[top : top + side, left : left + side])
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    return torch.from_numpy(np.clip(crop, 0, 1)).permute(2, 0, 1).contiguous()


class ArraySource(ImageSource):
    """Random crops of in-memory images ``(H, W, 3)`` float32 in [0, 1]."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        scale_range: tuple[float, float] = (0.5, 1.0),
        names: Sequence[str] | None = None,
    ):
        if len(images) == 0:
            raise ValueError("`images` is empty: a source needs at least one image.")
        self.images = [np.asarray(image, dtype=np.float32) for image in images]
        for image in self.images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"Images must be (H, W, 3), got {image.shape}.")
        self.scale_range = scale_range
        self.names = list(names) if names is not None else [f"image{i}" for i in range(len(images))]

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        index = rand_int(generator, 0, len(self.images) - 1)
        return random_resized_crop(self.images[index], size, generator, self.scale_range)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.names})"


def _skimage_image(name: str) -> np.ndarray:
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        array = left if name == "motorcycle_left" else right
    else:
        array = getattr(skimage.data, name)()
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"scikit-image's {name!r} is not an RGB image (shape {array.shape}).")
    return array.astype(np.float32) / 255.0


class SkimageSource(ArraySource):
    """Colour natural photographs shipped with scikit-image (no download).

    Args:
        split: ``"train"``, ``"val"`` (held out for the validation set) or ``"all"``; or ``names``.
    """

    def __init__(
        self, split: str = "train", names: Sequence[str] | None = None, scale_range: tuple[float, float] = (0.5, 1.0)
    ):
        if names is None:
            if split == "all":
                names = SKIMAGE_SPLITS["train"] + SKIMAGE_SPLITS["val"]
            elif split in SKIMAGE_SPLITS:
                names = SKIMAGE_SPLITS[split]
            else:
                raise ValueError(f"`split` must be 'train', 'val' or 'all', got {split!r}.")
        super().__init__([_skimage_image(name) for name in names], scale_range, names)


class FolderSource(ImageSource):
    """Random crops of the images in a folder (searched recursively), loaded lazily with a small cache.

    Args:
        root: the folder. Files with the suffixes ``extensions`` are used, sorted by path (deterministic).
        cache_size: decoded images kept in memory (per process / DataLoader worker).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        recursive: bool = True,
        extensions: Sequence[str] = IMAGE_SUFFIXES,
        scale_range: tuple[float, float] = (0.5, 1.0),
        cache_size: int = 8,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Image folder '{self.root}' does not exist or is not a folder.")
        suffixes = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
        pattern = "**/*" if recursive else "*"
        self.files = sorted(p for p in self.root.glob(pattern) if p.is_file() and p.suffix.lower() in suffixes)
        if not self.files:
            raise ValueError(
                f"No images with suffixes {sorted(suffixes)} found in '{self.root}'"
                f"{' or its subfolders' if recursive else ''}."
            )
        self.scale_range, self.cache_size = scale_range, cache_size
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def load(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        array = load_image(self.files[index], max_pixels=None).array
        self._cache[index] = array
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return array

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        index = rand_int(generator, 0, len(self.files) - 1)
        return random_resized_crop(self.load(index), size, generator, self.scale_range)

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.root}', {len(self.files)} images)"


CUHK_TEST_PHOTOS = 40
"""Photos 1-40 (file-name order) of the CUHK set are the in-focus test: no source reads them."""
CUHK_LAST_PHOTO = 204
CUHK_EROSION = 15
"""Pixels by which a mask's in-focus part is eroded (as the in-focus evaluation does)."""
MASKED_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def masked_photo_paths(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(photo, mask)`` pairs of ``root/images`` and ``root/blur_masks`` (same stem, PNG mask) in file-name
    order, the order the in-focus evaluation numbers them in. Lists names only; opens no file."""
    root = Path(root)
    folders = (root / "images", root / "blur_masks")
    if not all(f.is_dir() for f in folders):
        raise FileNotFoundError(
            f"'{root}' is not a masked-photo folder: it needs images/ and blur_masks/ (e.g. ../shared/real/cuhk)."
        )
    masks = {p.stem: p for p in folders[1].iterdir() if p.suffix.lower() == ".png"}
    photos = sorted(p for p in folders[0].iterdir() if p.stem in masks and p.suffix.lower() in MASKED_PHOTO_SUFFIXES)
    return [(p, masks[p.stem]) for p in photos]


def largest_square(allowed: np.ndarray) -> int:
    """Side (px) of the largest axis-aligned square of ``allowed`` ``(H, W)`` bool pixels."""
    blocked = np.pad(np.cumsum(np.cumsum(~allowed, 0), 1), ((1, 0), (1, 0)))
    low, high = 0, min(allowed.shape)
    while low < high:  # binary search: a square of side s fits iff one s x s window holds no blocked pixel
        side = (low + high + 1) // 2
        windows = blocked[side:, side:] - blocked[:-side, side:] - blocked[side:, :-side] + blocked[:-side, :-side]
        low, high = (side, high) if (windows == 0).any() else (low, side - 1)
    return low


class CUHKInFocusSource(ImageSource):
    """Sharp crops from the in-focus parts of the CUHK blur-detection photos (Shi et al., CVPR 2014).

    Photos are numbered from 1 in file-name order (as the in-focus evaluation numbers them); only photos 41-204 are
    used, photos 1-40 being the in-focus test set: they are never opened, and asking for them is an error. A crop
    lies wholly inside the mask's in-focus part (black) eroded by ``erosion`` px: its side is ``size / s`` source
    px, ``s`` drawn from ``scale_range`` and capped so that such a square exists; photos whose in-focus part holds
    no square of ``size`` px are skipped (a crop is never upscaled). Masks are read when the source is built,
    photos when drawn (a small cache, like :class:`FolderSource`).

    Args:
        root: the folder with ``images/`` and ``blur_masks/`` (e.g. ``../shared/real/cuhk``).
        indices: photo numbers to use, each in 41..204 and present; default all of 41..204 that the folder has.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        indices: Sequence[int] | None = None,
        erosion: int = CUHK_EROSION,
        scale_range: tuple[float, float] = (0.5, 1.0),
        cache_size: int = 8,
    ):
        pairs = masked_photo_paths(root)
        last = min(len(pairs), CUHK_LAST_PHOTO)
        indices = list(range(CUHK_TEST_PHOTOS + 1, last + 1)) if indices is None else [int(i) for i in indices]
        bad = [i for i in indices if not CUHK_TEST_PHOTOS < i <= last]
        if bad:
            raise ValueError(
                f"CUHK photo numbers must be in {CUHK_TEST_PHOTOS + 1}..{last} (photos 1-{CUHK_TEST_PHOTOS} are the "
                f"in-focus test set and are never read), got {bad}."
            )
        if not indices:
            raise ValueError(f"'{root}' has no photo past the {CUHK_TEST_PHOTOS} of the in-focus test set.")
        self.root, self.erosion, self.scale_range, self.cache_size = Path(root), int(erosion), scale_range, cache_size
        self.indices = indices
        self.paths = {i: pairs[i - 1] for i in indices}
        self.max_side = {i: largest_square(self.in_focus(i)) for i in indices}
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def in_focus(self, index: int) -> np.ndarray:
        """``(H, W)`` bool: photo ``index``'s eroded in-focus pixels (mask < 0.5, i.e. black)."""
        if index not in self.paths:
            raise ValueError(f"Photo {index} is not one of this source's (photos 1-{CUHK_TEST_PHOTOS} never are).")
        with Image.open(self.paths[index][1]) as mask:
            in_focus = np.asarray(mask.convert("L")) < 128
        if self.erosion > 0:
            structure = ndimage.generate_binary_structure(2, 1)
            in_focus = ndimage.binary_erosion(in_focus, structure, iterations=self.erosion, border_value=1)
        return in_focus

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The photo ``(H, W, 3)`` float32 in [0, 1] and its blocked-pixel integral image ``(H + 1, W + 1)``."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        image = load_image(self.paths[index][0], max_pixels=None).array
        in_focus = self.in_focus(index)
        if in_focus.shape != image.shape[:2]:
            raise ValueError(f"{self.paths[index][1].name}: mask {in_focus.shape} and photo {image.shape[:2]} differ.")
        blocked = np.pad(np.cumsum(np.cumsum(~in_focus, 0), 1), ((1, 0), (1, 0)))
        self._cache[index] = image, blocked
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image, blocked

    def usable(self, size: int) -> list[int]:
        """Photo numbers whose eroded in-focus part holds a ``size`` x ``size`` square."""
        return [i for i in self.indices if self.max_side[i] >= size]

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        usable = self.usable(size)
        if not usable:
            raise ValueError(
                f"No photo of {self!r} has an in-focus square of {size} px (eroded by {self.erosion} px); "
                f"the largest is {max(self.max_side.values())} px: use smaller crops."
            )
        index = usable[rand_int(generator, 0, len(usable) - 1)]
        scale = rand_float(generator, *self.scale_range)
        side = int(min(max(round(size / scale), size), self.max_side[index]))
        image, blocked = self._load(index)
        windows = blocked[side:, side:] - blocked[:-side, side:] - blocked[side:, :-side] + blocked[:-side, :-side]
        tops, lefts = np.nonzero(windows == 0)
        pick = rand_int(generator, 0, len(tops) - 1)
        top, left = int(tops[pick]), int(lefts[pick])
        crop = np.ascontiguousarray(image[top : top + side, left : left + side])
        if side != size:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(np.clip(crop, 0, 1)).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.root}', photos {self.indices[0]}-{self.indices[-1]})"


class MixedSource(ImageSource):
    """Draws each sample from one of ``sources``, chosen with probabilities proportional to ``weights``."""

    def __init__(self, sources: Sequence[ImageSource], weights: Sequence[float] | None = None):
        if not sources:
            raise ValueError("`sources` is empty.")
        weights = list(weights) if weights is not None else [1.0] * len(sources)
        if len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"`weights` must be {len(sources)} non-negative numbers with a positive sum, got {weights}."
            )
        self.sources = list(sources)
        self.weights = torch.tensor(weights, dtype=torch.float64) / sum(weights)

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        u = rand_float(generator)
        index = int(
            torch.searchsorted(self.weights.cumsum(0), torch.tensor([u], dtype=torch.float64)).clamp(
                max=len(self.sources) - 1
            )
        )
        return self.sources[index].sample(size, generator)

    def __repr__(self) -> str:
        parts = ", ".join(f"{s!r}: {w:.2f}" for s, w in zip(self.sources, self.weights.tolist(), strict=True))
        return f"{type(self).__name__}({parts})"


DEFAULT_TRAIN_SOURCES = ("skimage", "dead_leaves", "text")
DEFAULT_TRAIN_WEIGHTS = (0.4, 0.45, 0.15)
VALIDATION_SOURCES = ("skimage:val", "dead_leaves", "text")


def build_source(spec, weights: Sequence[float] | None = None) -> ImageSource:
    """An :class:`ImageSource` from a source, a name or a list of them.

    Names: ``"skimage"`` (training photos), ``"skimage:val"`` (held-out photos), ``"skimage:all"``,
    ``"dead_leaves"``, ``"text"``, ``"cuhk_in_focus:FOLDER"`` (:class:`CUHKInFocusSource`); any other string is a
    folder path. A list becomes a :class:`MixedSource`
    (``weights`` default: equal, or ``DEFAULT_TRAIN_WEIGHTS`` for ``DEFAULT_TRAIN_SOURCES``).
    """
    if isinstance(spec, ImageSource):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        name = str(spec)
        if name in ("skimage", "skimage:train", "skimage:val", "skimage:all"):
            return SkimageSource(name.split(":", 1)[1] if ":" in name else "train")
        if name == "dead_leaves":
            return DeadLeavesSource()
        if name == "text":
            return TextSource()
        if name.startswith("cuhk_in_focus:"):
            return CUHKInFocusSource(name.split(":", 1)[1])
        return FolderSource(name)
    if isinstance(spec, Sequence):
        specs = list(spec)
        if len(specs) == 1:
            return build_source(specs[0])
        if weights is None and tuple(specs) == DEFAULT_TRAIN_SOURCES:
            weights = DEFAULT_TRAIN_WEIGHTS
        return MixedSource([build_source(s) for s in specs], weights)
    raise TypeError(f"A source must be an ImageSource, a name, a folder path or a list of them, got {spec!r}.")


def augment(
    image: torch.Tensor, generator: torch.Generator, flip: bool = True, color_jitter: float = 0.1
) -> torch.Tensor:
    """Random horizontal/vertical flips and colour jitter of a ``(3, H, W)`` image in [0, 1].

    Colour jitter (strength ``j``): brightness x U(1-j, 1+j), contrast x U(1-j, 1+j) around the mean,
    saturation x U(1-2j, 1+2j) around the grey value, per-channel gains U(1-j/2, 1+j/2) (white balance).
    """
    draws = _rand(generator, 8).tolist()
    if flip and draws[0] < 0.5:
        image = image.flip(-1)
    if flip and draws[1] < 0.25:
        image = image.flip(-2)
    if color_jitter > 0:
        j = color_jitter
        brightness, contrast = 1 + j * (2 * draws[2] - 1), 1 + j * (2 * draws[3] - 1)
        saturation = 1 + 2 * j * (2 * draws[4] - 1)
        gains = torch.tensor([1 + j / 2 * (2 * d - 1) for d in draws[5:8]], dtype=image.dtype).view(3, 1, 1)
        image = image * gains.to(image.device) * brightness
        mean = image.mean()
        image = (image - mean) * contrast + mean
        grey = image.mean(dim=0, keepdim=True)
        image = (image - grey) * saturation + grey
    return image.clamp(0, 1)
