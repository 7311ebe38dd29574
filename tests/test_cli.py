"""Tests of the command-line tools, run in-process on tmp_path files with a fake pipeline (and once a tiny real one)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from defocusgan_hf import cli
from defocusgan_hf.image_io import load_defocus_map_png16, load_image, to_tensor
from defocusgan_hf.pipelines.dual_pixel_views import DualPixelConvention


class FakePipeline:
    """Same interface as DefocusDeblurPipeline: "restores" by inverting, "estimates" CoC = 10 * (left - right)."""

    def __init__(self):
        self.calls = []
        self.defocus_net = SimpleNamespace(config=SimpleNamespace(max_coc=25.0))

    def __call__(
        self, image, tile_size=512, tile_overlap=64, output_type="np", self_ensemble=False, output_bit_depth=None
    ):
        self.calls.append(
            {
                "tile_size": tile_size,
                "tile_overlap": tile_overlap,
                "output_type": output_type,
                "self_ensemble": self_ensemble,
                "output_bit_depth": output_bit_depth,
            }
        )
        tensor, _ = to_tensor(image)
        images = (1 - tensor).permute(0, 2, 3, 1).numpy()
        if output_bit_depth is not None:
            scale, dtype = (255, np.uint8) if output_bit_depth == 8 else (65535, np.uint16)
            images = np.round(images * scale).astype(dtype)
        return SimpleNamespace(images=images)

    def estimate_defocus_map(self, left, right, tile_size=512, tile_overlap=64, output_type="np", split="auto"):
        left_t, right_t = to_tensor(left)[0], to_tensor(right)[0]
        coc = 10 * (left_t - right_t).mean(dim=1, keepdim=True)
        combined = (left_t + right_t) / 2
        self.splits = [*getattr(self, "splits", []), split]
        convention = DualPixelConvention("horizontal" if split == "auto" else split, split == "auto")
        return SimpleNamespace(
            images=combined.permute(0, 2, 3, 1).numpy(),
            defocus_maps=coc.permute(0, 2, 3, 1).numpy(),
            dual_pixel_convention=convention.to_dict(),
        )


class FakeState:
    """accelerate.PartialState stand-in for process ``index`` of ``count`` (contiguous split, like accelerate's)."""

    def __init__(self, index=0, count=1):
        self.process_index, self.num_processes = index, count
        self.is_main_process = self.is_local_main_process = index == 0
        self.device = "cpu"

    @contextlib.contextmanager
    def split_between_processes(self, items):
        size = -(-len(items) // self.num_processes)
        yield items[self.process_index * size : (self.process_index + 1) * size]


@pytest.fixture
def fake(monkeypatch):
    pipeline = FakePipeline()
    loads = []

    def load(model, device, dtype, quiet=False):
        loads.append((model, device, dtype))
        return pipeline

    monkeypatch.setattr(cli.common, "_load_pipeline", load)
    monkeypatch.setattr(cli.common, "_partial_state", lambda args: FakeState())
    pipeline.loads = loads
    return pipeline


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def write_rgb8(path: Path, rng, size=(20, 24), **save_options) -> np.ndarray:
    values = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path, **save_options)
    return values


def write_rgb16(path: Path, rng, size=(20, 24)) -> np.ndarray:
    values = rng.integers(0, 65536, (*size, 3), dtype=np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), values[..., ::-1])
    return values


def deblur(*argv) -> int:
    return cli.deblur_main(["--model", "fake", "--quiet", *map(str, argv)])


def names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- defocusgan-deblur -------------------------------------------------------------------------------------------


