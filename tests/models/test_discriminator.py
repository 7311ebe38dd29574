import pytest
import torch

from defocusgan_hf.models.discriminator import PatchDiscriminator


@pytest.fixture
def critic():
    torch.manual_seed(0)
    return PatchDiscriminator(base_channels=8)


@pytest.mark.parametrize("height,width", [(64, 64), (70, 96)])
def test_output_shape_matches_output_size(critic, height, width):
    scores = critic(torch.rand(2, 3, height, width))
    assert scores.shape == (2, 1, *critic.output_size(height, width))


def test_default_critic_gives_30x30_scores_at_256():
    assert PatchDiscriminator().output_size(256, 256) == (30, 30)


def test_scores_are_unbounded(critic):
    # No sigmoid: a WGAN critic's scores are free reals, so scaling the last conv scales the scores.
    x = torch.rand(1, 3, 48, 48)
    before = critic(x)
    with torch.no_grad():
        critic.net[-1].weight.mul_(100.0)
        critic.net[-1].bias.mul_(100.0)
    assert torch.allclose(critic(x), before * 100.0, rtol=1e-4, atol=1e-4)


def test_too_small_input_raises(critic):
    with pytest.raises(ValueError, match="too small"):
        critic(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"norm": "batch"}, "'batch'"), ({"num_layers": 0}, "got 0"), ({"base_channels": 0}, "got 0")],
)
def test_invalid_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchDiscriminator(**kwargs)


def test_save_load_round_trip_is_exact(critic, tmp_path):
    critic.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = PatchDiscriminator.from_pretrained(tmp_path)
    assert loaded.config.base_channels == 8 and loaded.config.norm == "instance"
    x = torch.rand(1, 3, 40, 40)
    assert torch.equal(loaded(x), critic.eval()(x))
