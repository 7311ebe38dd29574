"""``defocusgan-deblur``: photos (files, folders, globs) -> deblurred photos, 16-bit in -> 16-bit out, ICC/EXIF
kept."""

from __future__ import annotations

import argparse
import functools
import glob
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..image_io import DEFOCUS_OUTPUTS, HIGH_BIT_DEPTH_SUFFIXES, IMAGE_SUFFIXES, load_image, save_image
from . import common


@dataclass(frozen=True)
class InputFile:
    """An input image and the folder (relative to ``-o``) its outputs go to (non-empty for ``--recursive``)."""

    path: Path
    subdir: Path = Path()


def collect_images(specs: Iterable[str], recursive: bool = False) -> tuple[list[InputFile], list[str]]:
    """Expand files, folders and glob patterns into image files (sorted, without duplicates), plus error messages.

    A file named explicitly is always taken (a non-image is reported when it is read); folders and globs yield
    only files with an image extension (``IMAGE_SUFFIXES``), hidden files excluded. ``recursive`` descends into
    sub-folders (their layout is kept under the output folder) and lets ``**`` in globs match folders.
    """
    found: list[InputFile] = []
    errors: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_file():
            found.append(InputFile(path))
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and common._is_image_name(p))
            if not files:
                errors.append(f"'{spec}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(InputFile(p, p.parent.relative_to(path)) for p in files)
        elif any(char in spec for char in "*?["):
            files = sorted(Path(p) for p in glob.glob(spec, recursive=recursive))
            files = [p for p in files if p.is_file() and common._is_image_name(p)]
            if not files:
                errors.append(f"no images match '{spec}'")
            found.extend(InputFile(p) for p in files)
        else:
            errors.append(f"'{spec}' does not exist")
    unique: dict[Path, InputFile] = {}
    for item in found:
        unique.setdefault(item.path.resolve(), item)
    return list(unique.values()), errors


OWN_OUTPUT_ENDINGS = tuple(Path(suffix).stem for suffix in DEFOCUS_OUTPUTS.values())
"""Stems of what ``defocusgan-defocus-map`` writes (``<stem>_defocus_color`` ...); ``--suffix`` adds the deblurred."""


def skip_own_outputs(
    inputs: Sequence[InputFile], specs: Iterable[str], suffix: str = "_deblurred"
) -> tuple[list[InputFile], list[Path]]:
    """``(inputs to process, skipped)``: files found in a folder or by a glob whose name ends like an output of
    this tool (``<stem><suffix>``, or a defocus-map output) are skipped, so that ``-o`` may be the input folder
    and a second run does not deblur the first run's results (``a_deblurred_deblurred.png``). Files named
    explicitly are always processed."""
    explicit = {Path(spec).resolve() for spec in specs if Path(spec).is_file()}
    endings = (*OWN_OUTPUT_ENDINGS, suffix) if suffix else OWN_OUTPUT_ENDINGS
    kept, skipped = [], []
    for item in inputs:
        if item.path.resolve() not in explicit and item.path.stem.endswith(endings):
            skipped.append(item.path)
        else:
            kept.append(item)
    return kept, skipped


def plan_deblur_outputs(
    inputs: Sequence[InputFile],
    out_dir: Path,
    suffix: str = "_deblurred",
    file_format: str = "png",
    overwrite: bool = False,
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(input, output)`` pairs named ``<stem><suffix>.png`` (or the input's extension for ``"same"``), and errors."""
    guard = common._OutputGuard([item.path for item in inputs], overwrite)
    plans, errors = [], []
    for item in inputs:
        extension = ".png" if file_format == "png" else item.path.suffix
        output = out_dir / item.subdir / f"{item.path.stem}{suffix}{extension}"
        error = guard.check(item.path, output)
        if error:
            errors.append(error)
        else:
            plans.append((item.path, output))
    return plans, errors


def deblur_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defocusgan-deblur",
        description="Remove defocus blur from photos with DefocusGAN (single image, no dual-pixel views needed).",
        epilog="examples:\n  defocusgan-deblur photo.jpg -o out/\n  defocusgan-deblur shoot/ 'more/*.png' -o out/ "
        "--model ./defocusgan-dpdd\n  accelerate launch -m defocusgan_hf.cli deblur shoot/ -o out/   (several GPUs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="IN", help="Image files, folders or glob patterns (quoted).")
    parser.add_argument("--recursive", action="store_true", help="Descend into sub-folders (mirrored under -o).")
    parser.add_argument("--suffix", default="_deblurred", help="Appended to each input's name (default: _deblurred).")
    parser.add_argument(
        "--format",
        default="png",
        choices=("png", "same"),
        help="png (default; 16-bit when the input is 16-bit) or the input's own format.",
    )
    parser.add_argument(
        "--self_ensemble",
        action="store_true",
        help="Average the results for the 8 flips and quarter turns of each image (8x the time, a small gain).",
    )
    common._add_common_arguments(parser)
    return parser


def deblur_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``defocusgan-deblur``; returns the exit code (0 ok, 1 some files failed, 2 usage/model)."""
    parser = deblur_parser()
    args = parser.parse_args(argv)
    common._check_tiling(args, parser)
    common._resolve_model(args, parser)
    inputs, errors = collect_images(args.inputs, args.recursive)
    inputs, skipped = skip_own_outputs(inputs, args.inputs, args.suffix)
    if skipped and common._partial_state(args).is_main_process:
        shown = ", ".join(f"'{p.name}'" for p in skipped[:3]) + (
            f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        )
        common._report(
            f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} that look like outputs of this tool "
            f"({shown}: their names end in --suffix {args.suffix!r} or like a defocus map's files); "
            "name a file explicitly to deblur it",
            prefix="note",
        )
    plans, plan_errors = plan_deblur_outputs(inputs, args.output_dir, args.suffix, args.format, args.overwrite)
    errors += plan_errors
    state, pipeline, exit_code = common._start(args, parser, errors, bool(plans), bool(inputs))
    if pipeline is None:
        return exit_code
    task = functools.partial(_deblur_one, pipeline, args=args)
    count, failures = common._run_all(state, plans, task, "image", args)
    tqdm.write(f"wrote {count - failures} of {count} images to '{args.output_dir}'", file=sys.stderr)
    return common.EXIT_FILE_ERRORS if failures or errors else common.EXIT_OK


def _deblur_one(pipeline: Any, source: Path, output: Path, *, args: argparse.Namespace) -> None:
    loaded = load_image(source, max_pixels=int(args.max_megapixels * 1e6))
    tiling = common._tile_kwargs(args)
    bit_depth = 16 if loaded.bit_depth == 16 and output.suffix.lower() in HIGH_BIT_DEPTH_SUFFIXES else 8
    # uint8/uint16 out, tile by tile: no full-size float32 copy of the photo (benchmarks/bench_tiled_memory.py)
    restored = pipeline(
        loaded, output_type="np", output_bit_depth=bit_depth, self_ensemble=args.self_ensemble, **tiling
    ).images[0]
    icc_profile, exif = loaded.icc_profile, loaded.exif
    del loaded  # the photo's pixels go before encoding the result (which copies it once more)
    save_image(restored, output, bit_depth, icc_profile, exif, overwrite=args.overwrite)
