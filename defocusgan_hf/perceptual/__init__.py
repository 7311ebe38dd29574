"""Third-party feature nets, apart from the Hub models: VGG19 features for the perceptual loss (:mod:`.vgg`) and
LPIPS for the metric (:mod:`.lpips`), with their strict weight loading (:mod:`.weights`)."""

from .lpips import LPIPS, LPIPSWeightsError
from .vgg import VGG19Features, VGGWeightsNotFoundError

__all__ = ["LPIPS", "LPIPSWeightsError", "VGG19Features", "VGGWeightsNotFoundError"]
