"""Scripted streams of run records for testing and benchmarking the alarm rule.

A stable device draws calibrated scores from a two-component logit-normal mixture (like
the calibration split: `stable_reference`) and input distances around 0.08; at a known run
the device shifts: ``hu-offset`` (input distances jump: a 100 HU miscalibration adds about
0.3), ``noise`` (scores spread: logit SD x1.6, distances +0.15), or ``new-device`` (a
device unseen in training appears: scores pushed towards 0.5, distances near 1.8).
These are simulated at the score and statistic level (cheap), from the shapes the pipeline
produces on the synthetic devices (docs/worklist.md, input distance; docs/monitoring.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.monitor.record import GroupRecord, RunRecord
from triage.monitor.reference import score_reference

SHIFTS = ("hu-offset", "noise", "new-device")


@dataclass(frozen=True)
class Scenario:
    """A stream: `runs` runs of `per_run` studies of device `group`; from run `shift_at`
    on (None: never) the device shifts by `shift` with strength `size`. The calibration
    reference is drawn with `reference_seed` (a bundle's own calibration split)."""

    group: str = "acme"
    runs: int = 20
    per_run: int = 25
    shift_at: int | None = None
    shift: str = "hu-offset"
    size: float = 1.0
    prevalence: float = 0.3
    seed: int = 0
    reference_seed: int = 99


def draw(rng: np.random.Generator, n: int, *, shift: str | None, size: float,
         prevalence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, distances, labels) of `n` studies."""
    y = (rng.random(n) < prevalence).astype(int)
    z = np.where(y == 1, rng.normal(2.0, 1.2, n), rng.normal(-2.5, 1.2, n))
    d = np.abs(rng.normal(0.08, 0.03, n))
    if shift == "hu-offset":
        d = d + 0.3 * size
        z = z + 0.3 * size
    elif shift == "noise":
        z = z * (1 + 0.6 * size)
        d = d + 0.15 * size
    elif shift == "new-device":
        z = z * 0.4
        d = np.abs(rng.normal(1.8, 0.3, n))
    p = 1 / (1 + np.exp(-z))
    return p, d, y


def stable_reference(group: str = "acme", n: int = 1000, seed: int = 99,
                     prevalence: float = 0.3) -> dict:
    """The calibration reference of the stable device (as a bundle would carry it)."""
    p, _, _ = draw(np.random.default_rng(seed), n, shift=None, size=0, prevalence=prevalence)
    return score_reference(p, [group] * n)


def stream(scenario: Scenario, *, with_reference: bool = True
           ) -> tuple[list[RunRecord], list[tuple[int, str, str, int]]]:
    """The run records and the labelled outcomes (run, group, route, finding) of a
    scenario; routes use fixed thresholds 0.1 / 0.8."""
    rng = np.random.default_rng(scenario.seed)
    reference = (stable_reference(scenario.group, seed=scenario.reference_seed,
                                  prevalence=scenario.prevalence)["groups"]
                 if with_reference else {})
    records, outcomes = [], []
    for run in range(scenario.runs):
        shifted = scenario.shift_at is not None and run >= scenario.shift_at
        p, d, y = draw(rng, scenario.per_run, shift=scenario.shift if shifted else None,
                       size=scenario.size, prevalence=scenario.prevalence)
        routes = np.where(p >= 0.8, "urgent", np.where(p < 0.1, "routine", "review"))
        group = GroupRecord(routes={}, scores=[round(float(v), 4) for v in p],
                            distances=[round(float(v), 4) for v in d])
        for r in routes:
            group.routes[str(r)] = group.routes.get(str(r), 0) + 1
        records.append(RunRecord(finished_utc=f"2025-01-{1 + run // 24:02d}T{run % 24:02d}:00:00"
                                              f"+00:00", groups={scenario.group: group},
                                 reference={scenario.group: reference[scenario.group]}
                                 if reference else {}))
        outcomes += [(run, scenario.group, str(r), int(t)) for r, t in zip(routes, y,
                                                                             strict=True)]
    return records, outcomes
