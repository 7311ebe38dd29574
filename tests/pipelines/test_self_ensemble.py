import pytest
import torch

from defocusgan_hf.pipelines.self_ensemble import DIHEDRAL_TRANSFORMS, _forward, _inverse, dihedral_ensemble


@pytest.fixture
def image():
    return torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))


def test_the_eight_transforms_are_distinct_and_each_is_undone(image):
    seen = {_forward(image, turns, flip).flatten().numpy().tobytes() for turns, flip in DIHEDRAL_TRANSFORMS}
    assert len(DIHEDRAL_TRANSFORMS) == 8 and len(seen) == 8
    for turns, flip in DIHEDRAL_TRANSFORMS:
        assert torch.equal(_inverse(_forward(image, turns, flip), turns, flip), image)


def test_identity_and_pointwise_functions_pass_through(image):
    assert torch.allclose(dihedral_ensemble(lambda x: x, image), image)
    assert torch.allclose(
        dihedral_ensemble(lambda x: x.mean(1, keepdim=True) ** 2, image), image.mean(1, keepdim=True) ** 2
    )


def test_the_average_is_equivariant_for_a_function_that_is_not(image):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)  # a random 3x3 kernel: neither flip- nor turn-symmetric
    ramp = torch.linspace(0, 1, 20)  # and a position-dependent offset along the width of the first layout
    fn = lambda x: conv(x) + (ramp if x.shape[-1] == 20 else 0)  # noqa: E731
    with torch.no_grad():
        assert not torch.allclose(fn(image.flip(-1)), fn(image).flip(-1), atol=1e-3)
        averaged = dihedral_ensemble(fn, image)
        assert torch.allclose(dihedral_ensemble(fn, image.flip(-1)), averaged.flip(-1), atol=1e-6)
        assert torch.allclose(dihedral_ensemble(fn, image.flip(-2)), averaged.flip(-2), atol=1e-6)
        # a quarter turn changes the layout, so the ramp term takes the other branch: the average must still commute
        assert torch.allclose(
            dihedral_ensemble(fn, torch.rot90(image, 1, (-2, -1))), torch.rot90(averaged, 1, (-2, -1)), atol=1e-6
        )
