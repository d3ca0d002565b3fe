"""Per device group and split: studies and positives, and whether the calibration split has
enough positives for each routing guarantee.

Guarantee modes, both per device group and at miss rate `alpha`:

- ``pac``: certified thresholds (`triage.route.thresholds`): with zero misses among n
  calibration positives the Clopper-Pearson bound is at most alpha with confidence
  1 - delta only when n >= `min_positives_needed` (299 at alpha = 1 %, delta = 5 %).
- ``marginal``: split-conformal thresholds, whose guarantee holds on average over
  calibration draws (no delta): see `marginal_positives_needed` (99 at alpha = 1 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from triage.data.manifest import Split


def marginal_positives_needed(alpha: float) -> int:
    """Fewest calibration positives for a marginal (split-conformal) miss rate <= `alpha`.

    The conformal threshold is the ceil((n + 1)(1 - alpha))-th smallest of the n positives'
    scores; it exists (is not "route nothing routine") only when that rank is at most n,
    i.e. n >= (1 - alpha) / alpha = 1/alpha - 1. Computed here rather than imported so that
    the summary does not wait on the conformal router (whose module will own the rule).

    Example:
        >>> marginal_positives_needed(0.01)
        99
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")
    return math.ceil(1.0 / alpha - 1.0 - 1e-9)


@dataclass(frozen=True)
class GroupSummary:
    """One device group: (studies, positives) per split and the calibration verdicts."""

    device_group: str
    splits: dict[str, tuple[int, int]]
    alpha: float
    delta: float
    pac_needed: int
    marginal_needed: int

    @property
    def calib_positives(self) -> int:
        return self.splits.get(Split.CALIB.value, (0, 0))[1]

    @property
    def pac_ok(self) -> bool:
        return self.calib_positives >= self.pac_needed

    @property
    def marginal_ok(self) -> bool:
        return self.calib_positives >= self.marginal_needed

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_group": self.device_group,
            "splits": {s: {"studies": n, "positives": p} for s, (n, p) in self.splits.items()},
            "calib_positives": self.calib_positives,
            "pac": {"needed": self.pac_needed, "enough": self.pac_ok},
            "marginal": {"needed": self.marginal_needed, "enough": self.marginal_ok},
        }


def summarize_manifest(df: pd.DataFrame, alpha: float | None = None,
                       delta: float | None = None) -> list[GroupSummary]:
    """The summary of a manifest read with `read_manifest`, one entry per device group.

    `alpha` and `delta` default to those of `ThresholdConfig` (the shipped rules').
    """
    from triage.route.thresholds import ThresholdConfig, min_positives_needed  # scipy

    defaults = ThresholdConfig()
    alpha = defaults.alpha if alpha is None else alpha
    delta = defaults.delta if delta is None else delta
    pac, marginal = min_positives_needed(alpha, delta), marginal_positives_needed(alpha)
    out = []
    for device, rows in df.groupby("device_group", sort=True):
        labels = rows["label"].astype(int)
        splits = {s.value: (int((rows["split"] == s.value).sum()),
                            int(labels[rows["split"] == s.value].sum())) for s in Split}
        out.append(GroupSummary(str(device), splits, alpha, delta, pac, marginal))
    return out


def format_summary(groups: list[GroupSummary]) -> list[str]:
    """A plain-text table: studies/positives per split, then the calibration verdicts."""
    splits = [s.value for s in Split]
    width = max([len("device_group"), *(len(g.device_group) for g in groups)])
    head = f"{'device_group':<{width}}  " + "  ".join(f"{s:>9}" for s in splits)
    lines = [head + "  pac     marginal"]
    for g in groups:
        cells = "  ".join(f"{f'{n}/{p}':>9}" for n, p in (g.splits[s] for s in splits))
        verdict = [f"{'ok' if ok else 'short'} {need:<3}" for ok, need in
                   ((g.pac_ok, g.pac_needed), (g.marginal_ok, g.marginal_needed))]
        lines.append(f"{g.device_group:<{width}}  {cells}  {verdict[0]:<7} {verdict[1]}")
    lines.append("cells: studies/positives; pac and marginal: whether the calib split has the "
                 "positives each guarantee needs (the number) for that device group.")
    return lines
