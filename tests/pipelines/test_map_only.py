"""The pipeline's map-only path (what defocusgan-eval uses for stage-1 rows) and the shared loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline
from defocusgan_hf.pipelines.loading import load_defocus_net, load_pipeline


@pytest.fixture
def nets():
    torch.manual_seed(0)
    deblur = DefocusDeblurNet(level_channels=(4, 4, 4, 4, 4), branch_depths=(0, 0, 0, 0)).eval()
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1)).eval()
    torch.nn.init.normal_(defocus.tail.weight, std=0.5)
    return deblur, defocus


def test_map_only_pipeline_gives_the_maps_of_the_full_one(nets):
    rng = np.random.default_rng(0)
    left = rng.random((70, 90, 3), dtype=np.float32)
    right = np.roll(left, 2, axis=1)
    full = DefocusDeblurPipeline(deblur_net=nets[0], defocus_net=nets[1])
    maps_only = DefocusDeblurPipeline(deblur_net=None, defocus_net=nets[1])
    expected = full.estimate_defocus_map(left, right, tile_size=48, tile_overlap=8).defocus_maps
    np.testing.assert_allclose(maps_only.predict_defocus_map(left, right, tile_size=48, tile_overlap=8), expected)
    with pytest.raises(ValueError, match="no `deblur_net`"):
        maps_only(left)


def test_a_pipeline_needs_one_of_the_two_nets():
    with pytest.raises(TypeError, match="deblur_net"):
        DefocusDeblurPipeline(deblur_net=None)


def test_loader_takes_pipeline_folders_bare_net_folders_and_refuses_missing_paths(nets, tmp_path):
    DefocusDeblurPipeline(deblur_net=nets[0], defocus_net=nets[1]).save_pretrained(tmp_path / "pipe")
    nets[0].save_pretrained(tmp_path / "bare")
    assert load_pipeline(tmp_path / "pipe").defocus_net is not None
    bare = load_pipeline(tmp_path / "bare")
    assert bare.defocus_net is None and list(bare.deblur_net.config.level_channels) == [4, 4, 4, 4, 4]
    assert list(load_defocus_net(tmp_path / "pipe").config.level_channels) == [4, 8, 8]
    with pytest.raises(OSError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing"))