def test_deblur_names_outputs_and_keeps_bit_depth(tmp_path, rng, fake):
    write_rgb8(tmp_path / "in" / "photo.jpg", rng)
    photo = np.round(load_image(tmp_path / "in" / "photo.jpg").array * 255).astype(int)
    scan = write_rgb16(tmp_path / "in" / "scan.png", rng)
    out = tmp_path / "out"
    assert (
        deblur(
            tmp_path / "in" / "photo.jpg",
            tmp_path / "in" / "scan.png",
            "-o",
            out,
            "--tile_size",
            "128",
            "--tile_overlap",
            "16",
        )
        == 0
    )
    assert names(out) == ["photo_deblurred.png", "scan_deblurred.png"]
    with Image.open(out / "photo_deblurred.png") as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), 255 - photo)
    written16 = cv2.imread(str(out / "scan_deblurred.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert written16.dtype == np.uint16
    np.testing.assert_array_equal(written16, 65535 - scan)
    assert fake.calls[0] == {
        "tile_size": 128,
        "tile_overlap": 16,
        "output_type": "np",
        "self_ensemble": False,
        "output_bit_depth": 8,
    }
    assert fake.calls[1]["output_bit_depth"] == 16
    assert fake.loads == [("fake", "cpu", "float32")]


def test_tile_size_zero_means_whole_image(tmp_path, rng, fake):
    write_rgb8(tmp_path / "a.png", rng)
    assert deblur(tmp_path / "a.png", "-o", tmp_path / "out", "--tile_size", "0") == 0
    assert fake.calls[0]["tile_size"] is None


def test_self_ensemble_flag_reaches_the_pipeline(tmp_path, rng, fake):
    write_rgb8(tmp_path / "a.png", rng)
    assert deblur(tmp_path / "a.png", "-o", tmp_path / "out", "--self_ensemble") == 0
    assert fake.calls[0]["self_ensemble"] is True


def test_folders_globs_and_recursion(tmp_path, rng, fake):
    shoot = tmp_path / "shoot"
    for name in ("a.png", "b.JPG", "sub/c.png", ".hidden.png"):
        write_rgb8(shoot / name, rng)
    (shoot / "notes.txt").write_text("not an image")
    assert deblur(shoot, "-o", tmp_path / "flat") == 0
    assert names(tmp_path / "flat") == ["a_deblurred.png", "b_deblurred.png"]
    assert deblur(shoot, "-o", tmp_path / "deep", "--recursive") == 0
    assert names(tmp_path / "deep") == ["a_deblurred.png", "b_deblurred.png", "sub/c_deblurred.png"]
    assert deblur(str(shoot / "*.png"), "-o", tmp_path / "glob", "--suffix", "_x") == 0
    assert names(tmp_path / "glob") == ["a_x.png"]


def test_a_second_run_into_the_input_folder_skips_its_own_outputs(tmp_path, rng, fake, capsys):
    """``-o`` the input folder: the first run's ``a_deblurred.png`` is not deblurred again (issue 17, item 8)."""
    write_rgb8(tmp_path / "a.png", rng)
    write_rgb8(tmp_path / "b_defocus_color.png", rng)  # a defocus-map preview
    assert deblur(tmp_path, "-o", tmp_path) == 0
    assert names(tmp_path) == ["a.png", "a_deblurred.png", "b_defocus_color.png"]
    assert deblur(tmp_path, "-o", tmp_path, "--overwrite") == 0
    assert names(tmp_path) == ["a.png", "a_deblurred.png", "b_defocus_color.png"]
    err = capsys.readouterr().err
    assert "note: skipped 2 files that look like outputs of this tool ('a_deblurred.png', 'b_defocus_color.png'" in err
    assert deblur(tmp_path / "a_deblurred.png", "-o", tmp_path / "again") == 0  # named explicitly: processed
    assert names(tmp_path / "again") == ["a_deblurred_deblurred.png"]


def test_bad_file_is_reported_skipped_and_fails_the_run(tmp_path, rng, fake, capsys):
    write_rgb8(tmp_path / "good.png", rng)
    (tmp_path / "fake.jpg").write_text("this is text")
    truncated = tmp_path / "cut.png"
    write_rgb8(truncated, rng)
    truncated.write_bytes(truncated.read_bytes()[:200])
    code = deblur(
        tmp_path / "fake.jpg", tmp_path / "good.png", truncated, tmp_path / "missing.png", "-o", tmp_path / "o"
    )
    assert code == 1
    assert names(tmp_path / "o") == ["good_deblurred.png"]
    err = capsys.readouterr().err
    assert "'missing.png' does not exist" in err.replace(str(tmp_path) + "/", "")
    assert "is not an image Pillow or OpenCV can read" in err and "truncated or corrupt" in err
    assert "Traceback" not in err and "wrote 1 of 3 images" in err


def test_never_writes_over_an_input(tmp_path, rng, fake, capsys):
    source = tmp_path / "x.png"
    write_rgb8(source, rng)
    before = source.read_bytes()
    for extra in ([], ["--overwrite"]):
        code = deblur(source, "-o", tmp_path, "--suffix", "", "--format", "same", *extra)
        assert code == 1
    assert source.read_bytes() == before
    assert "it is an input file" in capsys.readouterr().err


def test_existing_outputs_need_overwrite(tmp_path, rng, fake, capsys):
    write_rgb8(tmp_path / "x.png", rng)
    assert deblur(tmp_path / "x.png", "-o", tmp_path / "o") == 0
    (tmp_path / "o" / "x_deblurred.png").write_bytes(b"keep me")
    assert deblur(tmp_path / "x.png", "-o", tmp_path / "o") == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "o" / "x_deblurred.png").read_bytes() == b"keep me"
    assert deblur(tmp_path / "x.png", "-o", tmp_path / "o", "--overwrite") == 0
    assert load_image(tmp_path / "o" / "x_deblurred.png").size == (24, 20)


def test_two_inputs_with_one_output_name_are_refused(tmp_path, rng, fake, capsys):
    write_rgb8(tmp_path / "x.png", rng)
    write_rgb8(tmp_path / "x.jpg", rng)
    assert deblur(tmp_path / "x.png", tmp_path / "x.jpg", "-o", tmp_path / "o") == 1
    assert "would both be written to" in capsys.readouterr().err
    assert names(tmp_path / "o") == ["x_deblurred.png"]


def test_format_same_and_icc_profile_are_kept(tmp_path, rng, fake):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    write_rgb8(tmp_path / "p.jpg", rng, icc_profile=icc)
    write_rgb16(tmp_path / "t.tif", rng)
    assert deblur(tmp_path / "p.jpg", tmp_path / "t.tif", "-o", tmp_path / "o", "--format", "same") == 0
    assert names(tmp_path / "o") == ["p_deblurred.jpg", "t_deblurred.tif"]
    assert load_image(tmp_path / "o" / "p_deblurred.jpg").icc_profile == icc
    assert load_image(tmp_path / "o" / "t_deblurred.tif").bit_depth == 16


def test_usage_errors_exit_2_without_traceback(tmp_path, rng, capsys):
    write_rgb8(tmp_path / "a.png", rng)
    assert cli.deblur_main([str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.deblur_main([str(tmp_path / "nothing*.png"), "-o", str(tmp_path / "o"), "--model", "x"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.deblur_main([str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", "x", "--tile_overlap", "300"])
    assert exit_info.value.code == 2


def test_processes_split_the_files(tmp_path, rng, fake, monkeypatch):
    for name in "abcd":
        write_rgb8(tmp_path / "in" / f"{name}.png", rng)
    monkeypatch.setattr(cli.common, "_partial_state", lambda args: FakeState(index=1, count=2))
    assert deblur(tmp_path / "in", "-o", tmp_path / "o") == 0
    assert names(tmp_path / "o") == ["c_deblurred.png", "d_deblurred.png"]


# --- defocusgan-defocus-map --------------------------------------------------------------------------------------


def defocus_map(*argv) -> int:
    return cli.defocus_map_main(["--model", "fake", "--quiet", *map(str, argv)])


def test_defocus_map_writes_the_four_outputs(tmp_path, rng, fake):
    left = write_rgb16(tmp_path / "l" / "scene.png", rng)
    right = write_rgb16(tmp_path / "r" / "scene.png", rng)
    out = tmp_path / "maps"
    assert defocus_map("--left", tmp_path / "l" / "scene.png", "--right", tmp_path / "r" / "scene.png", "-o", out) == 0
    assert names(out) == [
        "scene_all_in_focus.png",
        "scene_defocus.npy",
        "scene_defocus_16bit.png",
        "scene_defocus_color.png",
    ]
    expected = 10 * ((left.astype(np.float64) - right) / 65535).mean(axis=2)
    np.testing.assert_allclose(np.load(out / "scene_defocus.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(load_defocus_map_png16(out / "scene_defocus_16bit.png"), expected, atol=25 / 65535)
    with Image.open(out / "scene_defocus_color.png") as colour:
        assert colour.mode == "RGB" and colour.size == (24, 20)
    all_in_focus = load_image(out / "scene_all_in_focus.png")
    assert all_in_focus.bit_depth == 16


def test_defocus_map_split_option_reaches_the_pipeline_and_is_reported(tmp_path, rng, fake, capsys):
    write_rgb8(tmp_path / "l.png", rng)
    write_rgb8(tmp_path / "r.png", rng)
    assert defocus_map("--left", tmp_path / "l.png", "--right", tmp_path / "r.png", "-o", tmp_path / "a") == 0
    assert defocus_map("--left", tmp_path / "l.png", "--right", tmp_path / "r.png", "-o", tmp_path / "b",
                       "--split", "vertical") == 0  # fmt: skip
    assert fake.splits == ["auto", "vertical"]
    err = capsys.readouterr().err
    assert "l.png: horizontal split (detected" in err and "l.png: vertical split (as given)" in err
    with pytest.raises(SystemExit):
        defocus_map("--left", tmp_path / "l.png", "--right", tmp_path / "r.png", "-o", tmp_path / "c", "--split", "x")


def test_defocus_map_folders_are_matched_by_name(tmp_path, rng, fake, capsys):
    for name in ("a.png", "b.png"):
        write_rgb8(tmp_path / "l" / name, rng)
    for name in ("a.png", "c.png"):
        write_rgb8(tmp_path / "r" / name, rng)
    assert defocus_map("--left", tmp_path / "l", "--right", tmp_path / "r", "-o", tmp_path / "o") == 1
    assert names(tmp_path / "o") == [f"a{suffix}" for suffix in sorted(cli.DEFOCUS_OUTPUTS.values())]
    err = capsys.readouterr().err
    assert "b.png' has no right view" in err and "c.png' has no left view" in err


def test_defocus_map_size_mismatch_is_reported(tmp_path, rng, fake, capsys):
    write_rgb8(tmp_path / "l.png", rng, size=(20, 24))
    write_rgb8(tmp_path / "r.png", rng, size=(20, 26))
    assert defocus_map("--left", tmp_path / "l.png", "--right", tmp_path / "r.png", "-o", tmp_path / "o") == 1
    assert "left view is 24×20 but right view is 26×20" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or names(tmp_path / "o") == []


# --- with a tiny real pipeline ------------------------------------------------------------------------------------


def test_real_tiny_pipeline_end_to_end(tmp_path, rng):
    from defocusgan_hf.models.deblur_net import DefocusDeblurNet
    from defocusgan_hf.models.defocus_net import DualPixelDefocusNet
    from defocusgan_hf.pipelines import DefocusDeblurPipeline

    deblur_net = DefocusDeblurNet(level_channels=(4, 4), branch_depths=(0, 0, 0, 0), scales=(1,), levels_per_scale=(2,))
    defocus_net = DualPixelDefocusNet(level_channels=(4, 4), branch_depths=(0, 0, 0, 0))
    DefocusDeblurPipeline(deblur_net, defocus_net).save_pretrained(tmp_path / "model")
    write_rgb16(tmp_path / "l.png", rng, size=(40, 50))
    write_rgb16(tmp_path / "r.png", rng, size=(40, 50))
    common = [
        "--model",
        str(tmp_path / "model"),
        "--device",
        "cpu",
        "--quiet",
        "--tile_size",
        "32",
        "--tile_overlap",
        "8",
    ]
    assert cli.deblur_main([str(tmp_path / "l.png"), "-o", str(tmp_path / "o"), *common]) == 0
    restored = load_image(tmp_path / "o" / "l_deblurred.png")
    assert restored.size == (50, 40) and restored.bit_depth == 16
    args = ["--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png"), "-o", str(tmp_path / "m"), *common]
    assert cli.defocus_map_main(args) == 0
    assert np.load(tmp_path / "m" / "l_defocus.npy").shape == (40, 50)
