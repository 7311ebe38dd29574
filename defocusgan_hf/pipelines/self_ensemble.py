"""Geometric self-ensemble: average a model's outputs over the 8 flips and quarter turns of its input.

The x8 test-time averaging of Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution"
(CVPRW 2017, the "+" models). Hand-rolled because it is a few lines of ``torch.rot90`` / ``flip``; the library that
packages it (ttach) has had no release since 2020 and wraps models in classes of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# (quarter turns, horizontal flip after turning): the 8 symmetries of the square, identity first.
DIHEDRAL_TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((turns, flip) for turns in range(4) for flip in (False, True))


def _forward(image: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    image = torch.rot90(image, turns, dims=(-2, -1))
    return image.flip(-1) if flip else image


def _inverse(image: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    image = image.flip(-1) if flip else image
    return torch.rot90(image, -turns, dims=(-2, -1))


def dihedral_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """Mean over the 8 symmetries ``t`` of ``t⁻¹(fn(t(image)))``, in float32.

    ``image`` is ``(B, C, H, W)``; ``fn`` must map an image to one of the same height and width (any channels), so
    that each output can be turned back. The result is equivariant: ``dihedral_ensemble(fn, t(x)) == t(...(x))`` for
    every flip or quarter turn ``t``, whatever ``fn`` is. It costs 8 calls of ``fn``.
    """
    total = None
    for turns, flip in DIHEDRAL_TRANSFORMS:
        output = _inverse(fn(_forward(image, turns, flip)), turns, flip).float()
        total = output if total is None else total + output
    return total / len(DIHEDRAL_TRANSFORMS)
