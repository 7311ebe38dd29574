import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from defocusgan_hf.evaluation.metrics import (
    DPDD_INDOOR_INDICES,
    as_image_array,
    coc_errors,
    dpdd_groups,
    dpdd_scene_group,
    image_metrics,
    mae,
    prepare,
    psnr,
    ssim,
    summarize,
)
from defocusgan_hf.perceptual.lpips import LPIPS, TAPS, LPIPSWeightsError


@pytest.fixture
def target():
    return np.random.default_rng(0).random((32, 40, 3))


def test_psnr_of_a_constant_offset_is_20_db(target):
    target = target * 0.8
    assert psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-9)
    assert psnr(target, target) == float("inf")


def test_ssim_is_one_for_identical_images_and_drops_with_noise(target):
    noisy = np.clip(target + np.random.default_rng(1).normal(0, 0.1, target.shape), 0, 1)
    assert ssim(target, target) == pytest.approx(1.0)
    assert ssim(noisy, target) < 0.95


def test_mae_is_the_mean_absolute_difference(target):
    assert mae(target * 0.5, target) == pytest.approx(np.abs(target * 0.5).mean())


def test_peer_protocol_rounds_to_8_bits_and_seed_keeps_16_bit_precision():
    target = np.full((16, 16, 3), 0.5)
    prediction = target + 1e-3  # below half an 8-bit step: invisible once both are rounded to 8 bits
    assert image_metrics(prediction, target, "seed")["psnr"] == pytest.approx(60.0)
    assert image_metrics(prediction, target, "peer")["psnr"] == float("inf")
    peer = prepare(np.random.default_rng(0).random((8, 8, 3)), "peer")
    np.testing.assert_allclose(peer * 255, np.round(peer * 255), atol=1e-9)


def test_images_of_every_form_become_the_same_array():
    rng = np.random.default_rng(0)
    as16 = rng.integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    floats = as16 / 65535.0
    np.testing.assert_allclose(as_image_array(as16), floats)
    np.testing.assert_allclose(as_image_array(torch.from_numpy(floats).permute(2, 0, 1)), floats, atol=1e-7)
    np.testing.assert_allclose(as_image_array(torch.from_numpy(floats).permute(2, 0, 1)[None]), floats, atol=1e-7)
    with pytest.raises(ValueError, match="RGB"):
        as_image_array(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="unknown|Unknown"):
        prepare(floats, "bogus")


def test_coc_error_of_a_sign_flipped_map_is_zero_in_magnitude():
    true = np.linspace(-5, 5, 64).reshape(8, 8)
    errors = coc_errors(-true, true[None, None])
    assert errors["abs_coc_mae"] == pytest.approx(0.0)
    assert errors["coc_mae"] == pytest.approx(2 * np.abs(true).mean())
    with pytest.raises(ValueError, match="one size"):
        coc_errors(true, true[:4])


def test_dpdd_split_has_37_indoor_and_39_outdoor_scenes_in_name_order():
    assert len(DPDD_INDOOR_INDICES) == 37
    assert [dpdd_scene_group(i) for i in (7, 8, 13, 14, 16, 32, 39, 56, 57, 59, 67, 68, 74, 75)] == [
        "outdoor", "indoor", "indoor", "outdoor", "indoor", "indoor", "indoor", "indoor", "outdoor", "indoor",
        "indoor", "outdoor", "indoor", "indoor",
    ]  # fmt: skip
    names = [f"1P0A{1000 + i}" for i in range(76)]
    groups = dpdd_groups(list(reversed(names)))  # sorted inside: order of the listing does not matter
    assert groups[names[8]] == "indoor" and groups[names[0]] == "outdoor"
    assert sum(g == "outdoor" for g in groups.values()) == 39
    with pytest.raises(ValueError, match="76"):
        dpdd_groups(names[:10])


def test_summarize_averages_per_group_and_skips_missing_metrics():
    rows = [
        {"group": "indoor", "psnr": 20.0, "lpips": None},
        {"group": "outdoor", "psnr": 30.0},
        {"group": "outdoor", "psnr": 40.0},
    ]
    summary = summarize(rows, ("indoor", "outdoor", "all"))
    assert summary["indoor"] == {"count": 1, "psnr": 20.0}
    assert summary["outdoor"]["psnr"] == 35.0 and summary["all"]["psnr"] == 30.0 and summary["all"]["count"] == 3


# ---------------------------------------------------------------------------------------------------------------
# LPIPS
# ---------------------------------------------------------------------------------------------------------------

