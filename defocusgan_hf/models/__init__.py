from .blur_kernel import LearnableBlurKernel, butterworth_disc_kernel, gaussian_kernel, kernel_bank, kernel_size
from .deblur_net import DefocusDeblurNet, DefocusDeblurNetOutput, defocus_masks, guidance_weight_at
from .defocus_net import DualPixelDefocusNet, DualPixelDefocusNetOutput
from .discriminator import PatchDiscriminator
from .reblur import fft_convolve, reblur

__all__ = [
    "DefocusDeblurNet",
    "DefocusDeblurNetOutput",
    "DualPixelDefocusNet",
    "DualPixelDefocusNetOutput",
    "LearnableBlurKernel",
    "PatchDiscriminator",
    "butterworth_disc_kernel",
    "defocus_masks",
    "fft_convolve",
    "gaussian_kernel",
    "guidance_weight_at",
    "kernel_bank",
    "kernel_size",
    "reblur",
]
