"""A bank of procedural sharp crops drawn once and read back from disk: sources at the rate a GPU consumes them.

Dead leaves and text are drawn on the CPU, one crop at a time (about 35 and 22 ms per 512² crop): a few DataLoader
workers cannot feed a GPU. :class:`CachedSource` draws ``count`` tiles from such a source once, stores them in a
NumPy ``.npy`` file (uint16, memory-mapped, so every DataLoader worker shares one copy through the page cache), and
then serves crops by an index and an offset drawn from the sample's generator: a memory read instead of a drawing.

Everything stays seeded: tile ``i`` is a pure function of ``(seed, source, i)`` and a crop a pure function of the
sample's generator, so a resumed run reads what an uninterrupted one reads, and a cache rebuilt elsewhere from the
same settings holds the same tiles. The trade-off: the procedural content repeats after ``count`` tiles (flips,
colour jitter and, with tiles larger than the crop, the offset still vary each reuse).

A ``.npy`` file rather than safetensors: it can be written a tile at a time and memory-mapped for reading; it is
read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .procedural import DeadLeavesSource, TextSource
from .source_base import ImageSource, rand_int, sample_generator
from .sources import MixedSource

CACHE_FORMAT_VERSION = 1
PROCEDURAL_SOURCES = (DeadLeavesSource, TextSource)
"""The source types :meth:`CropCache.wrap` replaces by a :class:`CachedSource` (the slow, unlimited ones)."""


def source_key(source: ImageSource) -> str:
    """A stable description of ``source``: its class and every setting (nested sources too), as JSON."""

    def describe(value):
        if isinstance(value, ImageSource):
            settings = {k: describe(v) for k, v in sorted(vars(value).items())}
            return {"class": f"{type(value).__module__}.{type(value).__qualname__}", **settings}
        if isinstance(value, (list, tuple)):
            return [describe(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return repr(value)

    return json.dumps(describe(source), sort_keys=True)


def _tile_generator(seed: int, source_key: str, index: int) -> torch.Generator:
    """The generator of tile ``index``: independent streams per ``(seed, source, index)``, the source in the place
    of :func:`~defocusgan_hf.data.source_base.sample_generator`'s epoch."""
    return sample_generator(seed, index, epoch=zlib.crc32(source_key.encode()))


class _Tiles(Dataset):
    """Tile ``i`` of ``source`` as ``(3, T, T)`` uint16, for building the bank with DataLoader workers."""

    def __init__(self, source: ImageSource, count: int, tile_size: int, seed: int, source_key: str):
        self.source, self.count, self.tile_size, self.seed = source, count, tile_size, seed
        self.source_key = source_key

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        tile = self.source.sample(self.tile_size, _tile_generator(self.seed, self.source_key, index))
        return torch.round(tile.float().clamp(0, 1) * 65535).to(torch.int32)  # uint16 has no DataLoader collation


