"""Real-data loaders (DPDD, paired folders, DP folders) on tiny 16-bit trees, and the synthetic validation set."""

import json

import cv2
import numpy as np
import pytest
import torch

from defocusgan_hf.data import DPDDDataset, DualPixelFolderDataset, PairedFolderDataset, ValidationSet
from defocusgan_hf.data.validation_set import main as make_valset
from defocusgan_hf.data.validation_set import write_validation_set

NAMES = ("1P0A0917", "1P0A0920", "1P0A1002")
ROLES = {"blurred": ("c", "source"), "sharp": ("c", "target"), "left": ("l", "source"), "right": ("r", "source")}


def _write_png16(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array[..., ::-1])  # RGB -> BGR


def _arrays(name_index, height=24, width=36):
    """Distinct 16-bit RGB arrays per role; each role adds its own constant so crops can be told apart."""
    rng = np.random.default_rng(name_index)
    base = rng.integers(0, 60000, size=(height, width, 3), dtype=np.uint16)
    return {role: base + np.uint16(100 * k) for k, role in enumerate(ROLES)}


@pytest.fixture
def dpdd_root(tmp_path):
    root = tmp_path / "dd_dp_dataset_canon"
    for split in ("train", "test"):
        for i, name in enumerate(NAMES):
            for role, array in _arrays(i).items():
                view, kind = ROLES[role]
                _write_png16(root / f"{split}_{view}" / kind / f"{name}.png", array)
    return root


