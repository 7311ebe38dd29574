"""Step-indexed training data: sample ``i`` is a pure function of ``(seed, i)``, so a resumed run sees what an
uninterrupted one sees, on any number of processes and workers."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset, Sampler


class StepSampler(Sampler[list[int]]):
    """Batches of indices for steps ``start_step, start_step + 1, ...`` of one process.

    Sample ``i`` of a step-indexed dataset is a pure function of ``(seed, i)``, so step ``s`` sees the same
    images whether the run started at 0 or resumed at ``s``, on any number of workers.
    """

    def __init__(self, start_step: int, batch_size: int, process_index: int, num_processes: int, accumulation: int = 1):
        self.start, self.batch, self.rank, self.world, self.accumulation = (
            start_step * accumulation,
            batch_size,
            process_index,
            num_processes,
            accumulation,
        )

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start
        while True:
            first = (micro * self.world + self.rank) * self.batch
            yield list(range(first, first + self.batch))
            micro += 1

    def __len__(self) -> int:  # an endless stream; DataLoader only needs a number
        return 2**62


class Cycle(Dataset):
    """A finite dataset of ``N`` items seen as an endless, step-indexed one, in epochs of ``N`` samples.

    Sample ``i`` belongs to epoch ``e = i // N``; it is item ``order_e[i % N]`` of ``dataset``, where ``order_e`` is
    a permutation drawn from ``(seed, e)`` (``shuffle``; else the identity), read after ``dataset.set_epoch(e)``
    when the dataset has one (DPDD's random crops and flips depend on the epoch). Everything is a pure function of
    ``(seed, i)``: a run resumed at step ``k`` sees what an uninterrupted run sees, in any DataLoader worker.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, shuffle: bool = True):
        self.dataset, self.seed, self.shuffle = dataset, int(seed), shuffle
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, permutation) of the last epoch read

    def __len__(self) -> int:
        return 2**62

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of the dataset's items in ``epoch``."""
        if self._order is None or self._order[0] != epoch:
            size = len(self.dataset)
            if self.shuffle:
                generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1))
                permutation = torch.randperm(size, generator=generator)
            else:
                permutation = torch.arange(size)
            self._order = (epoch, permutation)
        return self._order[1]

    def __getitem__(self, index: int):
        epoch, position = divmod(int(index), len(self.dataset))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[int(self.order(epoch)[position])]


def training_dataset(args: argparse.Namespace) -> Dataset:
    """Sharp crops for the synthetic engine (rendered later on the device), or DPDD training crops."""
    if args.dataset == "dpdd":
        from ..data import DPDDDataset

        if not args.dpdd_root:
            raise SystemExit("--dataset dpdd needs --dpdd_root (the dd_dp_dataset_canon folder).")
        return Cycle(
            DPDDDataset(args.dpdd_root, split="train", crop_size=args.resolution, seed=args.seed), seed=args.seed
        )
    from ..data import SharpImageDataset
    from ..data.crop_cache import CropCache
    from .args import synthetic_config

    sources = ["skimage", "dead_leaves", "text"] + ([args.image_dir] if args.image_dir else [])
    config = synthetic_config(args) if hasattr(args, "data_config") else None  # its sharp sources (CUHK in-focus)
    cache = None
    if getattr(args, "source_cache_dir", None):
        cache = CropCache(args.source_cache_dir, args.source_cache_size, num_workers=args.dataloader_num_workers)
    return SharpImageDataset(
        sources, resolution=args.resolution, length=2**40, seed=args.seed, config=config, crop_cache=cache
    )


def step_loader(dataset: Dataset, args: argparse.Namespace, accelerator: Accelerator, start_step: int) -> DataLoader:
    sampler = StepSampler(
        start_step,
        args.train_batch_size,
        accelerator.process_index,
        accelerator.num_processes,
        args.gradient_accumulation_steps,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,
    )


def step_generator(seed: int, step: int, process_index: int, device: torch.device) -> torch.Generator:
    """A generator for on-device randomness (scene layout, noise) that depends only on the step and the process."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + step * 7919 + process_index) % (2**63 - 1))
    return generator
