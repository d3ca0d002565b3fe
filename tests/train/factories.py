"""Test helpers for the training tests: a tiny config and a stand-in perturbation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.train.config import TrainConfig

# A MONAI Classifier with two strided units: ~3 k parameters, milliseconds per step on
# 24x24x12 volumes.
TINY_MODEL = {"name": "cnn-small", "options": {"channels": [4, 8], "strides": [2, 2]}}


def tiny_config(**sections: Any) -> TrainConfig:
    """The default config shrunk for tests, with `sections` merged on top."""
    base = {
        "model": TINY_MODEL,
        "loss": {"name": "focal", "gamma": 2.0, "alpha": "prevalence"},
        "optim": {"epochs": 2, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 0.5},
        "sampling": {"epoch_size": 24},
        "perturb": {"enabled": False},
        "runtime": {"seed": 3, "device": "cpu", "num_workers": 0},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return TrainConfig.from_dict(base)


@dataclass(frozen=True)
class RenderInfo:
    """What a transform reports, like the perturbation's info (``target_device``)."""

    target_device: str | None


def fake_perturbation(array: np.ndarray, sample: Any, rng: np.random.Generator):
    """Adds seeded noise; 'renders' half of the samples as device ``cygnus``."""
    noisy = array + rng.normal(0, 0.01, array.shape).astype(np.float32)
    return noisy, RenderInfo("cygnus" if rng.random() < 0.5 else None)
