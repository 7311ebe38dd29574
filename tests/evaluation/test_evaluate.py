import csv
import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from defocusgan_hf.data.synthetic import DualPixelConfig
from defocusgan_hf.evaluation import load_kernels
from defocusgan_hf.evaluation.__main__ import main
from defocusgan_hf.evaluation.metrics import psnr
from defocusgan_hf.image_io import save_image
from defocusgan_hf.models import DefocusDeblurNet, DualPixelDefocusNet, LearnableBlurKernel, kernel_bank, reblur
from defocusgan_hf.perceptual.lpips import LPIPS
from defocusgan_hf.pipelines import DefocusDeblurPipeline

SIZE = 32


def tiny_defocus_net(seed=0):
    torch.manual_seed(seed)
    net = DualPixelDefocusNet(level_channels=(4, 8, 8), branch_depths=(1, 1))
    torch.nn.init.normal_(net.tail.weight, std=0.5)
    return net


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    torch.manual_seed(0)
    deblur = DefocusDeblurNet(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1))
    torch.nn.init.normal_(deblur.tail.weight, std=0.05)
    folder = tmp_path_factory.mktemp("pipe") / "pipeline"
    kernel = LearnableBlurKernel(max_radius=6)
    DefocusDeblurPipeline(deblur_net=deblur, defocus_net=tiny_defocus_net(), blur_kernel=kernel).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def valset(tmp_path_factory):
    """A 2-sample validation set in ValidationSet's layout: sharp noise textures reblurred by a ramp map."""
    root = tmp_path_factory.mktemp("val") / "synthetic_val"
    root.mkdir()
    rng = np.random.default_rng(0)
    coc = np.linspace(-4, 4, SIZE, dtype=np.float32)[None, :].repeat(SIZE, 0)
    cocs, names = {}, []
    for i in range(2):
        name = f"{i:04d}"
        sharp = cv2.GaussianBlur(rng.random((SIZE, SIZE, 3)).astype(np.float32), (3, 3), 0.8)
        blurred = reblur(
            torch.from_numpy(sharp).permute(2, 0, 1)[None], torch.from_numpy(coc)[None, None], kernel_bank(4)
        )
        blurred = blurred[0].permute(1, 2, 0).clamp(0, 1).numpy()
        for key, image in {"sharp": sharp, "blurred": blurred, "left": blurred, "right": blurred}.items():
            save_image(image, root / f"{name}_{key}.png", bit_depth=16)
        cocs[name], names = coc, names + [name]
    np.savez_compressed(root / "coc.npz", **cocs)
    manifest = {
        "seed": 0,
        "num_samples": 2,
        "resolution": SIZE,
        "config": DualPixelConfig().to_dict(),
        "samples": names,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def dpdd_root(tmp_path_factory):
    """76 tiny 16-bit scenes with DPDD's test layout and file names."""
    root = tmp_path_factory.mktemp("dpdd") / "dd_dp_dataset_canon"
    rng = np.random.default_rng(1)
    for role in ("source", "target"):
        (root / "test_c" / role).mkdir(parents=True)
    for i in range(76):
        target = rng.integers(0, 65536, (16, 20, 3), dtype=np.uint16)
        noise = rng.integers(-900, 900, target.shape)
        source = np.clip(target.astype(np.int64) + noise, 0, 65535).astype(np.uint16)
        cv2.imwrite(str(root / "test_c" / "target" / f"1P0A{1000 + i}.png"), target)
        cv2.imwrite(str(root / "test_c" / "source" / f"1P0A{1000 + i}.png"), source)
    return root


def run(args, capsys):
    code = main([*map(str, args), "--no_progress"])
    return code, capsys.readouterr()


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_synthetic_evaluation_writes_table_json_and_per_image_csv(valset, pipeline_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code, printed = run(
        ["--dataset", "synthetic", "--root", valset, "--model", pipeline_dir, "--output_dir", out], capsys
    )
    assert code == 0, printed.err
    assert "LPIPS: unavailable (no weights; pass --lpips_weights" in printed.out
    assert "Protocol **seed**" in printed.out
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["input", "wiener_true_map", "wiener_estimated_map", "model"]
    assert results["protocol"]["name"] == "seed" and results["lpips_available"] is False
    assert "lpips" not in results["results"]["input"]["all"]
    assert "--model" in results["command"]
    rows = read_csv(out / "per_image.csv")
    assert len(rows) == 2 * 4
    # The input row is the blurred file itself, measured against the sharp file.
    from defocusgan_hf.data import ValidationSet

    sample = ValidationSet(valset)[0]
    expected = psnr(
        sample["blurred"].permute(1, 2, 0).double().numpy(), sample["sharp"].permute(1, 2, 0).double().numpy()
    )
    assert float(rows[0]["psnr"]) == pytest.approx(expected, rel=1e-6)
    # CoC errors exist for the estimated map only (the true map's error would be 0 by definition).
    by_method = {r["method"]: r for r in rows}
    assert by_method["wiener_estimated_map"]["coc_mae"] and not by_method["wiener_true_map"]["coc_mae"]
    # Eq. 2's reblur L1 is measured for every map row, never for the input or the model.
    assert by_method["wiener_true_map"]["reblur_l1"] and by_method["wiener_estimated_map"]["reblur_l1"]
    assert not by_method["input"]["reblur_l1"] and not by_method["model"]["reblur_l1"]
    assert "Reblur L1 (Eq. 2)↓" in (out / "results.md").read_text()
    assert "| Stage-1 map + Wiener |" in (out / "results.md").read_text()
    assert results["methods"]["wiener_estimated_map"]["kernels"] == "the pipeline's blur_kernel"


def test_existing_outputs_are_kept_unless_overwrite_is_given(valset, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["--root", valset, "--baselines", "input", "--output_dir", out]
    assert run(args, capsys)[0] == 0
    (out / "results.json").write_text("sentinel")
    code, printed = run(args, capsys)
    assert code == 2 and "--overwrite" in printed.err
    assert (out / "results.json").read_text() == "sentinel"
    assert run([*args, "--overwrite"], capsys)[0] == 0
    assert json.loads((out / "results.json").read_text())["methods"] == {"input": {"label": "Input (blurred)"}}


def test_dpdd_reports_indoor_and_outdoor_and_names_the_protocol(dpdd_root, tmp_path, capsys):
    summaries = {}
    for protocol in ("seed", "peer"):
        out = tmp_path / protocol
        args = ["--dataset", "dpdd", "--root", dpdd_root.parent, "--protocol", protocol, "--output_dir", out]
        code, printed = run(args, capsys)
        assert code == 0, printed.err
        assert "Indoor PSNR↑" in printed.out and f"Protocol **{protocol}**" in printed.out
        summaries[protocol] = json.loads((out / "results.json").read_text())["results"]["input"]
    seed, peer = summaries["seed"], summaries["peer"]
    assert (seed["indoor"]["count"], seed["outdoor"]["count"], seed["all"]["count"]) == (37, 39, 76)
    assert seed["all"]["psnr"] != pytest.approx(peer["all"]["psnr"], abs=1e-4)  # 8-bit rounding changes the figure
    rows = read_csv(tmp_path / "seed" / "per_image.csv")
    assert [r["group"] for r in rows[7:10]] == ["outdoor", "indoor", "indoor"]  # scene indices 7, 8, 9


def test_folder_pairs_and_baselines_that_the_data_cannot_support(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for role in ("blurred", "sharp"):
        (tmp_path / "pairs" / role).mkdir(parents=True)
    for i in range(2):
        image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "pairs" / "sharp" / f"p{i}.png"), image)
        cv2.imwrite(str(tmp_path / "pairs" / "blurred" / f"p{i}.png"), cv2.GaussianBlur(image, (5, 5), 2))
    args = ["--dataset", "folder", "--root", tmp_path / "pairs", "--output_dir", tmp_path / "out"]
    code, printed = run([*args, "--baselines", "input"], capsys)
    assert code == 0 and "| Input (blurred) |" in printed.out
    code, printed = run([*args, "--baselines", "wiener_true_map", "--overwrite"], capsys)
    assert code == 2 and "ground-truth CoC maps" in printed.err


def test_lpips_weights_fill_the_column_and_must_match_the_protocol(valset, tmp_path, capsys):
    weights = tmp_path / "lpips_squeeze.safetensors"
    save_file(LPIPS("squeeze").state_dict(), str(weights))
    args = ["--root", valset, "--baselines", "input", "--lpips_weights", weights]
    code, printed = run([*args, "--output_dir", tmp_path / "a"], capsys)
    assert code == 0 and "unavailable" not in printed.out
    assert "lpips" in json.loads((tmp_path / "a" / "results.json").read_text())["results"]["input"]["all"]
    code, printed = run([*args, "--protocol", "peer", "--output_dir", tmp_path / "b"], capsys)
    assert code == 2 and "AlexNet" in printed.err


def test_kernel_ablation_has_one_row_per_kernel_with_its_coc_error(valset, tmp_path, capsys):
    paths = []
    for seed, variant in enumerate(("gaussian", "butterworth", "learnable")):
        folder = tmp_path / variant
        tiny_defocus_net(seed).save_pretrained(folder / "defocus_net")
        paths.append(f"{variant}={folder}")
    LearnableBlurKernel(max_radius=25, init="butterworth").save_pretrained(tmp_path / "learnable" / "blur_kernel")
    args = [
        "--kernel_ablation",
        "--root",
        valset,
        "--defocus_models",
        ",".join(paths),
        "--output_dir",
        tmp_path / "out",
    ]
    code, printed = run(args, capsys)
    assert code == 0, printed.err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["methods"]) == [
        "input", "wiener_true_map", "wiener_mean_map", "ablation_gaussian", "ablation_butterworth", "ablation_learnable"
    ]  # fmt: skip
    # The mean-map row: one constant, the set's mean |CoC|, and its |CoC| error.
    from defocusgan_hf.data import ValidationSet

    true = torch.stack([s["coc"].abs() for s in ValidationSet(valset)])
    expected = (true - true.mean()).abs().mean().item()
    assert results["results"]["wiener_mean_map"]["all"]["abs_coc_mae"] == pytest.approx(expected, rel=1e-4)
    assert "| Mean \\|CoC\\| map (constant) + Wiener |" in printed.out  # escaped: one cell, not three
    assert results["methods"]["ablation_learnable"]["kernels"].startswith("kernel saved with")
    assert results["methods"]["ablation_gaussian"]["kernels"] == "fixed gaussian bank"
    assert all("coc_mae" in results["results"][k]["all"] for k in results["methods"] if k.startswith("ablation"))
    assert "Gaussian kernel: map + Wiener" in printed.out
    # A learnable variant without its kernel cannot be evaluated honestly.
    paths[2] = f"learnable={tmp_path / 'butterworth'}"
    code, printed = run([*args[:-2], "--defocus_models", ",".join(paths), "--output_dir", tmp_path / "o2"], capsys)
    assert code == 2 and "blur_kernel/" in printed.err


def test_load_kernels_reads_a_saved_learned_kernel_and_kernel_files(tmp_path):
    torch.manual_seed(3)
    kernel = LearnableBlurKernel(max_radius=8, init="gaussian")
    torch.nn.init.normal_(kernel.log_gain, std=0.3)
    kernel.save_pretrained(tmp_path / "stage1" / "blur_kernel")
    with torch.no_grad():
        torch.testing.assert_close(load_kernels(tmp_path / "stage1"), kernel())
    save_file({"kernels": kernel_bank(3)}, str(tmp_path / "bank.safetensors"))
    assert load_kernels(tmp_path / "bank.safetensors").shape == (1, 4, *kernel_bank(3).shape[-2:])
    torch.testing.assert_close(load_kernels("gaussian")[0], kernel_bank(family="gaussian"))
    save_file({"weight": torch.ones(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="weight"):
        load_kernels(tmp_path / "other.safetensors")


def test_map_reblur_l1_is_zero_for_the_map_that_made_the_blur():
    from defocusgan_hf.evaluation import map_reblur_l1

    generator = torch.Generator().manual_seed(0)
    sharp = torch.rand(1, 3, 48, 48, generator=generator)
    kernels = load_kernels("butterworth")
    true_coc = torch.full((1, 1, 48, 48), 4.0)
    blurred = reblur(sharp, true_coc, kernels)
    as_hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    right = map_reblur_l1(as_hwc(sharp), as_hwc(blurred), true_coc[0, 0].numpy(), kernels)
    wrong = map_reblur_l1(as_hwc(sharp), as_hwc(blurred), np.full((48, 48), 1.0, np.float32), kernels)
    assert right < 1e-6 < 0.01 < wrong


def test_self_ensemble_adds_a_row_beside_the_plain_model(valset, pipeline_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["--dataset", "synthetic", "--root", valset, "--model", pipeline_dir, "--baselines", "input"]
    code, printed = run([*args, "--self_ensemble", "--output_dir", out], capsys)
    assert code == 0, printed.err
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["input", "model", "model_x8"]
    assert results["methods"]["model_x8"]["self_ensemble"] is True
    assert results["methods"]["model_x8"]["label"].endswith("+ x8 self-ensemble")
    plain, averaged = results["results"]["model"]["all"], results["results"]["model_x8"]["all"]
    assert plain["psnr"] != averaged["psnr"]  # the rows are two different computations


def test_psnr_by_coc_range_splits_the_set_by_true_defocus(valset, tmp_path, capsys):
    """The ramp map of the fixture spans |CoC| 0..4 px: the breakdown counts every pixel once and the blurred
    input is worse where the blur is larger; ``--coc_ranges none`` leaves the table out."""
    out = tmp_path / "eval"
    code, printed = run(
        ["--root", valset, "--baselines", "input,wiener_true_map", "--coc_ranges", "0,1,3", "--output_dir", out], capsys
    )
    assert code == 0, printed.err
    ranges = json.loads((out / "results.json").read_text())["psnr_by_coc_range"]
    assert ranges["edges"] == [0, 1, 3] and sum(ranges["pixels"]) == 2 * SIZE * SIZE
    small, middle, large = ranges["psnr"]["input"]
    assert small > middle > large
    assert "| [0, 1) px | [1, 3) px | ≥ 3 px |" in printed.out and "| share of pixels |" in printed.out
    from PIL import Image

    with Image.open(out / "psnr_by_coc_range.png") as plot:  # the same table as a bar chart
        assert plot.format == "PNG" and plot.width > 300
    none = tmp_path / "none"
    assert run(["--root", valset, "--baselines", "input", "--coc_ranges", "none", "--output_dir", none], capsys)[0] == 0
    assert json.loads((none / "results.json").read_text())["psnr_by_coc_range"] is None
    assert not (none / "psnr_by_coc_range.png").exists()
    code, printed = run(["--root", valset, "--coc_ranges", "2,1", "--output_dir", tmp_path / "bad"], capsys)
    assert code == 2 and "edges" in printed.err
