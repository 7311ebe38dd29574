"""A probe, not a feature: output = input + s * (model(input) - input) on the real scenes, s in STRENGTHS.

python eval/self_ensemble_real/residual_strength_probe.py [--x8]     # from the repository root
"""

import sys

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio

from defocusgan_hf.evaluation.real_captures import load_scenes
from defocusgan_hf.evaluation.real_scoring import shift_tolerant_psnr
from defocusgan_hf.pipelines import DefocusDeblurPipeline

torch.set_num_threads(1)
ensemble = "--x8" in sys.argv
pipe = DefocusDeblurPipeline.from_pretrained("checkpoints/defocusgan-synthetic")
STRENGTHS = (1.0, 1.25, 1.5, 2.0)
sets = {
    "dpdd": ("../shared/real/dpdd_gif", [f"{i:02d}" for i in range(14)], 0),
    "pixel4": ("../shared/real/pixel4", [f"{i:03d}" for i in range(1, 9)], 2),
}
for name, (root, names, shift) in sets.items():
    gains = {s: [] for s in STRENGTHS}
    sharp_in = {s: [] for s in STRENGTHS}
    for scene in load_scenes(root, names):
        out = pipe(scene.image, output_type="np", self_ensemble=ensemble).images[0]
        base = (
            shift_tolerant_psnr(scene.image, scene.target, shift)
            if shift
            else peak_signal_noise_ratio(scene.target, scene.image, data_range=1)
        )
        for s in STRENGTHS:
            y = np.clip(scene.image + s * (out - scene.image), 0, 1)
            p = (
                shift_tolerant_psnr(y, scene.target, shift)
                if shift
                else peak_signal_noise_ratio(scene.target, y, data_range=1)
            )
            gains[s].append(p - base)
        if name == "dpdd":
            o2 = pipe(scene.target, output_type="np", self_ensemble=ensemble).images[0]
            for s in STRENGTHS:
                y = np.clip(scene.target + s * (o2 - scene.target), 0, 1)
                sharp_in[s].append(peak_signal_noise_ratio(scene.target, y, data_range=1))
    half = len(names) // 2
    for s in STRENGTHS:
        g = np.array(gains[s])
        extra = f" sharp-in {np.mean(sharp_in[s]):.2f}/{np.min(sharp_in[s]):.2f}" if sharp_in[s] else ""
        print(
            f"{name} x8={ensemble} s={s}: choose {g[:half].mean():+.3f} held-out {g[half:].mean():+.3f} "
            f"all {g.mean():+.3f} worst {g.min():+.3f}{extra}",
            flush=True,
        )
