"""Command-line tools.

``defocusgan-deblur``: photos (files, folders, globs) -> deblurred photos, 16-bit in -> 16-bit out, ICC/EXIF kept.
``defocusgan-defocus-map``: dual-pixel pairs -> signed CoC map (colour PNG, 16-bit PNG, .npy) + all-in-focus image.

Both refuse to write over an input or, without ``--overwrite``, over any existing file; a file that cannot be
read or processed is reported and skipped, and the exit code is 1 at the end (2 for a usage or model error).
Under ``accelerate launch`` the files are split between the processes, each using its own device.
"""

from __future__ import annotations

import argparse
import functools
import glob
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from .dual_pixel_views import DualPixelConvention
from .image_io import (
    DEFAULT_MAX_COC,
    DEFAULT_MAX_PIXELS,
    DEFOCUS_OUTPUTS,
    HIGH_BIT_DEPTH_SUFFIXES,
    IMAGE_SUFFIXES,
    LoadedImage,
    check_dual_pixel_pair,
    defocus_output_paths,
    export_defocus_map,
    load_image,
    save_image,
)
from .loading import load_pipeline

DEFAULT_MODEL: str | None = None
"""Model used when neither ``--model`` nor ``$DEFOCUSGAN_MODEL`` is given (None until weights are published)."""
MODEL_ENV_VAR = "DEFOCUSGAN_MODEL"
EXIT_OK, EXIT_FILE_ERRORS, EXIT_USAGE = 0, 1, 2
# Per-file failures that are reported and skipped; anything else is a bug and keeps its traceback.
FILE_ERRORS = (ValueError, OSError, RuntimeError, MemoryError, cv2.error)


@dataclass(frozen=True)
class InputFile:
    """An input image and the folder (relative to ``-o``) its outputs go to (non-empty for ``--recursive``)."""

    path: Path
    subdir: Path = Path()


