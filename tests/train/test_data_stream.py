"""The training loop's own data stream (``step_loader`` over ``training_dataset``, as both scripts iterate it) on a
fabricated DPDD tree: new crops every epoch, and a resumed run sees the batches of an uninterrupted one."""

import argparse
from itertools import islice

import pytest
import torch
from accelerate import Accelerator

from defocusgan_hf.training.sampling import step_loader, training_dataset


def _args(root, **overrides):
    values = dict(
        dataset="dpdd", dpdd_root=str(root), resolution=16, seed=5, train_batch_size=2, gradient_accumulation_steps=1,
        dataloader_num_workers=0,
    )  # fmt: skip
    return argparse.Namespace(**{**values, **overrides})


def _batches(args, start_step, count):
    loader = step_loader(training_dataset(args), args, Accelerator(cpu=True), start_step)
    return list(islice(iter(loader), count))


def _crops_by_epoch(batches, size):
    """{(epoch, name): sharp crop} from consecutive batches starting at step 0."""
    samples = [(name, crop) for batch in batches for name, crop in zip(batch["name"], batch["sharp"])]
    return {(i // size, name): crop for i, (name, crop) in enumerate(samples)}


@pytest.mark.parametrize("workers", [0, 1])
def test_two_epochs_give_different_crops_of_each_image(dpdd_root, workers):
    args = _args(dpdd_root, dataloader_num_workers=workers)
    size = len(training_dataset(args).dataset)  # 5 images: an epoch is 2.5 steps of 2
    crops = _crops_by_epoch(_batches(args, 0, size), size)  # 10 samples: epochs 0 and 1
    names = {name for _, name in crops}
    assert len(names) == size and len(crops) == 2 * size  # every image once per epoch
    assert all(not torch.equal(crops[0, name], crops[1, name]) for name in names)


def test_epochs_visit_the_images_in_different_orders(dpdd_root):
    args = _args(dpdd_root, train_batch_size=5)
    first, second = (batch["name"] for batch in _batches(args, 0, 2))
    assert sorted(first) == sorted(second) and first != second


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_at_step_k_gives_the_uninterrupted_batches(dpdd_root, accumulation):
    args = _args(dpdd_root, gradient_accumulation_steps=accumulation)
    uninterrupted = _batches(args, 0, 8 * accumulation)
    resumed = _batches(args, 3, 5 * accumulation)  # step 3 starts inside the second epoch
    for a, b in zip(uninterrupted[3 * accumulation :], resumed):
        assert a["name"] == b["name"]
        assert all(torch.equal(a[k], b[k]) for k in ("blurred", "sharp", "left", "right"))
