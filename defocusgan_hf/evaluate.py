"""Backward-compatible entry point: ``python -m defocusgan_hf.evaluate`` and ``defocusgan-eval`` run
:mod:`defocusgan_hf.evaluation` (where the code now lives); its public names stay importable from here."""

import sys

from .evaluation import *  # noqa: F403
from .evaluation.__main__ import main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
