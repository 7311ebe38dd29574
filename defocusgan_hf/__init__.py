"""defocusgan_hf: learnable blur kernel + DefocusGAN (Zhai et al., AAAI 2023) for defocus deblurring."""

__version__ = "0.1.0"

from .models import (  # noqa: E402
    DefocusDeblurNet,
    DualPixelDefocusNet,
    LearnableBlurKernel,
    PatchDiscriminator,
    reblur,
)
from .pipelines import DefocusDeblurPipeline, DefocusDeblurPipelineOutput  # noqa: E402

__all__ = [
    "DefocusDeblurNet",
    "DefocusDeblurPipeline",
    "DefocusDeblurPipelineOutput",
    "DualPixelDefocusNet",
    "LearnableBlurKernel",
    "PatchDiscriminator",
    "__version__",
    "reblur",
]
