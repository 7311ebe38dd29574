"""What the Gradio app (``app.py``) does besides calling the pipeline, without Gradio: CPU threads, downscaling of
large uploads, previews, file names and the status lines (:mod:`.handlers` holds what needs Gradio).
Tested through the app (tests/app/test_app.py)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..image_io import LoadedImage
from ..image_io.types import _quantize, _to_unit
from ..pipelines.tiling import count_tiles


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    Hand-rolled because ``os.cpu_count()`` (and torch's default thread count) report the host's cores inside a
    container: a Space on "2 vCPU" hardware may see 16 and oversubscribe them, which is many times slower.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``num_threads``, else ``$DEFOCUSGAN_NUM_THREADS``, else one per usable CPU.

    With one request at a time, one thread per core is fastest (benchmarks/bench_app.py measures 1 and 2 threads on
    2 vCPUs). Returns the number set.
    """
    if num_threads is None:
        num_threads = int(os.environ.get("DEFOCUSGAN_NUM_THREADS", 0)) or available_cpus()
    if num_threads < 1:
        raise ValueError(f"`num_threads` must be a positive number of threads, got {num_threads}.")
    torch.set_num_threads(num_threads)
    return num_threads


def display_source(source: str, root: Path) -> str:
    """The model's name as the page shows it: a folder inside ``root`` (the app's folder) relative to it (not the
    machine's absolute path, e.g. /home/user/app/... on a Space), anything else (a Hub id, a folder elsewhere) as
    given."""
    path = Path(source)
    if path.is_absolute() and path.resolve().is_relative_to(root):
        return path.resolve().relative_to(root).as_posix()
    return source


def downscale(images: tuple[LoadedImage, ...], max_pixels: int) -> tuple[tuple[LoadedImage, ...], str | None]:
    """Downscale images above ``max_pixels`` (all by the same factor, area averaging, in the pixels' own dtype: no
    full-size float copy), with the message that says so; ``(images, None)`` when they are small enough."""
    width, height = images[0].size
    if width * height <= max_pixels:
        return images, None
    factor = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    message = (
        f"The image is {width}×{height} px ({width * height / 1e6:.1f} MP), above the "
        f"{max_pixels / 1e6:g} MP this app processes: it was downscaled to {size[0]}×{size[1]} px. "
        "For full resolution, run the command-line tool `defocusgan-deblur` on your own machine."
    )
    if len(images) == 2:
        message += " The CoC radii are in pixels of the downscaled views."
    resized = tuple(
        LoadedImage(
            cv2.resize(image.pixels, size, interpolation=cv2.INTER_AREA),
            image.bit_depth,
            image.icc_profile,
            image.exif,
            image.path,
            image.notes,
        )
        for image in images
    )
    return resized, message


def write_preview(array: np.ndarray, path: Path, like: LoadedImage, max_side: int) -> str:
    """8-bit PNG of ``array`` (``(H, W, 3)`` float in [0, 1], uint8 or uint16) of at most ``max_side`` px per side,
    with the input's ICC profile (browsers honour it).

    Written by Pillow at the fastest compression level (0.2 s instead of 0.8 s for 1680×1120 with ``save_image``'s
    default level): previews are transient, two per request.
    """
    height, width = array.shape[:2]
    factor = max_side / max(height, width)
    if array.dtype not in (np.uint8, np.uint16):
        array = np.ascontiguousarray(array, dtype=np.float32)
    if factor < 1:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)  # in its own dtype
    pixels = array if array.dtype == np.uint8 else _quantize(_to_unit(array), 8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1, icc_profile=like.icc_profile)
    return str(path)


def safe_stem(path: str) -> str:
    """The upload's file name without extension, reduced to letters, digits, ``-`` and ``_`` (64 at most)."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).stem)[:64]
    return stem or "image"


def tiles_text(size: tuple[int, int], tile_size: int, tile_overlap: int, per: str = "") -> str:
    """ "6 tiles of ≤640 px, 2 CPU threads" for an image of ``size`` (width, height)."""
    tiles = count_tiles(size[1], size[0], tile_size, tile_overlap)
    threads = torch.get_num_threads()
    return (
        f"{tiles} tile{'s' if tiles != 1 else ''} of ≤{tile_size} px{per}, "
        f"{threads} CPU thread{'s' if threads != 1 else ''}"
    )


def defocus_map_summary(coc: np.ndarray) -> str:
    """The map's |CoC| maximum and mean and its near and far shares, for the status line."""
    return (
        f"|CoC| radius up to {np.abs(coc).max():.1f} px, mean {np.abs(coc).mean():.1f} px "
        f"(near side {np.mean(coc <= -1):.0%}, far side {np.mean(coc >= 1):.0%} of pixels)."
    )


def status_text(summary: str, notes: list[str], untrained: bool) -> str:
    """The status shown under a result: ``summary``, a line per note, and a warning for untrained weights."""
    lines = [summary]
    lines += [f"- {sentence(note)}" for note in notes]
    if untrained:
        lines.append("- ⚠️ Untrained weights: this result is not meaningful.")
    return "\n".join(lines)


def sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop."""
    text = capital(text.strip())
    return text if text.endswith((".", "!", "?")) else text + "."


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def read_and_renew(path: str | os.PathLike) -> bytes | None:
    """The upload's bytes, or None when it is gone; its age for Gradio's ``delete_cache`` (ctime) starts again, so
    an upload in use is never among the oldest files."""
    try:
        os.utime(path)
        return Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def remove_empty_folders(root: str | os.PathLike, min_age_s: float = 0.0) -> int:
    """Remove the folders under ``root`` (not ``root`` itself) that are empty and were last changed at least
    ``min_age_s`` seconds ago, deepest first; returns how many went.

    Gradio's ``delete_cache`` deletes files only, so each upload (one folder per content hash) and each request's
    result folder would leave an empty folder behind. The age keeps a folder that was just made, and is about to be
    filled, from being removed under a concurrent request.
    """
    root, removed, now = Path(root), 0, time.time()
    if not root.is_dir():
        return 0
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(Path(entry[0]).parts)):
        path = Path(folder)
        if path == root:
            continue
        try:
            if now - path.stat().st_mtime >= min_age_s:
                path.rmdir()  # fails (and is skipped) unless empty
                removed += 1
        except OSError:
            pass
    return removed
