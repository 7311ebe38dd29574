"""Weight interpolation of two generators (defocusgan_hf.training.interpolate): the ends are the two nets bit for
bit, the middle is their mean, and mismatched or existing folders are refused."""

import pytest
import torch
from safetensors.torch import load_file

from defocusgan_hf.models import DefocusDeblurNet
from defocusgan_hf.training.interpolate import interpolate_pipelines, interpolate_state_dicts, main

TINY = dict(level_channels=(4, 4, 8, 8, 8), branch_depths=(0, 1, 1, 1), output_residual="luma")


def _pipeline(folder, seed, **config):
    torch.manual_seed(seed)
    net = DefocusDeblurNet(**{**TINY, **config})
    net.save_pretrained(folder / "deblur_net")
    return net


def _weights(folder):
    return DefocusDeblurNet.from_pretrained(folder, subfolder="deblur_net").state_dict()


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_ends_are_the_two_nets_bit_for_bit(tmp_path, alpha):
    a, b = _pipeline(tmp_path / "a", 0), _pipeline(tmp_path / "b", 1)
    out = interpolate_pipelines(tmp_path / "a", tmp_path / "b", alpha, tmp_path / "out")
    expected = (a if alpha == 1.0 else b).state_dict()
    got = _weights(out)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_the_middle_is_the_mean_and_keeps_a_config(tmp_path):
    a = _pipeline(tmp_path / "a", 0, residual_lowpass_sigma=16.0)
    b = _pipeline(tmp_path / "b", 1)
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.25", "--output_dir", str(tmp_path / "out")])
    got, wa, wb = _weights(tmp_path / "out"), a.state_dict(), b.state_dict()
    conv = next(k for k in wa if k.endswith("weight"))
    assert not torch.equal(wa[conv], wb[conv])
    assert torch.allclose(got[conv], 0.25 * wa[conv] + 0.75 * wb[conv], atol=1e-7)
    restored = DefocusDeblurNet.from_pretrained(tmp_path / "out", subfolder="deblur_net")
    assert restored.config.residual_lowpass_sigma == 16.0


def test_fp16_storage(tmp_path):
    _pipeline(tmp_path / "a", 0), _pipeline(tmp_path / "b", 1)
    out = interpolate_pipelines(tmp_path / "a", tmp_path / "b", 0.5, tmp_path / "out", save_dtype=torch.float16)
    stored = load_file(out / "deblur_net" / "diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}


def test_refusals(tmp_path):
    _pipeline(tmp_path / "a", 0), _pipeline(tmp_path / "wide", 1, level_channels=(4, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="shapes"):
        interpolate_pipelines(tmp_path / "a", tmp_path / "wide", 0.5, tmp_path / "out")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        interpolate_pipelines(tmp_path / "a", tmp_path / "a", 0.5, tmp_path / "taken")
    with pytest.raises(FileNotFoundError, match="not a pipeline"):
        interpolate_pipelines(tmp_path / "a", tmp_path, 0.5, tmp_path / "out2")
    with pytest.raises(ValueError, match="alpha"):
        interpolate_state_dicts({}, {}, 1.5)


def test_residual_lowpass_sigma_is_set_in_the_written_config_and_checked(tmp_path):
    _pipeline(tmp_path / "a", 0), _pipeline(tmp_path / "b", 1)
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.5", "--output_dir", str(tmp_path / "out"),
          "--residual_lowpass_sigma", "16"])  # fmt: skip
    restored = DefocusDeblurNet.from_pretrained(tmp_path / "out", subfolder="deblur_net")
    assert restored.config.residual_lowpass_sigma == 16.0
    original = DefocusDeblurNet.from_pretrained(tmp_path / "a", subfolder="deblur_net")
    assert original.config.residual_lowpass_sigma is None
    with pytest.raises(ValueError, match="residual_lowpass_sigma"):
        interpolate_pipelines(tmp_path / "a", tmp_path / "b", 0.5, tmp_path / "bad", residual_lowpass_sigma=-1.0)
    assert not (tmp_path / "bad").exists()
