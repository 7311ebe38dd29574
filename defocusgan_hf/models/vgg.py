"""Moved to :mod:`defocusgan_hf.perceptual.vgg`; this old import path stays for scripts that use it."""

from ..perceptual.vgg import *  # noqa: F403
from ..perceptual.vgg import VGG19Features, VGGWeightsNotFoundError  # noqa: F401
