"""Real data: DPDD (Abuolaim & Brown, ECCV 2020) and generic folders of blurred/sharp or left/right pairs.

All datasets return float32 ``(3, H, W)`` tensors in [0, 1] and the file stem as ``name``; 16-bit files keep their
16-bit precision (values ``k / 65535``). Training crops are random but fixed per ``(seed, epoch, index)``; call
``set_epoch`` between epochs for new crops. A horizontal flip of dual-pixel data also swaps the left and right
views, so that the disparity keeps its sign convention.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..image_io import IMAGE_SUFFIXES, load_image
from .datasets import sample_generator

DPDD_FOLDER = "dd_dp_dataset_canon"
DPDD_SPLITS = ("train", "val", "test")
DPDD_LAYOUT = """\
dd_dp_dataset_canon/
  {split}_c/source/*.png   blurred combined image (16-bit RGB PNG, 1680x1120)
  {split}_c/target/*.png   all-in-focus ground truth
  {split}_l/source/*.png   left dual-pixel view     (needed with with_dp_views=True)
  {split}_r/source/*.png   right dual-pixel view    (needed with with_dp_views=True)
with {split} one of train, val, test, and the same file names in every folder."""


def _image_files(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the images directly in ``folder``; duplicate stems are an error."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in files:
                raise ValueError(
                    f"'{folder}' holds two images named '{path.stem}' ({files[path.stem].name}, {path.name})."
                )
            files[path.stem] = path
    return files


def _preview(names: Sequence[str], limit: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _match(folders: dict[str, Path]) -> list[dict[str, Path]]:
    """Match the images of several folders by file stem; unmatched names are an error that lists them."""
    listings = {role: _image_files(folder) for role, folder in folders.items()}
    for role, listing in listings.items():
        if not listing:
            raise ValueError(f"The {role} folder '{folders[role]}' contains no images ({', '.join(IMAGE_SUFFIXES)}).")
    problems = []
    union = set.union(*(set(listing) for listing in listings.values()))
    for role, listing in listings.items():
        absent = union - set(listing)
        if absent:
            problems.append(f"missing from the {role} folder '{folders[role]}': {_preview(absent)}")
    if problems:
        raise ValueError("Images are matched by file name (without extension), but " + "; ".join(problems) + ".")
    return [{role: listings[role][name] for role in folders} for name in sorted(union)]


def _check_sizes(items: list[dict[str, Path]]) -> None:
    """All images of a matched item must have the same size (read from the file headers only)."""
    for item in items:
        sizes = {}
        for role, path in item.items():
            with Image.open(path) as image:
                sizes[role] = image.size
        if len(set(sizes.values())) > 1:
            described = ", ".join(f"{role} {w}x{h}" for role, (w, h) in sizes.items())
            name = next(iter(item.values())).stem
            raise ValueError(f"The images named '{name}' have different sizes ({described}); they must match.")


def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(load_image(path, max_pixels=None).array).permute(2, 0, 1).contiguous()


class _PairedImages(Dataset):
    """Matched files per role, loaded as tensors, with optional aligned random crops and flips."""

    swap_on_hflip: tuple[str, str] | None = None

    def __init__(self, items: list[dict[str, Path]], crop_size: int | None, seed: int, augment: bool):
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"`crop_size` must be a positive number of pixels or None, got {crop_size}.")
        self.items, self.crop_size, self.seed, self.augment, self.epoch = items, crop_size, int(seed), augment, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def _load_item(self, index: int) -> dict[str, torch.Tensor]:
        images = {role: _load(path) for role, path in self.items[index].items()}
        shapes = {role: tuple(image.shape[-2:]) for role, image in images.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"The images of '{self.name(index)}' have different sizes {shapes}; they must match.")
        return images

    def name(self, index: int) -> str:
        return next(iter(self.items[index].values())).stem

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} items.")
        images = self._load_item(index)
        generator = sample_generator(self.seed, index, self.epoch)
        if self.crop_size is not None:
            height, width = next(iter(images.values())).shape[-2:]
            if self.crop_size > min(height, width):
                raise ValueError(
                    f"`crop_size` {self.crop_size} is larger than '{self.name(index)}' ({width}x{height})."
                )
            top = int(torch.randint(0, height - self.crop_size + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - self.crop_size + 1, (1,), generator=generator))
            images = {k: v[:, top : top + self.crop_size, left : left + self.crop_size] for k, v in images.items()}
        if self.augment:
            flip_x, flip_y = torch.rand(2, generator=generator).tolist()
            if flip_x < 0.5:
                images = {k: v.flip(-1) for k, v in images.items()}
                if self.swap_on_hflip and all(role in images for role in self.swap_on_hflip):
                    a, b = self.swap_on_hflip
                    images[a], images[b] = images[b], images[a]
            if flip_y < 0.5:
                images = {k: v.flip(-2) for k, v in images.items()}
        return {**{k: v.contiguous() for k, v in images.items()}, "name": self.name(index)}


class DPDDDataset(_PairedImages):
    """The Canon DPDD dataset: ``{blurred, sharp, left, right: (3, H, W) float32, name: str}``.

    ``blurred`` is ``*_c/source`` (the combined image, the single-image input), ``sharp`` is ``*_c/target``,
    ``left``/``right`` are ``*_l/source`` / ``*_r/source``. Files are read with their 16-bit precision.

    Args:
        root: the ``dd_dp_dataset_canon`` folder, or a folder that contains it.
        split: ``"train"`` (350 scenes), ``"val"`` (74) or ``"test"`` (76).
        crop_size: side of aligned random crops (training), or ``None`` for full images (evaluation).
        seed: seeds the crops and flips (with the epoch and index).
        with_dp_views: also load the left and right views.
        augment: random flips (a horizontal flip swaps left and right); default: on for cropped training data.
    """

    swap_on_hflip = ("left", "right")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        crop_size: int | None = None,
        seed: int = 0,
        with_dp_views: bool = True,
        augment: bool | None = None,
    ):
        if split not in DPDD_SPLITS:
            raise ValueError(f"`split` must be one of {DPDD_SPLITS}, got {split!r}.")
        root = Path(root)
        layout = DPDD_LAYOUT.format(split=split)
        if not root.is_dir():
            raise FileNotFoundError(f"DPDD root '{root}' does not exist. Expected this layout:\n{layout}")
        if (root / DPDD_FOLDER).is_dir() and not (root / f"{split}_c").is_dir():
            root = root / DPDD_FOLDER
        folders = {"blurred": root / f"{split}_c" / "source", "sharp": root / f"{split}_c" / "target"}
        if with_dp_views:
            folders.update(left=root / f"{split}_l" / "source", right=root / f"{split}_r" / "source")
        missing = [str(folder.relative_to(root)) for folder in folders.values() if not folder.is_dir()]
        if missing:
            raise FileNotFoundError(
                f"'{root}' is not a DPDD root for split {split!r}: missing {', '.join(missing)}. "
                f"Expected this layout:\n{layout}"
            )
        try:
            items = _match(folders)
        except ValueError as err:
            raise ValueError(f"{err}\nExpected this layout:\n{layout}") from None
        self.root, self.split, self.with_dp_views = root, split, with_dp_views
        super().__init__(items, crop_size, seed, augment if augment is not None else crop_size is not None)


class PairedFolderDataset(_PairedImages):
    """Blurred / sharp pairs from two folders, matched by file stem: ``{blurred, sharp, name}``.

    Sizes are checked from the file headers when the dataset is created (``ValueError`` naming the pair).
    """

    def __init__(
        self,
        blurred_dir: str | os.PathLike,
        sharp_dir: str | os.PathLike,
        crop_size: int | None = None,
        seed: int = 0,
        augment: bool = False,
    ):
        folders = {"blurred": Path(blurred_dir), "sharp": Path(sharp_dir)}
        _check_folders(folders)
        items = _match(folders)
        _check_sizes(items)
        super().__init__(items, crop_size, seed, augment)


class DualPixelFolderDataset(_PairedImages):
    """Left / right DP views without ground truth (e.g. Pixel DP captures), matched by file stem.

    Returns ``{left, right, blurred, name}`` where ``blurred = (left + right) / 2`` is the combined image, as the
    sensor sums its two photodiodes (the same convention as the synthetic data).
    """

    swap_on_hflip = ("left", "right")

    def __init__(
        self,
        left_dir: str | os.PathLike,
        right_dir: str | os.PathLike,
        crop_size: int | None = None,
        seed: int = 0,
        augment: bool = False,
    ):
        folders = {"left": Path(left_dir), "right": Path(right_dir)}
        _check_folders(folders)
        items = _match(folders)
        _check_sizes(items)
        super().__init__(items, crop_size, seed, augment)

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["blurred"] = (item["left"] + item["right"]) / 2
        return item


def _check_folders(folders: dict[str, Path]) -> None:
    for role, folder in folders.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"The {role} folder '{folder}' does not exist or is not a folder.")
