"""Stage-1 figures on real DP scenes: the best constant map and the sign-flip fraction."""

import numpy as np
import torch
from scipy import ndimage

from defocusgan_hf.evaluation.real_captures import RealScene
from defocusgan_hf.evaluation.real_dual_pixel import evaluate_dual_pixel_scene, sign_flip_fraction
from defocusgan_hf.models.blur_kernel import kernel_bank
from defocusgan_hf.models.reblur import reblur


def test_sign_flip_fraction_counts_defocused_pixels_only():
    forward = np.array([3.0, -4.0, 0.5, 5.0])
    swapped = np.array([-3.0, -4.0, 9.0, -1.0])
    assert sign_flip_fraction(forward, swapped) == 2 / 3  # 0.5 px is not defocused
    assert sign_flip_fraction(np.zeros(3), np.zeros(3)) is None


def test_a_scene_blurred_by_one_radius_is_explained_by_that_constant():
    torch.manual_seed(0)
    kernels = kernel_bank(6)  # (R + 1, K, K) for radii 0..6
    sharp = ndimage.gaussian_filter(np.random.default_rng(0).random((48, 64, 3)), (0.8, 0.8, 0)).astype(np.float32)
    sharp_t = torch.from_numpy(sharp).permute(2, 0, 1)[None]
    blurred = reblur(sharp_t, torch.full((1, 1, 48, 64), 4.0), kernels)[0].permute(1, 2, 0).numpy()
    scene = RealScene("s", blurred, sharp, dp_views=(blurred, blurred))

    def true_map(a, b):
        return np.full(a.shape[:2], 4.0, np.float32)

    result, arrays = evaluate_dual_pixel_scene(scene, true_map, kernels)
    assert result.best_constant == 4.0 and result.reblur_l1_constant < 1e-6
    assert result.reblur_l1_net < 1e-6 and arrays["map"].shape == (48, 64)
    assert result.sign_flip == 0.0  # this "net" ignores the order of the views

    def zero_map(a, b):
        return np.zeros(a.shape[:2], np.float32)

    worse, _ = evaluate_dual_pixel_scene(scene, zero_map, kernels)
    assert worse.reblur_l1_net > 10 * worse.reblur_l1_constant and worse.improvement_over_constant < 0
