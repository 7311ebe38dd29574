"""defocusgan_hf: learnable blur kernel + DefocusGAN (Zhai et al., AAAI 2023) for defocus deblurring."""

__version__ = "0.1.0"
