"""Seeded synthetic predictions for the calibration tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function (tests only; inputs are moderate)."""
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def make_predictions() -> Callable:
    """Factory: ``make_predictions(n, seed=0, sharpen=1.0)`` -> ``(p_pos, labels)``.

    Labels are drawn as ``y ~ Bernoulli(q)`` with ``q ~ U(0.02, 0.98)``; the reported
    probability is ``sigmoid(sharpen * logit(q))``, so ``sharpen=1`` is perfectly
    calibrated and ``sharpen > 1`` over-confident.
    """

    def make(n: int, seed: int = 0, sharpen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        q = rng.uniform(0.02, 0.98, n)
        y = (rng.uniform(size=n) < q).astype(np.int64)
        return sigmoid(sharpen * np.log(q / (1 - q))), y

    return make


@pytest.fixture
def make_logits() -> Callable:
    """Factory: ``make_logits(n, temperature, seed=0)`` -> ``(logits (n, 2), labels)`` with
    labels drawn from ``softmax(logits / temperature)``."""

    def make(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        z = rng.normal(0.0, 3.0, (n, 2))
        y = (rng.uniform(size=n) < sigmoid((z[:, 1] - z[:, 0]) / temperature)).astype(int)
        return z, y

    return make
