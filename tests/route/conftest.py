"""Route fixtures: seeded calibrated scores, fitted thresholds, a router over the default rules."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from triage.route.rules import DEFAULT_RULES


def calibrated(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``p ~ U(0, 1)``, ``y ~ Bernoulli(p)``: perfectly calibrated scores. For these the
    miss rate at t is t**2 and the PPV at t is (1 + t) / 2."""
    p = rng.uniform(size=n)
    return p, (rng.uniform(size=n) < p).astype(np.int64)


@pytest.fixture
def make_calibration() -> Callable:
    """Factory: ``make_calibration({"acme": 2000, "tiny": 200}, seed=0)`` -> ``(p, y, groups)``
    with calibrated scores drawn independently per group."""

    def make(sizes: dict[str, int], seed: int = 0):
        rng = np.random.default_rng(seed)
        parts = [(*calibrated(n, rng), np.full(n, name)) for name, n in sizes.items()]
        return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))

    return make


@pytest.fixture
def fitted(make_calibration):
    """Thresholds fitted with the default rules' settings: 'acme' certified (~1500
    positives), 'tiny' not (~100 positives)."""
    from triage.route import fit_thresholds, load_rules

    p, y, groups = make_calibration({"acme": 3000, "tiny": 200})
    return fit_thresholds(p, y, groups, load_rules(DEFAULT_RULES).thresholds)


@pytest.fixture
def router(fitted):
    """The default rules with `fitted`; training devices 'acme' and 'tiny'."""
    from triage.route import Router

    return Router.from_yaml(DEFAULT_RULES, fitted, ["acme", "tiny"])


@pytest.fixture
def evidence() -> Callable:
    """Factory: ``evidence(**changes)`` -> a clean `StudyEvidence` (CT, 'acme', 40 slices,
    verdict ok, p=0.5, distance 1.0, a 512 x 512 volume of 40% body with a 400 HU spread)
    with `changes` applied."""
    from triage.route import StudyEvidence

    def make(**changes):
        values = dict(study_uid="1.2.826.0.1.3680043.10.1", device_group="acme",
                      modality="CT", ingest_ok=True, verdict="ok", n_slices=40,
                      p_calibrated=0.5, input_distance=1.0, matrix=(512, 512, 40),
                      intensity_std=400.0, body_fraction=0.4)
        values.update(changes)
        return StudyEvidence(**values)

    return make
