"""The crop cache (--source_cache_dir): seeded banks of procedural tiles, built once, read back exactly."""

import argparse
import os

import numpy as np
import pytest
import torch

from defocusgan_hf.data import DeadLeavesSource, MixedSource, SharpImageDataset, TextSource
from defocusgan_hf.data.crop_cache import CachedSource, CropCache, source_key
from defocusgan_hf.data.sources import ArraySource
from defocusgan_hf.training.sampling import training_dataset

SMALL_LEAVES = dict(num_leaves=(20, 40))


def test_a_bank_is_a_pure_function_of_its_settings_whatever_the_workers(tmp_path):
    one = CachedSource(DeadLeavesSource(**SMALL_LEAVES), tmp_path / "a", count=6, tile_size=32, seed=3, progress=False)
    two = CachedSource(
        DeadLeavesSource(**SMALL_LEAVES), tmp_path / "b", count=6, tile_size=32, seed=3, num_workers=2, progress=False
    )
    assert np.array_equal(one.tiles, two.tiles)
    other_seed = CachedSource(DeadLeavesSource(**SMALL_LEAVES), tmp_path / "a", 6, 32, seed=4, progress=False)
    assert other_seed.path != one.path and not np.array_equal(one.tiles, other_seed.tiles)
    assert len({tile.tobytes() for tile in one.tiles}) == 6  # six different tiles, not one repeated


def test_tiles_are_the_source_samples_to_16_bits(tmp_path):
    source = TextSource(num_strings=(2, 3))
    cached = CachedSource(source, tmp_path, count=2, tile_size=48, seed=0, progress=False)
    from defocusgan_hf.data.crop_cache import _tile_generator

    drawn = source.sample(48, _tile_generator(0, source_key(source), 1))
    assert torch.allclose(torch.from_numpy(cached.tiles[1] / 65535.0).float(), drawn, atol=1 / 65535)


def test_crops_follow_the_generator_so_resume_is_exact(tmp_path):
    cached = CachedSource(DeadLeavesSource(**SMALL_LEAVES), tmp_path, count=4, tile_size=40, progress=False)
    first = [cached.sample(24, torch.Generator().manual_seed(s)) for s in range(5)]
    reopened = CachedSource(DeadLeavesSource(**SMALL_LEAVES), tmp_path, count=4, tile_size=40, progress=False)
    again = [reopened.sample(24, torch.Generator().manual_seed(s)) for s in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (3, 24, 24) and first[0].dtype == torch.float32
    assert 0 <= float(first[0].min()) and float(first[0].max()) <= 1
    with pytest.raises(ValueError, match="40-px tiles"):
        cached.sample(41, torch.Generator())


def test_a_foreign_file_under_the_banks_name_is_reported_not_overwritten(tmp_path):
    cached = CachedSource(DeadLeavesSource(**SMALL_LEAVES), tmp_path, count=2, tile_size=16, progress=False)
    np.save(cached.path, np.zeros((3, 3), np.float32))
    before = cached.path.read_bytes()
    with pytest.raises(ValueError, match="delete it to rebuild"):
        CachedSource(DeadLeavesSource(**SMALL_LEAVES), tmp_path, count=2, tile_size=16, progress=False)
    assert cached.path.read_bytes() == before
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def test_settings_of_a_source_are_part_of_its_key(tmp_path):
    assert source_key(DeadLeavesSource()) != source_key(DeadLeavesSource(fine_patterns=True))
    assert source_key(TextSource()) != source_key(TextSource(font_size_range=(8.0, 40.0)))
    a = CachedSource(TextSource(), tmp_path, count=1, tile_size=16, progress=False)
    b = CachedSource(TextSource(font_size_range=(8.0, 40.0)), tmp_path, count=1, tile_size=16, progress=False)
    assert a.path != b.path


def test_wrap_replaces_only_the_procedural_sources_of_a_mixture(tmp_path):
    photo = ArraySource([np.full((40, 40, 3), 0.5, np.float32)])
    mixed = MixedSource([photo, DeadLeavesSource(**SMALL_LEAVES), TextSource()], [0.2, 0.5, 0.3])
    wrapped = CropCache(str(tmp_path), count=2, progress=False).wrap(mixed, tile_size=32, seed=0)
    assert wrapped.sources[0] is photo
    assert [type(s) for s in wrapped.sources[1:]] == [CachedSource, CachedSource]
    assert torch.equal(wrapped.weights, mixed.weights)
    assert mixed.sources[1].__class__ is DeadLeavesSource  # the given mixture is left as it was


def test_training_dataset_with_a_cache_is_deterministic_per_index(tmp_path):
    args = argparse.Namespace(
        dataset="synthetic", image_dir=None, resolution=32, seed=5, source_cache_dir=str(tmp_path),
        source_cache_size=3, dataloader_num_workers=0,
    )  # fmt: skip
    dataset = training_dataset(args)
    assert len(list(tmp_path.glob("*.npy"))) == 2  # dead leaves and text
    again = training_dataset(args)
    for index in (0, 7, 123):
        assert torch.equal(dataset[index]["sharp"], again[index]["sharp"])
    plain = SharpImageDataset(resolution=32, length=10, seed=5)
    assert not any(isinstance(s, CachedSource) for s in plain.source.sources)
