"""Real-capture evaluation on tiny fabricated folders of both layouts."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from defocusgan_hf.evaluation.contact_sheets import contact_sheet, most_changed_crop
from defocusgan_hf.evaluation.real_captures import (
    detect_layout,
    eroded_in_focus,
    evaluate_real,
    load_masked_photos,
    load_real_set,
    load_scenes,
    reference_rows,
    summarise,
    training_validation,
)
from defocusgan_hf.evaluation.real_scoring import (
    channel_spread,
    masked_psnr,
    to_grey,
)


def _save(array: np.ndarray, path) -> None:
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def _blur(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    return ndimage.gaussian_filter(image, (sigma, sigma, 0))


@pytest.fixture
def scenes_root(real_scenes):
    root = real_scenes(
        shape=(40, 56),
        smooth=0.7,
        blur=_blur,
        references={"dpdnet": lambda sharp: 0.5 * (sharp + _blur(sharp))},
        dp_views=lambda sharp: (_blur(sharp), _blur(sharp)),
    )
    (root / "LICENSE.md").write_text("not a scene")
    return root


@pytest.fixture
def photos_root(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "blur_masks").mkdir()
    for name in ("a", "b"):
        _save(rng.random((48, 64, 3)), root / "images" / f"{name}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[:, 32:] = 255  # right half out of focus
        Image.fromarray(mask).save(root / "blur_masks" / f"{name}.png")
    _save(rng.random((48, 64, 3)), root / "images" / "no_mask.png")  # skipped: no mask of that name
    return root


def identity(image):
    return image.copy()


def sharpen(image):
    """Unsharp masking: undoes some of a Gaussian blur, and changes sharp content too."""
    return np.clip(image + 1.5 * (image - _blur(image, 1.5)), 0, 1)


def tint(image):
    out = image.copy()
    out[..., 0] = np.clip(out[..., 0] + 0.05, 0, 1)
    return out


def test_layouts_are_detected_and_other_folders_refused(scenes_root, photos_root, tmp_path):
    assert detect_layout(scenes_root) == "scenes"
    assert detect_layout(photos_root) == "masked_photos"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a folder"):
        detect_layout(tmp_path / "missing")


def test_scene_folders_load_with_references_and_dp_views(scenes_root):
    scenes = load_scenes(scenes_root, with_dp_views=True)
    assert [s.name for s in scenes] == ["00", "01", "02"]
    assert set(scenes[0].references) == {"dpdnet"} and scenes[0].dp_views is not None
    assert scenes[0].image.shape == (40, 56, 3) and scenes[0].image.dtype == np.float32
    assert [s.name for s in load_scenes(scenes_root, names=["02", "00"])] == ["00", "02"]
    with pytest.raises(ValueError, match="no scene folders"):
        load_scenes(scenes_root, names=["07"])


def test_masked_photos_load_with_eroded_masks(photos_root):
    photos = load_masked_photos(photos_root, erosion=3)
    assert [p.name for p in photos] == ["a", "b"]
    in_focus = photos[0].in_focus
    assert in_focus[:, :29].all() and not in_focus[:, 29:].any()  # left half, minus 3 px at the mask edge
    assert load_real_set(photos_root, max_images=1)[0].name == "a"


def test_erosion_removes_a_margin_at_the_mask_edge():
    mask = np.zeros((20, 20))
    mask[:, 10:] = 1
    assert eroded_in_focus(mask, 0)[:, :10].all()
    assert eroded_in_focus(mask, 4).sum() == 20 * 6


def test_identity_has_perfect_fidelity_and_no_gain(scenes_root, photos_root):
    rows, _ = evaluate_real(identity, load_scenes(scenes_root))
    summary = summarise(rows)
    assert summary["gain"] == 0 and summary["worse"] == 0
    assert summary["sharp_in"] == float("inf")  # output == input exactly
    photo_rows, _ = evaluate_real(identity, load_masked_photos(photos_root))
    assert all(r.in_focus_psnr == float("inf") for r in photo_rows)
    assert summarise(photo_rows)["grey_spread_max"] == 0


def test_a_method_that_sharpens_gains_but_changes_sharp_input(scenes_root):
    rows, outputs = evaluate_real(sharpen, load_scenes(scenes_root), keep_outputs=True)
    summary = summarise(rows)
    assert summary["gain"] > 0.3 and summary["worse"] == 0  # the blur is partly undone
    assert np.isfinite(summary["sharp_in"]) and summary["sharp_in"] < 40  # and sharp content is changed
    assert len(outputs) == 3


def test_a_tint_is_caught_by_the_grey_check(photos_root):
    rows, _ = evaluate_real(tint, load_masked_photos(photos_root))
    summary = summarise(rows)
    assert summary["grey_spread_max"] == pytest.approx(0.05 * 255, abs=0.6)
    assert summary["in_focus"] == pytest.approx(-10 * np.log10(0.05**2 / 3), abs=0.5)


def test_masked_psnr_counts_only_the_mask():
    a, b = np.zeros((4, 4, 3)), np.zeros((4, 4, 3))
    b[0, 0] = 1.0
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False
    assert masked_psnr(b, a, mask) == float("inf")
    assert masked_psnr(b, a, np.zeros((4, 4), bool)) is None


def test_grey_and_spread():
    image = np.random.default_rng(2).random((8, 8, 3)).astype(np.float32)
    grey = to_grey(image)
    assert channel_spread(grey) == (0.0, 0.0)
    assert np.allclose(grey[..., 0], image.mean(-1))


def test_reference_rows_and_training_validation(scenes_root):
    scenes = load_scenes(scenes_root)
    refs = reference_rows(scenes)
    assert set(refs) == {"dpdnet"} and len(refs["dpdnet"]) == 3
    assert summarise(refs["dpdnet"])["gain"] > 0
    figures = training_validation(sharpen, scenes)
    assert set(figures) == {
        "real/psnr",
        "real/input_psnr",
        "real/psnr_gain",
        "real/worst_gain",
        "real/worse",
        "real/sharp_in",
        "real/sharp_in_min",
    }
    assert figures["real/psnr_gain"] == pytest.approx(figures["real/psnr"] - figures["real/input_psnr"])


def test_wrong_output_size_is_an_error(scenes_root):
    with pytest.raises(ValueError, match="returned"):
        evaluate_real(lambda image: image[1:], load_scenes(scenes_root))


def test_contact_sheet_shows_the_most_changed_crop(scenes_root, tmp_path):
    before = np.zeros((40, 60, 3), np.float32)
    after = before.copy()
    after[20:30, 40:50] = 1
    top, left, side = most_changed_crop(before, after, 10)
    assert (top, left, side) == (20, 40, 10)
    scenes = load_scenes(scenes_root)
    _, outputs = evaluate_real(sharpen, scenes, sharp_in=False, grey=False, keep_outputs=True)
    path = contact_sheet(scenes, outputs, tmp_path / "sheet.png", thumb_width=112, crop_size=16)
    with Image.open(path) as sheet:
        assert sheet.width >= 3 * 112 and sheet.height > 3 * 80
    with pytest.raises(ValueError):
        contact_sheet(scenes, outputs[:1], tmp_path / "bad.png")


def test_an_inverted_mask_is_noted(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "blur_masks").mkdir()
    image = rng.random((40, 60, 3))
    image[:, 30:] = ndimage.gaussian_filter(image[:, 30:], (3, 3, 0))  # right half blurred
    _save(image, root / "images" / "p.png")
    mask = np.zeros((40, 60), np.uint8)
    mask[:, :30] = 255  # white on the SHARP half: inverted
    Image.fromarray(mask).save(root / "blur_masks" / "p.png")
    (scene,) = load_masked_photos(root, erosion=2)
    assert scene.notes and "inverted" in scene.notes[0]
    Image.fromarray(255 - mask).save(root / "blur_masks" / "p.png")
    assert load_masked_photos(root, erosion=2)[0].notes == []


def test_colour_match_separates_exposure_from_sharpening(scenes_root):
    from defocusgan_hf.evaluation.real_scoring import colour_matched

    rng = np.random.default_rng(3)
    target = rng.random((16, 16, 3)).astype(np.float32)
    darker = (0.8 * target + 0.05).astype(np.float32)  # an exposure and black-level change, nothing blurred
    np.testing.assert_allclose(colour_matched(darker, target), target, atol=1e-5)
    scenes = load_scenes(scenes_root)

    def brighten(image):
        return np.clip(image * 1.1, 0, 1)

    brighter = summarise(evaluate_real(brighten, scenes, sharp_in=False, grey=False)[0])
    assert brighter["gain"] < 0 and abs(brighter["matched_gain"]) < 0.1  # a gain change is not a sharpening
    sharper = summarise(evaluate_real(sharpen, scenes, sharp_in=False, grey=False)[0])
    assert sharper["matched_gain"] > 0.3  # undoing the blur still counts once colour is matched
    assert summarise(evaluate_real(identity, scenes)[0])["matched_gain"] == 0
