"""The base of every sharp-image source and the seeded random draws they share (:mod:`.sources` and
:mod:`.procedural` both build on it, so neither imports the other at module level)."""

from __future__ import annotations

import numpy as np
import torch


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def rand_float(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(_rand(generator, 1))


def rand_int(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device))


def sample_generator(seed: int, index: int, epoch: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch, index)`` through NumPy's SeedSequence (independent streams)."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class ImageSource:
    """Base class: ``sample(size, generator)`` returns a ``(3, size, size)`` float32 tensor in [0, 1]."""

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
