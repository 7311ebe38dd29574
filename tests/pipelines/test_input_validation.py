"""Every input type the pipeline takes goes through the checks of ``load_image``: the 16 px minimum and an honest
bit depth (issue 17, item 7)."""

import cv2
import numpy as np
import PIL.Image
import pytest
import torch

from defocusgan_hf.image_io import ImageLoadError, LoadedImage, load_image, to_tensor
from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet
from defocusgan_hf.pipelines import DefocusDeblurPipeline


@pytest.fixture(scope="module")
def pipe():
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1)).eval()
    defocus = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1)).eval()
    pipe = DefocusDeblurPipeline(deblur_net=deblur, defocus_net=defocus)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def small(kind: str, side: int):
    array = np.full((side, side, 3), 0.5, dtype=np.float32)
    return {
        "pil": PIL.Image.fromarray((array * 255).astype(np.uint8)),
        "ndarray": array,
        "uint8": (array * 255).astype(np.uint8),
        "tensor": torch.from_numpy(array).permute(2, 0, 1),
        "loaded": LoadedImage(array),
    }[kind]


@pytest.mark.parametrize("kind", ["pil", "ndarray", "uint8", "tensor", "loaded"])
def test_images_below_16_px_are_refused_whatever_their_type(pipe, kind):
    with pytest.raises(ImageLoadError, match=r"1×1 px; at least 16×16"):
        pipe(small(kind, 1), output_type="np")
    with pytest.raises(ImageLoadError, match=r"15×15 px; at least 16×16"):
        pipe.estimate_defocus_map(small(kind, 15), small(kind, 15), output_type="np")
    assert pipe(small(kind, 16), output_type="np").images.shape == (1, 16, 16, 3)


def test_to_tensor_checks_the_minimum_unless_told_not_to():
    with pytest.raises(ImageLoadError, match="at least 16×16"):
        to_tensor(np.zeros((1, 1, 3), np.float32))
    assert to_tensor(np.zeros((1, 1, 3), np.float32), min_size=None)[0].shape == (1, 3, 1, 1)


def test_a_16_bit_png_opened_with_pillow_counts_as_the_8_bits_pillow_decoded(pipe, tmp_path):
    path = tmp_path / "deep.png"
    values = np.random.default_rng(0).integers(0, 65536, (24, 32, 3), dtype=np.uint16)
    cv2.imwrite(str(path), values)
    with PIL.Image.open(path) as opened, pytest.warns(UserWarning, match="decoded .* at 8 bits"):
        assert pipe(opened, output_type="np").bit_depths == [8]
    assert pipe(load_image(path), output_type="np").bit_depths == [16]  # from the file: all 16 bits
