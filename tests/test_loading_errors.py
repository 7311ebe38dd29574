"""A model folder with a missing piece says which component's file is missing, and where (issue 17, item 6)."""

import pytest

from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline
from defocusgan_hf.pipelines.loading import load_defocus_net, load_pipeline

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture
def pipeline_dir(tmp_path):
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1))
    DefocusDeblurPipeline(deblur_net=deblur, defocus_net=defocus).save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"


@pytest.mark.parametrize("component", ["deblur_net", "defocus_net"])
def test_missing_weights_name_the_component_and_the_file(pipeline_dir, component):
    (pipeline_dir / component / WEIGHTS).unlink()
    with pytest.raises(OSError, match=rf"weights of the `{component}` component are missing: .*{component}/{WEIGHTS}"):
        load_pipeline(pipeline_dir)


def test_a_missing_component_folder_or_config_is_named(pipeline_dir):
    (pipeline_dir / "defocus_net" / "config.json").unlink()
    with pytest.raises(OSError, match=r"`defocus_net` component has no config.json"):
        load_pipeline(pipeline_dir)
    (pipeline_dir / "defocus_net" / WEIGHTS).unlink()
    (pipeline_dir / "defocus_net").rmdir()
    with pytest.raises(OSError, match=r"`defocus_net` component is missing"):
        load_pipeline(pipeline_dir)


def test_bare_net_folders_without_weights_are_named(pipeline_dir):
    (pipeline_dir / "deblur_net" / WEIGHTS).unlink()
    with pytest.raises(OSError, match=rf"weights of the net are missing: .*deblur_net/{WEIGHTS}"):
        load_pipeline(pipeline_dir / "deblur_net")
    (pipeline_dir / "defocus_net" / WEIGHTS).unlink()
    with pytest.raises(OSError, match=r"weights of the `defocus_net` component are missing"):
        load_defocus_net(pipeline_dir)


def test_complete_folders_still_load(pipeline_dir):
    assert load_pipeline(pipeline_dir).defocus_net is not None
    assert load_pipeline(pipeline_dir / "deblur_net").defocus_net is None
    assert tuple(load_defocus_net(pipeline_dir).config.level_channels) == (4, 8, 8)
