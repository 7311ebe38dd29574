"""Re-create the app's offline examples with the synthetic dual-pixel engine (defocusgan_hf.data).

Sources: scikit-image's bundled photographs (no download), licences in examples/README.md. Each photo is rendered
once as a layered scene with spatially varying defocus (every layer shows the photo itself, so it still looks like
the photo), with mild sensor noise. Writes, next to this script:

- ``coffee_defocused.jpg``, ``rocket_defocused.jpg``: the combined (blurred) image, JPEG quality 92;
- ``chelsea_dp_left.jpg``, ``chelsea_dp_right.jpg``: the two DP views, JPEG quality 95;
- ``chelsea_dp_coc_16bit.png``: the ground-truth signed CoC map in pixels as a 16-bit PNG, for comparison
  (read it with ``defocusgan_hf.image_io.load_defocus_map_png16``).

Usage: ``python examples/make_examples.py`` (≈10 s on a CPU; the output is fixed by the seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from defocusgan_hf.data import DualPixelConfig, DualPixelRenderer
from defocusgan_hf.image_io import save_defocus_map_png16

HERE = Path(__file__).resolve().parent
CONFIG = DualPixelConfig(
    num_layers=(3, 4),
    aperture_range=(20.0, 30.0),
    in_focus_prob=1.0,
    mix_layer_content=False,
    gamma_range=(2.2, 2.2),
    exposure_range=(1.0, 1.0),
    vignetting_range=(0.0, 0.0),
    noise_prob=1.0,
    shot_noise_range=(2e-4, 2e-4),
    read_noise_range=(1e-3, 1e-3),
    jpeg_prob=0.0,
)
"""Strong blur (CoC up to ≈20 px) beside a focal plane inside the scene, little noise, no JPEG (the file is one)."""


def render(name: str, seed: int) -> dict[str, np.ndarray]:
    """Render the scikit-image photo ``name`` -> ``{blurred, left, right: (H, W, 3) float32, coc: (H, W)}``."""
    photo = torch.from_numpy(getattr(skimage.data, name)().astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    out = DualPixelRenderer(CONFIG)(photo, torch.Generator().manual_seed(seed))
    arrays = {key: value[0].permute(1, 2, 0).numpy() for key, value in out.items()}
    arrays["coc"] = arrays["coc"][..., 0]
    return arrays


def to_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8))


def main() -> None:
    for name, seed in (("coffee", 1), ("rocket", 2)):
        sample = render(name, seed)
        to_pil(sample["blurred"]).save(HERE / f"{name}_defocused.jpg", quality=92, subsampling=0)
        print(f"{name}: |coc| max {np.abs(sample['coc']).max():.1f} px")
    sample = render("chelsea", 3)
    to_pil(sample["left"]).save(HERE / "chelsea_dp_left.jpg", quality=95, subsampling=0)
    to_pil(sample["right"]).save(HERE / "chelsea_dp_right.jpg", quality=95, subsampling=0)
    save_defocus_map_png16(sample["coc"], HERE / "chelsea_dp_coc_16bit.png", overwrite=True)
    print(f"chelsea: |coc| max {np.abs(sample['coc']).max():.1f} px")


if __name__ == "__main__":
    main()
