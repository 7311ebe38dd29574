"""What ``defocusgan-deblur`` and ``defocusgan-defocus-map`` share: the output guard, the common flags, loading the
model (onto accelerate's device for this process) and the loop that runs each file, reporting and skipping the
files that fail."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
from tqdm.auto import tqdm

from ..image_io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from ..pipelines.loading import load_pipeline

DEFAULT_MODEL: str | None = None
"""Model used when neither ``--model`` nor ``$DEFOCUSGAN_MODEL`` is given (None until weights are published)."""
MODEL_ENV_VAR = "DEFOCUSGAN_MODEL"
EXIT_OK, EXIT_FILE_ERRORS, EXIT_USAGE = 0, 1, 2
# Per-file failures that are reported and skipped; anything else is a bug and keeps its traceback.
FILE_ERRORS = (ValueError, OSError, RuntimeError, MemoryError, cv2.error)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


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


def _load_pipeline(model: str, device: str, dtype: str, quiet: bool = False) -> Any:
    """Load ``DefocusDeblurPipeline`` from a folder or Hub repo id onto ``device``; raises OSError/ValueError."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    if quiet:
        diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar
    pipeline = load_pipeline(model, device)
    if dtype != "float32":  # float32 weights, convolutions under autocast: the image itself stays float32
        pipeline.enable_autocast(getattr(torch, dtype))
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
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="Precision of the networks' convolutions (autocast; weights, input and output stay float32). "
        "bfloat16: 0.65x the time of float32 on whole images (0.78x in 512-px tiles) on a CPU with AVX-512 "
        "bf16, 63-74 dB from it (docs/RESULTS.md).",
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