# ----------------------------------------------------------------------------------------------------------------
# Finding inputs and planning outputs (pure functions: nothing is read or written)
# ----------------------------------------------------------------------------------------------------------------


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


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
            files = sorted(p for p in path.glob(pattern) if p.is_file() and _is_image_name(p))
            if not files:
                errors.append(f"'{spec}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(InputFile(p, p.parent.relative_to(path)) for p in files)
        elif any(char in spec for char in "*?["):
            files = sorted(Path(p) for p in glob.glob(spec, recursive=recursive))
            files = [p for p in files if p.is_file() and _is_image_name(p)]
            if not files:
                errors.append(f"no images match '{spec}'")
            found.extend(InputFile(p) for p in files)
        else:
            errors.append(f"'{spec}' does not exist")
    unique: dict[Path, InputFile] = {}
    for item in found:
        unique.setdefault(item.path.resolve(), item)
    return list(unique.values()), errors


class _OutputGuard:
    """Refuses outputs that are inputs (by path or by inode), that two inputs share, or that exist already."""

    def __init__(self, inputs: Iterable[Path], overwrite: bool):
        inputs = list(inputs)
        self.input_paths = {p.resolve() for p in inputs}
        self.input_inodes = {(s.st_dev, s.st_ino) for s in (p.stat() for p in inputs if p.exists())}
        self.overwrite = overwrite
        self.claimed: dict[Path, Path] = {}

    def check(self, source: Path, output: Path) -> str | None:
        resolved = output.resolve()
        if resolved in self.input_paths or (output.exists() and _inode(output) in self.input_inodes):
            return f"refusing to write '{output}': it is an input file (choose another -o or --suffix)"
        if resolved in self.claimed:
            return f"'{source}' and '{self.claimed[resolved]}' would both be written to '{output}'; rename one"
        if output.exists() and not self.overwrite:
            return f"'{output}' already exists; pass --overwrite to replace it"
        self.claimed[resolved] = source
        return None


def _inode(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


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
    guard = _OutputGuard([item.path for item in inputs], overwrite)
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


def match_dual_pixel_pairs(left: Path, right: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pairs of (left, right) views: two files, or two folders whose images are matched by file name."""
    if left.is_file() and right.is_file():
        return [(left, right)], []
    if left.is_dir() and right.is_dir():
        lefts = {p.name: p for p in left.iterdir() if p.is_file() and _is_image_name(p)}
        rights = {p.name: p for p in right.iterdir() if p.is_file() and _is_image_name(p)}
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


# ----------------------------------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------------------------------


def _load_pipeline(model: str, device: str, dtype: str, quiet: bool = False) -> Any:
    """Load ``DefocusDeblurPipeline`` from a folder or Hub repo id onto ``device``; raises OSError/ValueError."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    if quiet:
        diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar
    pipeline = load_pipeline(model, device, None if dtype == "float32" else getattr(torch, dtype))
    return pipeline.enable_channels_last() if pipeline.device.type == "cpu" else pipeline


def _partial_state(args: argparse.Namespace) -> Any:
    """accelerate's process state. On a machine without an accelerator (or with ``--device cpu``) it must be told
    ``cpu=True``, or processes started by ``accelerate launch``/``torchrun`` would each run every file."""
    import torch
    from accelerate import PartialState  # imported here: --help stays fast

    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return PartialState(cpu=args.device == "cpu" or (args.device is None and not has_accelerator))


def _resolve_model(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    model = args.model or os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL
    if not model:
        parser.error(f"no model given: pass --model PATH_OR_REPO_ID (or set ${MODEL_ENV_VAR})")
    return model


def _report(message: str, prefix: str = "error") -> None:
    tqdm.write(f"{prefix}: {message}", file=sys.stderr)


def _run_guarded(task: Callable[[], None]) -> bool:
    """Run one file's work; report a user-facing failure (no traceback) and warnings; True on success."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            task()
            ok = True
        except FILE_ERRORS as error:
            _report(str(error) or type(error).__name__)
            if isinstance(error, MemoryError) or "out of memory" in str(error):
                _report("the image may be too large for this device: try a smaller --tile_size", prefix="hint")
            ok = False
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            _report(str(warning.message), prefix="warning")
    return ok


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output_dir", required=True, type=Path, help="Folder for the results (created).")
    parser.add_argument(
        "--model",
        default=None,
        help=f"Pipeline folder or Hugging Face Hub repo id (default: ${MODEL_ENV_VAR}). Offline, set HF_HUB_OFFLINE=1 "
        "to load a repo id from the local cache without network retries.",
    )
    parser.add_argument(
        "--tile_size", type=int, default=512, help="Process images in tiles of this many pixels (0: whole image)."
    )
    parser.add_argument("--tile_overlap", type=int, default=64, help="Pixels shared by neighbouring tiles.")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace existing outputs (inputs are never replaced)."
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu, cuda, cuda:1, mps (default: accelerate's choice: a GPU when there is one).",
    )
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "float16", "bfloat16"), help="Precision of the networks."
    )
    parser.add_argument(
        "--max_megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help="Refuse images with more megapixels than this (checked before decoding).",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def _check_tiling(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.tile_size < 0 or 0 < args.tile_size < 32 or args.tile_overlap < 0:
        parser.error(
            f"--tile_size must be 0 or >= 32 and --tile_overlap >= 0, got {args.tile_size}, {args.tile_overlap}"
        )
    if args.tile_size and args.tile_overlap * 2 >= args.tile_size:
        parser.error(f"--tile_overlap ({args.tile_overlap}) must be less than half of --tile_size ({args.tile_size})")
    if args.max_megapixels <= 0:
        parser.error(f"--max_megapixels must be positive, got {args.max_megapixels}")


def _load_for_cli(args: argparse.Namespace, parser: argparse.ArgumentParser, state: Any) -> Any | None:
    """Load the pipeline onto ``--device`` (default: accelerate's device for this process); None after reporting."""
    model = _resolve_model(args, parser)
    try:
        pipeline = _load_pipeline(model, args.device or str(state.device), args.dtype, quiet=args.quiet)
    except (OSError, ValueError, ImportError, RuntimeError) as error:
        _report(f"cannot load the model '{model}': {error}")
        return None
    if hasattr(pipeline, "set_progress_bar_config"):
        # One bar per image over its tiles, under the bar over files; hidden when --quiet or on other processes.
        quiet = args.quiet or not state.is_local_main_process
        pipeline.set_progress_bar_config(disable=quiet, leave=False, position=1, desc="tiles")
    return pipeline


def _run_all(state: Any, jobs: list, task: Callable[..., None], unit: str, args: argparse.Namespace) -> tuple[int, int]:
    """Run ``task(*job)`` for this process's share of ``jobs``; returns ``(jobs run here, failures)``."""
    restore_opencv = _quiet_opencv()
    failures = 0
    try:
        with state.split_between_processes(jobs) as mine:
            for job in tqdm(mine, unit=unit, disable=args.quiet or not state.is_local_main_process):
                failures += not _run_guarded(functools.partial(task, *job))
    finally:
        restore_opencv()
    return len(mine), failures


def _tile_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"tile_size": args.tile_size or None, "tile_overlap": args.tile_overlap}


def _quiet_opencv() -> Callable[[], None]:
    """Silence OpenCV's own decoder log lines (this CLI reports errors itself); returns the restore function."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return lambda: cv2.utils.logging.setLogLevel(previous)


# ----------------------------------------------------------------------------------------------------------------
# defocusgan-deblur
# ----------------------------------------------------------------------------------------------------------------


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
    _add_common_arguments(parser)
    return parser


def _start(args, parser, errors: list[str], have_work: bool, had_inputs: bool):
    """Report the planning errors (main process), then load the model: ``(state, pipeline, exit_code)``, with
    ``pipeline`` None when there is nothing to do or the model cannot be loaded."""
    state = _partial_state(args)
    if state.is_main_process:
        for error in errors:
            _report(error)
    if not have_work:
        _report("nothing to do")
        return state, None, EXIT_FILE_ERRORS if had_inputs else EXIT_USAGE
    return state, _load_for_cli(args, parser, state), EXIT_USAGE


def deblur_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``defocusgan-deblur``; returns the exit code (0 ok, 1 some files failed, 2 usage/model)."""
    parser = deblur_parser()
    args = parser.parse_args(argv)
    _check_tiling(args, parser)
    _resolve_model(args, parser)
    inputs, errors = collect_images(args.inputs, args.recursive)
    inputs, skipped = skip_own_outputs(inputs, args.inputs, args.suffix)
    if skipped and _partial_state(args).is_main_process:
        shown = ", ".join(f"'{p.name}'" for p in skipped[:3]) + (
            f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        )
        _report(
            f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} that look like outputs of this tool "
            f"({shown}: their names end in --suffix {args.suffix!r} or like a defocus map's files); "
            "name a file explicitly to deblur it",
            prefix="note",
        )
    plans, plan_errors = plan_deblur_outputs(inputs, args.output_dir, args.suffix, args.format, args.overwrite)
    errors += plan_errors
    state, pipeline, exit_code = _start(args, parser, errors, bool(plans), bool(inputs))
    if pipeline is None:
        return exit_code
    task = functools.partial(_deblur_one, pipeline, args=args)
    count, failures = _run_all(state, plans, task, "image", args)
    tqdm.write(f"wrote {count - failures} of {count} images to '{args.output_dir}'", file=sys.stderr)
    return EXIT_FILE_ERRORS if failures or errors else EXIT_OK


def _deblur_one(pipeline: Any, source: Path, output: Path, *, args: argparse.Namespace) -> None:
    loaded = load_image(source, max_pixels=int(args.max_megapixels * 1e6))
    restored = pipeline(loaded, output_type="np", self_ensemble=args.self_ensemble, **_tile_kwargs(args)).images[0]
    bit_depth = 16 if loaded.bit_depth == 16 and output.suffix.lower() in HIGH_BIT_DEPTH_SUFFIXES else 8
    save_image(restored, output, bit_depth, loaded.icc_profile, loaded.exif, overwrite=args.overwrite)


# ----------------------------------------------------------------------------------------------------------------
# defocusgan-defocus-map
# ----------------------------------------------------------------------------------------------------------------


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
    _add_common_arguments(parser)
    return parser


def defocus_map_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``defocusgan-defocus-map``; returns the exit code (0 ok, 1 some pairs failed, 2 usage/model)."""
    parser = defocus_map_parser()
    args = parser.parse_args(argv)
    _check_tiling(args, parser)
    if args.max_coc is not None and args.max_coc <= 0:
        parser.error(f"--max_coc must be positive, got {args.max_coc}")
    _resolve_model(args, parser)
    pairs, errors = match_dual_pixel_pairs(args.left, args.right)
    guard = _OutputGuard([p for pair in pairs for p in pair], args.overwrite)
    plans = []
    for left, right in pairs:
        outputs = defocus_output_paths(args.output_dir, left.stem)
        problems = [e for e in (guard.check(left, path) for path in outputs.values()) if e]
        errors += problems
        if not problems:
            plans.append((left, right, outputs))
    state, pipeline, exit_code = _start(args, parser, errors, bool(plans), bool(pairs))
    if pipeline is None:
        return exit_code
    if getattr(pipeline, "defocus_net", None) is None:
        _report("this model has no defocus-map net (defocus_net); use a pipeline saved with one")
        return EXIT_USAGE
    model_max_coc = getattr(getattr(pipeline.defocus_net, "config", None), "max_coc", DEFAULT_MAX_COC)
    task = functools.partial(_defocus_map_one, pipeline, max_coc=float(args.max_coc or model_max_coc), args=args)
    count, failures = _run_all(state, plans, task, "pair", args)
    tqdm.write(f"wrote {count - failures} of {count} defocus maps to '{args.output_dir}'", file=sys.stderr)
    return EXIT_FILE_ERRORS if failures or errors else EXIT_OK


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
        check_dual_pixel_pair(left.array, right.array)
    except ValueError as error:
        raise ValueError(f"'{left_path}' and '{right_path}': {error}") from None
    result = pipeline.estimate_defocus_map(left, right, output_type="np", split=args.split, **_tile_kwargs(args))
    if result.dual_pixel_convention is not None:
        tqdm.write(
            f"{left_path.name}: {DualPixelConvention(**result.dual_pixel_convention).describe()}", file=sys.stderr
        )
    coc = np.asarray(result.defocus_maps[0])[..., 0]
    export_defocus_map(coc, result.images[0], outputs, like=left, max_coc=max_coc, overwrite=args.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m defocusgan_hf.cli {deblur,defocus-map} ...`` (what ``accelerate launch -m`` runs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"deblur": deblur_main, "defocus-map": defocus_map_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m defocusgan_hf.cli {deblur,defocus-map} ... (--help for each)", file=sys.stderr)
        return EXIT_USAGE
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
