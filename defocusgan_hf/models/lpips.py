"""Moved to :mod:`defocusgan_hf.perceptual.lpips`; this old import path stays for scripts that use it."""

from ..perceptual.lpips import *  # noqa: F403
from ..perceptual.lpips import LPIPS, TAPS, LPIPSWeightsError, detect_backbone  # noqa: F401
