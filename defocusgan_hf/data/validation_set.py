"""Write (and read back) the fixed, seeded synthetic validation set, so every number is measured on the same images.

    python -m defocusgan_hf.data.validation_set --output_dir data/synthetic_val \
        --num_samples 24 --resolution 256 --seed 1234
    defocusgan-make-valset --output_dir data/synthetic_val        # the same, as a console script

Content held out from training: the scikit-image photographs of ``SKIMAGE_SPLITS["val"]`` (never used by the
default training sources) and procedural images (dead leaves, text) from the seed-1234 streams (training uses other
seeds; every ``(seed, index)`` pair is an independent stream).

Files: ``NNNN_{sharp,blurred,left,right}.png`` (RGB PNG, 8-bit by default, ``--bit_depth 16`` for 16-bit),
``coc.npz`` (one float32 ``(H, W)`` signed CoC map in pixels per sample, keyed ``NNNN``, rounded to 1/1024 px so that
it compresses) and ``manifest.json`` (seed, resolution, bit depth, sources, the full data config, the package version
and the file list).

Why 8-bit by default: the sensor noise fills the low byte of 16-bit files, which no PNG compressor can shrink; the
24 x 256² set takes ~28 MB at 16 bits against ~9 MB at 8 bits. The 8-bit rounding error (standard deviation
1/(255·√12) ≈ 0.0011) is below the synthetic noise and bounds PSNR only near 59 dB. The stored values *are* the
validation data: metrics are computed on what is read back.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..image_io import load_image, save_image
from .config import DATA_CONFIGS, DualPixelConfig
from .datasets import SyntheticDualPixelDataset
from .sources import VALIDATION_SOURCES

IMAGE_KEYS = ("sharp", "blurred", "left", "right")
MANIFEST = "manifest.json"
COC_FILE = "coc.npz"


def write_validation_set(
    output_dir: str | os.PathLike,
    num_samples: int = 24,
    resolution: int = 256,
    seed: int = 1234,
    sources=VALIDATION_SOURCES,
    config: DualPixelConfig | None = None,
    bit_depth: int = 8,
    overwrite: bool = False,
) -> Path:
    """Render ``num_samples`` synthetic DP samples and write them to ``output_dir``; returns the folder.

    Refuses to write into an existing non-empty folder unless ``overwrite`` (then the files it writes replace
    those of the same names; other files are left alone).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"`bit_depth` must be 8 or 16, got {bit_depth}.")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"'{output_dir}' exists and is not a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"'{output_dir}' is not empty; pass --overwrite to replace the validation set in it.")
    output_dir.mkdir(parents=True, exist_ok=True)
    config = config or DualPixelConfig()
    dataset = SyntheticDualPixelDataset(
        sources, resolution=resolution, length=num_samples, seed=seed, max_coc=config.max_coc, config=config
    )
    names, cocs = [], {}
    for index in tqdm(range(num_samples), desc="rendering validation set"):
        sample = dataset[index]
        name = f"{index:04d}"
        for key in IMAGE_KEYS:
            image = sample[key].permute(1, 2, 0).numpy()
            save_image(image, output_dir / f"{name}_{key}.png", bit_depth=bit_depth, overwrite=overwrite)
        cocs[name] = (np.round(sample["coc"][0].numpy().astype(np.float64) * 1024) / 1024).astype(np.float32)
        names.append(name)
    coc_path = output_dir / COC_FILE
    if coc_path.exists() and not overwrite:
        raise FileExistsError(f"'{coc_path}' already exists; pass --overwrite to replace it.")
    np.savez_compressed(coc_path, **cocs)
    manifest = {
        "description": "Synthetic dual-pixel validation set of defocusgan_hf (see docs/DATA.md).",
        "conventions": {
            "images": f"{bit_depth}-bit RGB PNG, sRGB in [0, 1] = value / {2**bit_depth - 1}",
            "blurred": "combined DP image, (left + right) / 2 before noise and JPEG",
            "coc": "coc.npz: float32 (H, W) per sample, signed CoC radius in pixels (rounded to 1/1024 px), "
            "> 0 behind the focal plane, < 0 in front",
        },
        "seed": seed,
        "num_samples": num_samples,
        "resolution": resolution,
        "bit_depth": bit_depth,
        "sources": [str(s) for s in sources] if isinstance(sources, (list, tuple)) else str(sources),
        "config": config.to_dict(),
        "package_version": _package_version(),
        "samples": names,
    }
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return output_dir


