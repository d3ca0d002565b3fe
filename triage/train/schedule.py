"""Learning-rate schedule: per-step linear warm-up, then cosine decay to a floor.

As a multiple of the peak ``lr`` at step ``s`` (``W`` warm-up steps, ``T`` steps in all):
``warmup_start + (1 - warmup_start) * s / W`` while ``s < W``, then
``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * (s - W) / (T - W))) / 2``, reaching
``min_lr_ratio`` at the last step ``T - 1`` ... ``T``.
"""

from __future__ import annotations

import math

import torch

from triage.train.config import OptimConfig


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, warmup_start: float,
              min_lr_ratio: float) -> float:
    """The multiple of the peak learning rate used at optimizer step `step` (0-based).

    Example:
        >>> [round(lr_factor(s, total_steps=5, warmup_steps=1, warmup_start=0.1,
        ...                  min_lr_ratio=0.0), 3) for s in range(6)]
        [0.1, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def create_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig,
                     steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` stepped once per optimizer step (call ``scheduler.step()`` after each).

    Args:
        optimizer: its parameter groups' ``lr`` is the peak learning rate.
        config: ``epochs``, ``warmup_epochs`` (may be fractional), ``warmup_start``,
            ``min_lr_ratio``.
        steps_per_epoch: optimizer steps in one epoch.
    """
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        return lr_factor(step, total_steps=total, warmup_steps=warmup,
                         warmup_start=config.warmup_start, min_lr_ratio=config.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
