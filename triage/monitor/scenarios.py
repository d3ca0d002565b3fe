"""Scripted streams of run records for testing and benchmarking the alarm rule.

The studies are resampled from what the pipeline measures, not from an assumed shape:
`POOLS` (``pipeline_pools.json``, written by ``make bench-monitor``) holds, per study, the
calibrated score, the input distance and the label of

* ``stable``: a stable stream of at least 2,000 distinct synthetic acme studies through
  ``triage run`` with the benchmark's tiny model (on 32x32x8 exports the input distance
  runs at about 0.29 ± 0.14, right-skewed, and ``logit(p)`` at about -0.3 ± 0.4,
  left-skewed: a CUSUM's false alarms come from the tails, so the shape is kept as
  measured), and
* one pool per shift (``SHIFTS``), the same device's exports rendered with the generator's
  knobs (`benchmarks.monitor.stream`): ``noise`` (device noise 12 -> 40 HU: distance about
  0.78, scores barely move), ``hu-offset`` (+100 HU calibration: distance about 0.67,
  logit +0.2), ``new-device`` (cygnus behind acme's name: distance about 2.2 ± 0.8, logit
  SD doubled).

A stable device draws its studies (score, distance and label together) with replacement
from the stable pool; from a known run on it draws from the shift's pool. The calibration
reference a bundle would carry is a separate draw of 1,000 studies from the stable pool.
Draws are independent: the pipeline's studies are (each synthetic study has its own seed),
so the simulated streams keep the marginal shapes, not any drift within a stream.
docs/monitoring.md and docs/benchmarks.md ("Monitoring") give the measured moments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from triage.monitor.record import GroupRecord, RunRecord
from triage.monitor.reference import score_reference

SHIFTS = ("hu-offset", "noise", "new-device")
#: Per-study (score, input distance, label) pools measured through the pipeline.
POOLS = Path(__file__).with_name("pipeline_pools.json")
#: Routing thresholds of the scripted routes (urgent at or above, routine below).
URGENT, ROUTINE = 0.8, 0.1


@dataclass(frozen=True)
class Scenario:
    """A stream: `runs` runs of `per_run` studies of device `group`; from run `shift_at`
    on (None: never) the device's studies come from the pool of `shift`. The calibration
    reference is drawn with `reference_seed` (a bundle's own calibration split)."""

    group: str = "acme"
    runs: int = 20
    per_run: int = 25
    shift_at: int | None = None
    shift: str = "hu-offset"
    seed: int = 0
    reference_seed: int = 99


@lru_cache(maxsize=1)
def load_pools() -> dict[str, np.ndarray]:
    """Pool name (``stable`` and each of `SHIFTS`) -> array of (score, distance, label)."""
    data = json.loads(POOLS.read_text(encoding="utf-8"))
    return {name: np.asarray(data[name], dtype=np.float64) for name in ("stable", *SHIFTS)}


def draw(rng: np.random.Generator, n: int, *, shift: str | None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, distances, labels) of `n` studies resampled from the pool of `shift`
    (None: the stable pool)."""
    if shift is not None and shift not in SHIFTS:
        raise ValueError(f"Unknown shift '{shift}'; valid shifts: {', '.join(SHIFTS)}.")
    pool = load_pools()["stable" if shift is None else shift]
    rows = pool[rng.integers(0, len(pool), n)]
    return rows[:, 0], rows[:, 1], rows[:, 2].astype(int)


def stable_reference(group: str = "acme", n: int = 1000, seed: int = 99) -> dict:
    """The calibration reference of the stable device (as a bundle would carry it)."""
    p, _, _ = draw(np.random.default_rng(seed), n, shift=None)
    return score_reference(p, [group] * n)


def stream(scenario: Scenario, *, with_reference: bool = True
           ) -> tuple[list[RunRecord], list[tuple[int, str, str, int]]]:
    """The run records and the labelled outcomes (run, group, route, finding) of a
    scenario; routes use fixed thresholds `ROUTINE` / `URGENT`."""
    rng = np.random.default_rng(scenario.seed)
    reference = (stable_reference(scenario.group, seed=scenario.reference_seed)["groups"]
                 if with_reference else {})
    records, outcomes = [], []
    for run in range(scenario.runs):
        shifted = scenario.shift_at is not None and run >= scenario.shift_at
        p, d, y = draw(rng, scenario.per_run, shift=scenario.shift if shifted else None)
        routes = np.where(p >= URGENT, "urgent", np.where(p < ROUTINE, "routine", "review"))
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
