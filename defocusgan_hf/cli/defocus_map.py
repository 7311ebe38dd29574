"""``defocusgan-defocus-map``: dual-pixel pairs -> signed CoC map (colour PNG, 16-bit PNG, .npy) + all-in-focus
image."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..image_io import (
    DEFAULT_MAX_COC,
    DEFOCUS_OUTPUTS,
    LoadedImage,
    check_dual_pixel_pair,
    defocus_output_paths,
    export_defocus_map,
    load_image,
)
from ..pipelines.dual_pixel_views import DualPixelConvention
from . import common


def match_dual_pixel_pairs(left: Path, right: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pairs of (left, right) views: two files, or two folders whose images are matched by file name."""
    if left.is_file() and right.is_file():
        return [(left, right)], []
    if left.is_dir() and right.is_dir():
        lefts = {p.name: p for p in left.iterdir() if p.is_file() and common._is_image_name(p)}
        rights = {p.name: p for p in right.iterdir() if p.is_file() and common._is_image_name(p)}
        errors = [
            f"'{lefts[n]}' has no right view of the same name in '{right}'" for n in sorted(lefts.keys() - rights)
        ]
        errors += [
            f"'{rights[n]}' has no left view of the same name in '{left}'" for n in sorted(rights.keys() - lefts)
        ]
        pairs = [(lefts[n], rights[n]) for n in sorted(lefts.keys() & rights)]
        if not pairs and not errors:
            errors.append(f"'{left}' and '{right}' hold no images")
        return pairs, errors
    missing = [f"'{p}' does not exist" for p in (left, right) if not p.exists()]
    return [], missing or [f"--left and --right must be two files or two folders, got '{left}' and '{right}'"]


def defocus_map_parser() -> argparse.ArgumentParser:
    names = ", ".join(f"<stem>{suffix}" for suffix in DEFOCUS_OUTPUTS.values())
    parser = argparse.ArgumentParser(
        prog="defocusgan-defocus-map",
        description="Estimate the signed defocus (CoC radius, px) map of dual-pixel captures and their all-in-focus "
        f"image. Writes {names} per pair (<stem> from the left view). The map is > 0 behind the focal plane and < 0 "
        "in front of it; see image_io.save_defocus_map_png16 for the 16-bit encoding.",
        epilog="examples:\n  defocusgan-defocus-map --left x_l.png --right x_r.png -o maps/\n"
        "  defocusgan-defocus-map --left test_l/source --right test_r/source -o maps/   (pairs matched by name)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--left", required=True, type=Path, help="Left DP view, or a folder of them.")
    parser.add_argument("--right", required=True, type=Path, help="Right DP view, or a folder with the same names.")
    parser.add_argument(
        "--split",
        choices=["auto", "horizontal", "vertical"],
        default="auto",
        help="How the sensor splits its pixels: left/right views (horizontal, DSLRs), top/bottom (vertical, many "
        "phones; the top view is given as --left), or auto: detected from the views' disparity (default). The "
        "convention used is printed per pair.",
    )
    parser.add_argument(
        "--max_coc",
        type=float,
        default=None,
        help=f"CoC radius (px) at the ends of the colour scale and of the 16-bit encoding (default: the model's, "
        f"else {DEFAULT_MAX_COC}).",
    )
    common._add_common_arguments(parser)
    return parser


def defocus_map_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``defocusgan-defocus-map``; returns the exit code (0 ok, 1 some pairs failed, 2 usage/model)."""
    parser = defocus_map_parser()
    args = parser.parse_args(argv)
    common._check_tiling(args, parser)
    if args.max_coc is not None and args.max_coc <= 0:
        parser.error(f"--max_coc must be positive, got {args.max_coc}")
    common._resolve_model(args, parser)
    pairs, errors = match_dual_pixel_pairs(args.left, args.right)
    guard = common._OutputGuard([p for pair in pairs for p in pair], args.overwrite)
    plans = []
    for left, right in pairs:
        outputs = defocus_output_paths(args.output_dir, left.stem)
        problems = [e for e in (guard.check(left, path) for path in outputs.values()) if e]
        errors += problems
        if not problems:
            plans.append((left, right, outputs))
    state, pipeline, exit_code = common._start(args, parser, errors, bool(plans), bool(pairs))
    if pipeline is None:
        return exit_code
    if getattr(pipeline, "defocus_net", None) is None:
        common._report("this model has no defocus-map net (defocus_net); use a pipeline saved with one")
        return common.EXIT_USAGE
    model_max_coc = getattr(getattr(pipeline.defocus_net, "config", None), "max_coc", DEFAULT_MAX_COC)
    task = functools.partial(_defocus_map_one, pipeline, max_coc=float(args.max_coc or model_max_coc), args=args)
    count, failures = common._run_all(state, plans, task, "pair", args)
    tqdm.write(f"wrote {count - failures} of {count} defocus maps to '{args.output_dir}'", file=sys.stderr)
    return common.EXIT_FILE_ERRORS if failures or errors else common.EXIT_OK


def _defocus_map_one(
    pipeline: Any,
    left_path: Path,
    right_path: Path,
    outputs: dict[str, Path],
    *,
    max_coc: float,
    args: argparse.Namespace,
) -> None:
    max_pixels = int(args.max_megapixels * 1e6)
    left: LoadedImage = load_image(left_path, max_pixels=max_pixels)
    right: LoadedImage = load_image(right_path, max_pixels=max_pixels)
    try:
        check_dual_pixel_pair(left.pixels, right.pixels)
    except ValueError as error:
        raise ValueError(f"'{left_path}' and '{right_path}': {error}") from None
    result = pipeline.estimate_defocus_map(left, right, output_type="np", split=args.split, **common._tile_kwargs(args))
    if result.dual_pixel_convention is not None:
        tqdm.write(
            f"{left_path.name}: {DualPixelConvention(**result.dual_pixel_convention).describe()}", file=sys.stderr
        )
    coc = np.asarray(result.defocus_maps[0])[..., 0]
    export_defocus_map(coc, result.images[0], outputs, like=left, max_coc=max_coc, overwrite=args.overwrite)