def test_dpdd_keeps_16_bit_values_exactly(dpdd_root):
    dataset = DPDDDataset(dpdd_root, split="test")
    assert len(dataset) == 3
    item = dataset[1]
    assert item["name"] == NAMES[1]
    expected = _arrays(1)
    for role in ROLES:
        tensor = item[role]
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 24, 36)
        restored = np.round(tensor.permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
        np.testing.assert_array_equal(restored, expected[role])


def test_dpdd_accepts_the_parent_folder_and_can_skip_the_dp_views(dpdd_root):
    dataset = DPDDDataset(dpdd_root.parent, split="train", with_dp_views=False)
    assert set(dataset[0]) == {"blurred", "sharp", "name"}


def test_dpdd_training_crops_are_aligned_seeded_and_swap_views_on_horizontal_flips(dpdd_root):
    dataset = DPDDDataset(dpdd_root, split="train", crop_size=16, seed=3)
    assert dataset.augment
    seen_swap = False
    for epoch in range(6):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            again = dataset[index]
            assert all(torch.equal(item[k], again[k]) for k in ROLES)
            assert item["sharp"].shape == (3, 16, 16)
            step = 100 / 65535
            torch.testing.assert_close(
                item["sharp"] - item["blurred"], torch.full((3, 16, 16), step), atol=1e-6, rtol=0
            )
            difference = float((item["right"] - item["left"]).mean())
            assert difference == pytest.approx(step, abs=1e-6) or difference == pytest.approx(-step, abs=1e-6)
            seen_swap |= difference < 0  # the views were swapped by a horizontal flip
    assert seen_swap


def test_dpdd_full_images_for_evaluation_are_not_augmented(dpdd_root):
    dataset = DPDDDataset(dpdd_root, split="test")
    assert not dataset.augment and dataset[0]["blurred"].shape == (3, 24, 36)


def test_dpdd_wrong_root_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dd_dp_dataset_canon/\n  test_c/source"):
        DPDDDataset(tmp_path / "nowhere", split="test")
    with pytest.raises(FileNotFoundError, match="test_c/source"):
        DPDDDataset(tmp_path, split="test")
    with pytest.raises(ValueError, match="'valid'"):
        DPDDDataset(tmp_path, split="valid")


def test_dpdd_missing_view_folder_is_named(dpdd_root):
    for path in sorted((dpdd_root / "test_r" / "source").iterdir()):
        path.unlink()
    (dpdd_root / "test_r" / "source").rmdir()
    with pytest.raises(FileNotFoundError, match=r"missing test_r/source"):
        DPDDDataset(dpdd_root, split="test")
    assert len(DPDDDataset(dpdd_root, split="test", with_dp_views=False)) == 3


def test_dpdd_missing_view_file_is_named(dpdd_root):
    (dpdd_root / "test_l" / "source" / f"{NAMES[2]}.png").unlink()
    with pytest.raises(ValueError, match=rf"missing from the left folder .*{NAMES[2]}"):
        DPDDDataset(dpdd_root, split="test")


def test_dpdd_crop_larger_than_the_image_is_an_error(dpdd_root):
    with pytest.raises(ValueError, match="crop_size"):
        DPDDDataset(dpdd_root, split="test", crop_size=64)[0]


def _folder_pair(tmp_path, first, second, names_a, names_b, size_b=(24, 36)):
    for name in names_a:
        _write_png16(tmp_path / first / f"{name}.png", _arrays(0)["sharp"])
    for name in names_b:
        _write_png16(tmp_path / second / f"{name}.png", _arrays(1, *size_b)["sharp"])
    return tmp_path / first, tmp_path / second


def test_paired_folders_match_by_name(tmp_path):
    blurred, sharp = _folder_pair(tmp_path, "blur", "gt", ["a", "b"], ["a", "b"])
    dataset = PairedFolderDataset(blurred, sharp)
    assert len(dataset) == 2 and dataset[1]["name"] == "b"
    assert set(dataset[0]) == {"blurred", "sharp", "name"}
    assert dataset[0]["sharp"].shape == (3, 24, 36)


def test_paired_folders_report_unmatched_names_and_size_mismatches(tmp_path):
    blurred, sharp = _folder_pair(tmp_path, "blur", "gt", ["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="missing from the sharp folder .*: c"):
        PairedFolderDataset(blurred, sharp)
    blurred, sharp = _folder_pair(tmp_path / "x", "blur", "gt", ["a"], ["a"], size_b=(20, 36))
    with pytest.raises(ValueError, match=r"'a' have different sizes \(blurred 36x24, sharp 36x20\)"):
        PairedFolderDataset(blurred, sharp)
    with pytest.raises(FileNotFoundError, match="sharp folder"):
        PairedFolderDataset(blurred, tmp_path / "absent")


def test_dual_pixel_folders_give_the_combined_image(tmp_path):
    left, right = _folder_pair(tmp_path, "L", "R", ["p1"], ["p1"])
    item = DualPixelFolderDataset(left, right)[0]
    torch.testing.assert_close(item["blurred"], (item["left"] + item["right"]) / 2)
    left, right = _folder_pair(tmp_path / "y", "L", "R", ["p1", "p2"], ["p1"])
    with pytest.raises(ValueError, match="missing from the right folder .*: p2"):
        DualPixelFolderDataset(left, right)


# ---------------------------------------------------------------------------------------------------------------
# Synthetic validation set
# ---------------------------------------------------------------------------------------------------------------


def test_validation_set_round_trip(tmp_path):
    from defocusgan_hf.data import DualPixelConfig, SyntheticDualPixelDataset

    config = DualPixelConfig(max_coc=6.0, num_layers=(2, 3))
    folder = write_validation_set(
        tmp_path / "val", num_samples=2, resolution=32, seed=5, sources=("dead_leaves",), config=config
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["samples"] == ["0000", "0001"] and manifest["bit_depth"] == 8
    dataset = ValidationSet(folder)
    reference = SyntheticDualPixelDataset("dead_leaves", resolution=32, length=2, seed=5, config=config, max_coc=6.0)
    item, expected = dataset[1], reference[1]
    assert item["name"] == "0001" and dataset.config == config
    for key in ("sharp", "blurred", "left", "right"):
        assert item[key].shape == (3, 32, 32)
        torch.testing.assert_close(item[key], expected[key], atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(item["coc"], expected["coc"], atol=1 / 2048, rtol=0)
    assert torch.equal(dataset.coc(1), item["coc"])  # the map alone, without reading the images


def test_validation_set_command_never_overwrites_without_the_flag(tmp_path, capsys):
    folder = tmp_path / "val"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    args = ["--output_dir", str(folder), "--num_samples", "1", "--resolution", "32", "--sources", "text"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_valset(args)
    make_valset([*args, "--overwrite"])
    assert "Wrote 1 samples" in capsys.readouterr().out
    assert (folder / "notes.txt").read_text() == "keep me" and len(ValidationSet(folder)) == 1


def test_validation_set_loader_explains_a_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        ValidationSet(tmp_path)


def test_validation_set_command_renders_the_varied_engine_when_asked(tmp_path):
    from defocusgan_hf.data import DualPixelConfig

    args = ["--num_samples", "1", "--resolution", "32", "--sources", "dead_leaves", "--seed", "3"]
    make_valset(["--output_dir", str(tmp_path / "eq3"), *args])
    make_valset(["--output_dir", str(tmp_path / "varied"), *args, "--data_config", "varied"])
    eq3, varied = ValidationSet(tmp_path / "eq3"), ValidationSet(tmp_path / "varied")
    assert eq3.config == DualPixelConfig() and varied.config == DualPixelConfig.varied()
    assert not torch.equal(eq3[0]["blurred"], varied[0]["blurred"])  # another renderer, not another label
