"""The learning-rate schedule: linear warm-up, then the paper's step decay."""

from __future__ import annotations

import torch


def lr_lambda(warmup_steps: int, halving_steps: int):
    """Linear warm-up, then the paper's step decay: halve every ``halving_steps`` (0 = constant)."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        decay = 0.5 ** (step // halving_steps) if halving_steps > 0 else 1.0
        return warm * decay

    return factor


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