def _package_version() -> str:
    from .. import __version__

    return __version__


class ValidationSet(Dataset):
    """The validation set written by :func:`write_validation_set`: the same dict keys as the synthetic data,
    ``{sharp, blurred, left, right: (3, H, W), coc: (1, H, W), name: str}`` (float32)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"'{self.root}' is not a synthetic validation set: '{MANIFEST}' is missing. Write one with "
                "`python -m defocusgan_hf.data.validation_set --output_dir <folder>`."
            )
        self.manifest = json.loads(manifest_path.read_text())
        self.names = list(self.manifest["samples"])
        self.config = DualPixelConfig.from_dict(self.manifest["config"])
        with np.load(self.root / COC_FILE) as cocs:
            self.cocs = {name: cocs[name] for name in self.names}
        missing = [f"{n}_{k}.png" for n in self.names for k in IMAGE_KEYS if not (self.root / f"{n}_{k}.png").is_file()]
        if missing:
            raise FileNotFoundError(f"'{self.root}' lacks {len(missing)} image files, e.g. {missing[:3]}.")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        item = {
            key: torch.from_numpy(load_image(self.root / f"{name}_{key}.png").array).permute(2, 0, 1).contiguous()
            for key in IMAGE_KEYS
        }
        item["coc"] = self.coc(index)
        item["name"] = name
        return item

    def coc(self, index: int) -> torch.Tensor:
        """The true signed CoC map ``(1, H, W)`` of sample ``index``, in pixels, without reading its images."""
        return torch.from_numpy(self.cocs[self.names[index]])[None].clone()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write the fixed, seeded synthetic dual-pixel validation set.")
    parser.add_argument("--output_dir", type=str, default="data/synthetic_val", help="Folder to write into.")
    parser.add_argument("--num_samples", type=int, default=24, help="Number of samples.")
    parser.add_argument("--resolution", type=int, default=256, help="Side of the square samples in pixels.")
    parser.add_argument("--seed", type=int, default=1234, help="Seed of the whole set (content, scenes, noise).")
    parser.add_argument("--max_coc", type=float, default=25.0, help="Largest CoC radius in pixels.")
    parser.add_argument(
        "--sources",
        type=str,
        nargs="+",
        default=list(VALIDATION_SOURCES),
        help="Image sources: skimage:val, dead_leaves, text, or folders.",
    )
    parser.add_argument("--bit_depth", type=int, default=8, choices=(8, 16), help="Bits per channel of the PNGs.")
    parser.add_argument(
        "--data_config",
        default="eq3",
        choices=DATA_CONFIGS,
        help="eq3: the first engine, blurred with the paper's Eq. 3 kernel (the models' own family; the default, as "
        "data/synthetic_val); varied: the training engine's six PSF families, DP masks and sensors, so that a figure "
        "on it does not use the kernel the models assume.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Write into a non-empty folder, replacing files.")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # One thread: the set is small, and several threads on a shared CPU slow everything down (oversubscription).
    torch.set_num_threads(1)
    config = DualPixelConfig.named(args.data_config, max_coc=args.max_coc)
    folder = write_validation_set(
        args.output_dir,
        args.num_samples,
        args.resolution,
        args.seed,
        args.sources,
        config,
        args.bit_depth,
        args.overwrite,
    )
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(f"Wrote {args.num_samples} samples to '{folder}' ({size / 1e6:.1f} MB).")


if __name__ == "__main__":
    main()
