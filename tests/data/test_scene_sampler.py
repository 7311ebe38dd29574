"""The layered-scene sampler computes only what a scene uses (the masks of its own layers, each with its own
kind's field; a plane or a ramp only where a layer has one) and draws what it always drew: the scenes and the
random stream are those of before (so a resumed run renders the same batches)."""

import pytest
import torch

from defocusgan_hf.data.scene import _shape_masks, sample_scene


def test_masks_not_wanted_are_zero_and_the_others_unchanged():
    n, H, W = 9, 40, 48
    every = _shape_masks(torch.Generator().manual_seed(3), n, H, W, None)
    wanted = torch.tensor([True, False, True, True, False, False, True, True, False])
    generator = torch.Generator().manual_seed(3)
    some = _shape_masks(generator, n, H, W, None, wanted)
    assert torch.equal(some[wanted], every[wanted])
    assert not some[~wanted].any()
    assert every[~wanted].flatten(1).amax(dim=1).gt(0).all()  # they were real masks, left out
    # The same draws: the generator ends where the full computation leaves it.
    reference = torch.Generator().manual_seed(3)
    _shape_masks(reference, n, H, W, None)
    assert torch.equal(generator.get_state(), reference.get_state())


# Per (scene, layer) sums of alpha and CoC of sample_scene(3, 96, 80, seed 0), from the sampler before it skipped
# unused work (git 7b44512).
ALPHA_SUMS = [7680.0, 104.0278, 1640.0631, 0, 0, 7680.0, 1081.9532, 326.5767, 227.2816, 1807.3517, 7680.0, 105.7252]
COC_SUMS = [13309.52, 3221.568, -4853.521, -7662.908, -22816.582, 160693.25, 0.0, -23492.559, -57173.656]


def test_the_scenes_are_those_of_before():
    scene = sample_scene(3, 96, 80, torch.Generator().manual_seed(0))
    alpha_sums = scene.alpha.sum(dim=(2, 3, 4)).flatten().tolist()
    coc_sums = scene.coc.sum(dim=(2, 3, 4)).flatten().tolist()
    assert alpha_sums[: len(ALPHA_SUMS)] == pytest.approx(ALPHA_SUMS, rel=1e-5, abs=1e-3)
    assert alpha_sums[len(ALPHA_SUMS) :] == [0.0, 0.0, 0.0]  # the third scene uses two layers
    assert coc_sums[: len(COC_SUMS)] == pytest.approx(COC_SUMS, rel=1e-5, abs=1e-2)
