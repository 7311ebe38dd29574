"""Command-line tools.

``defocusgan-deblur``: photos (files, folders, globs) -> deblurred photos, 16-bit in -> 16-bit out, ICC/EXIF kept.
``defocusgan-defocus-map``: dual-pixel pairs -> signed CoC map (colour PNG, 16-bit PNG, .npy) + all-in-focus image.

Both refuse to write over an input or, without ``--overwrite``, over any existing file; a file that cannot be
read or processed is reported and skipped, and the exit code is 1 at the end (2 for a usage or model error).
Under ``accelerate launch`` the files are split between the processes, each using its own device.

One module per command (``deblur``, ``defocus_map``) and what they share (``common``: the output guard, the common
flags, model loading, the run loop).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..image_io import DEFOCUS_OUTPUTS
from .common import (
    DEFAULT_MODEL,
    EXIT_FILE_ERRORS,
    EXIT_OK,
    EXIT_USAGE,
    FILE_ERRORS,
    MODEL_ENV_VAR,
    _OutputGuard,
)
from .deblur import (
    OWN_OUTPUT_ENDINGS,
    InputFile,
    collect_images,
    deblur_main,
    deblur_parser,
    plan_deblur_outputs,
    skip_own_outputs,
)
from .defocus_map import defocus_map_main, defocus_map_parser, match_dual_pixel_pairs

__all__ = [
    "DEFAULT_MODEL",
    "DEFOCUS_OUTPUTS",
    "EXIT_FILE_ERRORS",
    "EXIT_OK",
    "EXIT_USAGE",
    "FILE_ERRORS",
    "MODEL_ENV_VAR",
    "OWN_OUTPUT_ENDINGS",
    "InputFile",
    "_OutputGuard",
    "collect_images",
    "deblur_main",
    "deblur_parser",
    "defocus_map_main",
    "defocus_map_parser",
    "main",
    "match_dual_pixel_pairs",
    "plan_deblur_outputs",
    "skip_own_outputs",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m defocusgan_hf.cli {deblur,defocus-map} ...`` (what ``accelerate launch -m`` runs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"deblur": deblur_main, "defocus-map": defocus_map_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m defocusgan_hf.cli {deblur,defocus-map} ... (--help for each)", file=sys.stderr)
        return EXIT_USAGE
    return commands[argv[0]](argv[1:])