# Where the lpips package's `net.slice{k}` modules start, as indices into torchvision's `features`.
SLICE_STARTS = {"alex": (0, 2, 5, 8, 10), "squeeze": (0, 2, 5, 8, 10, 11, 12)}


def lpips_package_state_dict(model: LPIPS) -> dict[str, torch.Tensor]:
    """``model``'s weights under the keys the `lpips` package's LPIPS(net=...).state_dict() uses."""
    starts = SLICE_STARTS[model.net_name]
    out = {"scaling_layer.shift": torch.zeros(1, 3, 1, 1), "scaling_layer.scale": torch.ones(1, 3, 1, 1)}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "features":
            index = int(parts[1])
            k = max(i for i, s in enumerate(starts) if s <= index) + 1
            out[f"net.slice{k}.{'.'.join(parts[1:])}"] = value.clone()
        else:  # lins.{k}.weight: the package stores each head twice
            out[f"lin{parts[1]}.model.1.weight"] = value.clone()
            out[f"lins.{parts[1]}.model.1.weight"] = value.clone()
    return out


@pytest.mark.parametrize("net, params", [("alex", 2_469_696), ("squeeze", 722_496)])
def test_lpips_backbones_have_torchvisions_parameter_counts(net, params):
    model = LPIPS(net)
    assert sum(p.numel() for p in model.features.parameters()) == params
    assert [lin.in_channels for lin in model.lins] == list(TAPS[net][1])


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_weights_round_trip_through_a_safetensors_file_in_the_lpips_layout(net, tmp_path):
    source = LPIPS(net)
    for lin in source.lins:
        torch.nn.init.uniform_(lin.weight, 0.0, 1.0)  # LPIPS heads are non-negative
    path = tmp_path / f"lpips_{net}.safetensors"
    save_file(lpips_package_state_dict(source), str(path))
    loaded = LPIPS.from_pretrained(path)
    assert loaded.net_name == net
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x, y), source(x, y))
    assert (loaded(x, y) > 0).all()
    torch.testing.assert_close(loaded(x, y), loaded(y, x))
    assert loaded.distance(x[0].permute(1, 2, 0).numpy(), x[0].permute(1, 2, 0).numpy()) == 0.0


def test_lpips_refuses_the_wrong_backbone_and_incomplete_files(tmp_path):
    path = tmp_path / "alex.safetensors"
    save_file(lpips_package_state_dict(LPIPS("alex")), str(path))
    with pytest.raises(LPIPSWeightsError, match="SqueezeNet"):
        LPIPS.from_pretrained(path, net="squeeze")
    partial = {k: v for k, v in lpips_package_state_dict(LPIPS("alex")).items() if not k.startswith(("lin4", "lins.4"))}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(LPIPSWeightsError, match="lins.4.weight"):
        LPIPS.from_pretrained(tmp_path / "partial.safetensors")
    with pytest.raises(FileNotFoundError, match="not found"):
        LPIPS.from_pretrained(tmp_path / "absent.safetensors")


def test_squared_error_by_coc_pools_each_range_and_its_psnr():
    from defocusgan_hf.evaluation.metrics import parse_coc_edges, pooled_psnr, squared_error_by_coc

    target = np.zeros((2, 3, 3))
    prediction = np.zeros((2, 3, 3))
    prediction[0, 0] = 0.1  # a pixel at |CoC| 1 px, squared error 0.01
    prediction[1, 2] = 0.2  # a pixel at |CoC| 30 px: past the last edge, in the open last range
    coc = np.array([[-1.0, 0.5, 2.0], [4.9, 5.0, 30.0]])
    sums, counts = squared_error_by_coc(prediction, target, coc, (0, 2, 5))
    np.testing.assert_allclose(sums, [0.01, 0.0, 0.04])
    np.testing.assert_array_equal(counts, [2, 2, 2])  # the sign is ignored; an edge belongs to the range above it
    psnrs = pooled_psnr(sums, counts)
    assert psnrs[0] == pytest.approx(10 * np.log10(2 / 0.01)) and psnrs[1] == float("inf")
    assert pooled_psnr(np.zeros(1), np.zeros(1)) == [None]
    assert parse_coc_edges("0, 2,5") == (0.0, 2.0, 5.0)
    for bad in ("1,2", "0,5,2", "0", "0,a"):
        with pytest.raises(ValueError, match="edges"):
            parse_coc_edges(bad)
    with pytest.raises(ValueError, match="CoC map"):
        squared_error_by_coc(prediction, target, coc[:, :2], (0, 2))
