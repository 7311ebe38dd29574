"""1 - |Spearman ρs| against a relative reference map: invariances, the constant map, resizing and the grid."""

import numpy as np
import pytest

from defocusgan_hf.evaluation.rank_agreement import grid_samples, rank_error, resize_map, signed_rank_correlation


@pytest.fixture
def truth():
    y, x = np.mgrid[0:32, 0:32]
    return (np.sin(x / 5.0) + y / 16.0 + 0.01 * np.random.default_rng(0).random((32, 32))).astype(np.float32)


def test_a_monotone_transform_of_the_truth_scores_zero(truth):
    assert rank_error(np.exp(3 * truth) - 7, truth) == pytest.approx(0.0, abs=1e-12)


def test_a_negated_map_scores_zero_but_its_signed_correlation_is_minus_one(truth):
    assert rank_error(-truth, truth) == pytest.approx(0.0, abs=1e-12)
    assert signed_rank_correlation(-truth, truth) == pytest.approx(-1.0)


def test_a_constant_map_scores_one_by_definition(truth):
    assert signed_rank_correlation(np.full_like(truth, 4.0), truth) is None
    assert rank_error(np.full_like(truth, 4.0), truth) == 1.0
    assert rank_error(truth, np.zeros_like(truth)) == 1.0  # a constant reference has no ranks either


def test_a_random_map_scores_near_one(truth):
    noise = np.random.default_rng(1).random(truth.shape)
    assert rank_error(noise, truth, stride=1) > 0.85


def test_a_half_size_map_is_resized_to_the_truth_before_ranking(truth):
    small = truth[::2, ::2]
    assert resize_map(small, truth.shape).shape == truth.shape
    assert rank_error(small, truth) < 0.1 < rank_error(small[::-1], truth)


def test_the_grid_takes_every_stride_th_pixel_from_the_middle_of_the_first_cell():
    values = np.arange(64).reshape(8, 8)
    np.testing.assert_array_equal(grid_samples(values, 4), [18, 22, 50, 54])
    with pytest.raises(ValueError, match=">= 1"):
        grid_samples(values, 0)
