"""Warm-up then cosine: the learning-rate curve, step by step."""

from __future__ import annotations

import math

import pytest
import torch

from triage.train.config import OptimConfig
from triage.train.schedule import create_scheduler, lr_factor


def lrs(config: OptimConfig, steps_per_epoch: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=config.lr)
    scheduler = create_scheduler(optimizer, config, steps_per_epoch)
    out = []
    for _ in range(config.epochs * steps_per_epoch):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_is_linear_from_warmup_start_then_cosine_to_the_floor():
    config = OptimConfig(epochs=3, lr=0.1, warmup_epochs=1, warmup_start=0.1,
                         min_lr_ratio=0.01)
    curve = lrs(config, steps_per_epoch=4)
    # warm-up: 0.01, 0.0325, 0.055, 0.0775 (linear from 0.1 * lr towards lr)
    assert curve[:4] == pytest.approx([0.01, 0.0325, 0.055, 0.0775])
    # cosine over the remaining 8 steps, from the peak towards 0.001
    for k, value in enumerate(curve[4:]):
        expected = 0.1 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * k / 8)))
        assert value == pytest.approx(expected)
    assert curve[4] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(curve[4:], curve[5:], strict=False))


def test_floor_is_reached_after_the_last_step():
    kwargs = {"total_steps": 10, "warmup_steps": 2, "warmup_start": 0.1, "min_lr_ratio": 0.05}
    assert lr_factor(10, **kwargs) == pytest.approx(0.05)
    assert lr_factor(50, **kwargs) == pytest.approx(0.05)


def test_no_warmup_starts_at_the_peak():
    curve = lrs(OptimConfig(epochs=2, lr=0.01, warmup_epochs=0, min_lr_ratio=0.0), 5)
    assert curve[0] == pytest.approx(0.01)
    assert curve[5] == pytest.approx(0.005)


def test_fractional_warmup_epochs():
    curve = lrs(OptimConfig(epochs=2, lr=0.01, warmup_epochs=0.5, warmup_start=0.5), 4)
    assert curve[:3] == pytest.approx([0.005, 0.0075, 0.01])
