"""The checkpoints shipped in the repository load strictly and do what their model cards say, on the committed
synthetic validation set (the full figures, with baselines, come from `defocusgan-eval`)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from defocusgan_hf.data.validation_set import ValidationSet
from defocusgan_hf.evaluation.metrics import psnr
from defocusgan_hf.pipelines import DefocusDeblurPipeline

pytestmark = pytest.mark.slow  # minutes of CPU (training subprocesses) or the shipped checkpoints; CI runs them
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "defocusgan-synthetic"


@pytest.fixture(scope="module")
def shipped():
    torch.manual_seed(0)
    pipe = DefocusDeblurPipeline.from_pretrained(SHIPPED)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def samples():
    val = ValidationSet(ROOT / "data" / "synthetic_val")
    return [val[i] for i in range(len(val))]


def test_shipped_pipeline_deblurs_the_validation_samples(shipped, samples):
    """A blur that is undone gets sharper: the restored images are closer to the sharp ones than the inputs."""
    gains = []
    for sample in samples:
        sharp = sample["sharp"].permute(1, 2, 0).numpy()
        blurred = sample["blurred"].permute(1, 2, 0).numpy()
        restored = shipped(blurred, output_type="np").images[0]
        gains.append(psnr(restored, sharp) - psnr(blurred, sharp))
    assert np.mean(gains) > 1.15, gains  # the card: +1.21 dB (+1.47 before the round-2 generator; see the card)


def test_shipped_defocus_net_halves_the_error_of_the_mean_map(shipped, samples):
    """Stage 1 (trained without true maps): its |map| is closer to the true |CoC| than one constant, the mean
    |CoC| of these samples, by at least half (the card: 2.00 against 6.18 px, after its fine-tuning on real DP
    captures; 1.78 before). Its signed error with one view order (``symmetric=False``) stays below 3.2 px (the card:
    3.06; 2.75 before the real-capture fine-tuning); the default takes both orders, so that swapping the views flips
    the sign exactly."""
    estimated, one_order, swapped, true = [], [], [], []
    for sample in samples:
        left, right = (sample[k].permute(1, 2, 0).numpy() for k in ("left", "right"))
        estimated.append(shipped.predict_defocus_map(left, right).squeeze())
        one_order.append(shipped.predict_defocus_map(left, right, symmetric=False).squeeze())
        swapped.append(shipped.predict_defocus_map(right, left).squeeze())
        true.append(sample["coc"][0].numpy())
    estimated, one_order, swapped, true = map(np.stack, (estimated, one_order, swapped, true))
    assert np.abs(np.abs(estimated) - np.abs(true)).mean() < 0.5 * np.abs(np.abs(true).mean() - np.abs(true)).mean()
    assert np.abs(one_order - true).mean() < 3.2
    np.testing.assert_allclose(swapped, -estimated, atol=1e-5)


def test_shipped_map_of_the_apps_dp_example_beats_a_constant(shipped):
    """The app's dual-pixel example (examples/chelsea_dp_*, rendered with a true map): the default map's |CoC| error
    is below that of the constant map at the true mean |CoC| (measured 1.01 against 1.78 px: 0.57 of it, the issue's
    target being 0.6; 1.45 before the real-capture fine-tuning), and it puts pixels on the near side as the true map
    does (17 %)."""
    from defocusgan_hf.image_io import load_defocus_map_png16, load_image

    examples = ROOT / "examples"
    left, right = (load_image(examples / f"chelsea_dp_{side}.jpg") for side in ("left", "right"))
    true = np.asarray(load_defocus_map_png16(examples / "chelsea_dp_coc_16bit.png"), dtype=np.float64)
    estimated = shipped.predict_defocus_map(left, right)[0, ..., 0]
    error = np.abs(np.abs(estimated) - np.abs(true)).mean()
    constant = np.abs(np.abs(true) - np.abs(true).mean()).mean()
    print(f"chelsea |CoC| MAE {error:.3f} px, constant {constant:.3f} px, ratio {error / constant:.3f}")
    assert error < 0.6 * constant
    assert 0.05 < np.mean(estimated < -1) < 0.4 and np.mean(true < -1) > 0.1