class CachedSource(ImageSource):
    """Crops of a bank of ``count`` tiles of ``source``, ``tile_size`` px square, built once under ``cache_dir``.

    ``sample(size, generator)`` returns ``(3, size, size)`` float32 in [0, 1] (the tile quantised to 16 bits, at most
    7.6e-6 from the source's value); ``size`` may not exceed ``tile_size`` (crops are never upscaled). A tile the
    size of the crop keeps the source's statistics exactly (leaf sizes and fonts scale with the drawing size).

    The file's name holds a digest of every setting and of :func:`source_key`, so different settings never share a
    file; it is written under a temporary name and renamed when complete, so concurrent builders and interrupted
    builds never leave a partial bank behind a valid name.

    Args:
        source: the source to draw from (typically :class:`DeadLeavesSource` or :class:`TextSource`).
        cache_dir: folder of the banks (created).
        count: number of tiles.
        tile_size: tile side in pixels.
        seed: seed of the bank (tile ``i`` is a pure function of ``(seed, source_key(source), i)``).
        num_workers: DataLoader workers that draw the tiles when the bank is built (0: this process).
        progress: show a tqdm bar while building.
    """

    def __init__(
        self,
        source: ImageSource,
        cache_dir: str | os.PathLike,
        count: int = 4096,
        tile_size: int = 256,
        seed: int = 0,
        num_workers: int = 0,
        progress: bool = True,
    ):
        if count < 1:
            raise ValueError(f"`count` must be at least 1 tile, got {count}.")
        if tile_size < 16:
            raise ValueError(f"`tile_size` must be at least 16 pixels, got {tile_size}.")
        self.source, self.count, self.tile_size, self.seed = source, int(count), int(tile_size), int(seed)
        self.source_key = source_key(source)
        settings = {
            "format_version": CACHE_FORMAT_VERSION,
            "source": self.source_key,
            "count": self.count,
            "tile_size": self.tile_size,
            "seed": self.seed,
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.settings = settings
        self.path = Path(cache_dir) / f"{type(source).__name__}-{self.tile_size}px-{self.count}-{digest}.npy"
        if not self.path.is_file():
            self._build(num_workers, progress)
        self.tiles = self._open()

    def _build(self, num_workers: int, progress: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial.npy")
        shape = (self.count, 3, self.tile_size, self.tile_size)
        try:
            bank = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint16, shape=shape)
            loader = DataLoader(
                _Tiles(self.source, self.count, self.tile_size, self.seed, self.source_key),
                batch_size=None,
                num_workers=num_workers,
            )
            bar = tqdm(loader, total=self.count, desc=f"crop cache {self.path.name}", disable=not progress)
            for index, tile in enumerate(bar):
                bank[index] = tile.numpy().astype(np.uint16)
            bank.flush()
            del bank
            self.path.with_suffix(".json").write_text(json.dumps(self.settings, indent=2) + "\n")
            os.replace(partial, self.path)  # atomic: the bank appears complete or not at all
        finally:
            partial.unlink(missing_ok=True)

    def _open(self) -> np.ndarray:
        try:
            tiles = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as error:
            message = f"The crop cache {self.path} cannot be read ({error}); delete it to rebuild it."
            raise ValueError(message) from error
        expected = (self.count, 3, self.tile_size, self.tile_size)
        if tiles.shape != expected or tiles.dtype != np.uint16:
            raise ValueError(
                f"The crop cache {self.path} holds {tiles.dtype} {tiles.shape}, not uint16 {expected}: it was not "
                "written by this code; delete it to rebuild it."
            )
        return tiles

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        if not 1 <= size <= self.tile_size:
            raise ValueError(f"This crop cache holds {self.tile_size}-px tiles; a {size}-px crop cannot come from it.")
        index = rand_int(generator, 0, self.count - 1)
        top = rand_int(generator, 0, self.tile_size - size)
        left = rand_int(generator, 0, self.tile_size - size)
        crop = np.asarray(self.tiles[index, :, top : top + size, left : left + size], dtype=np.float32)
        return torch.from_numpy(crop / 65535.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {self.count} tiles of {self.tile_size}px, seed {self.seed})"


@dataclass(frozen=True)
class CropCache:
    """Where and how big the banks of :class:`CachedSource` are; :meth:`wrap` applies it to a source tree.

    ``count`` tiles per procedural source, built with ``num_workers`` DataLoader workers.
    """

    cache_dir: str
    count: int = 4096
    num_workers: int = 0
    progress: bool = True

    def wrap(self, source: ImageSource, tile_size: int, seed: int) -> ImageSource:
        """``source`` with every procedural source in it (also inside mixtures) replaced by a cached one."""
        if isinstance(source, MixedSource):
            return MixedSource([self.wrap(s, tile_size, seed) for s in source.sources], source.weights.tolist())
        if isinstance(source, PROCEDURAL_SOURCES):
            return CachedSource(source, self.cache_dir, self.count, tile_size, seed, self.num_workers, self.progress)
        return source


__all__ = ["CachedSource", "CropCache", "PROCEDURAL_SOURCES", "source_key"]
