"""The base of every sharp-image source and the seeded random draws they share (:mod:`.sources` and
:mod:`.procedural` both build on it, so neither imports the other at module level)."""

from __future__ import annotations

import torch


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def rand_float(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(_rand(generator, 1))


def rand_int(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device))


class ImageSource:
    """Base class: ``sample(size, generator)`` returns a ``(3, size, size)`` float32 tensor in [0, 1]."""

    def sample(self, size: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
