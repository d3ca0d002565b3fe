"""The review feedback loop, simulated day by day: how long until each device certifies, and
what the site gets meanwhile.

Every day each device triages `per_day` studies at `prevalence`. Before the first
certified version every study goes to review. The random audit (docs/feedback.md) labels
each scored study with probability `audit` (a hash of its UID in the product; a uniform
draw here), independently of its score and finding: the calibration sample. Once a week
the site recalibrates on the labels no version has used yet (`fit_thresholds` under the
mode), which consumes the labels of the devices whose routine threshold the new version
certified, promoted or not, as `triage recalibrate` does (`spent_labels`); the other
devices' labels wait for the next week. A device whose week's labels certify nothing keeps
the champion's thresholds (`carry_over`). The new version is promoted when it certifies
every device the champion certifies (the routing-guarantee gate). Routes use the champion's
thresholds; miss rates are counted on the studies' true labels, and the champion's exact
(population) miss rate per device is recorded each day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.guarantee.pool import DEVICES, Device
from benchmarks.guarantee.redraw import config
from triage.feedback.recalibrate import carry_over, certified_here
from triage.route import fit_thresholds


@dataclass(frozen=True)
class LoopSettings:
    """One simulated deployment.

    Attributes:
        mode: ``pac`` or ``marginal``.
        stratify: ``device``, ``pooled`` or ``auto``.
        audit: audit fraction F.
        days: days simulated.
        per_day: studies per device per day.
        prevalence: share of positive studies.
        recalibrate_every: days between recalibration attempts.
        seed: seed of the studies (equal across settings: common random numbers).
    """

    mode: str
    stratify: str
    audit: float
    days: int = 730
    per_day: int = 100
    prevalence: float = 0.1
    recalibrate_every: int = 7
    seed: int = 0


def simulate(settings: LoopSettings, devices: Sequence[Device] = DEVICES) -> dict[str, Any]:
    """Run one deployment.

    Returns:
        ``settings`` and per device: ``certified_day`` (first day with a certified routine
        threshold, None if never), and daily arrays ``review``, ``routine``,
        ``routine_pos``, ``positives`` (counts) and ``true_miss`` (the champion's exact
        miss rate that day; 0 while uncertified), plus ``versions`` (promotion days).
    """
    cfg = config(settings.mode, settings.stratify)
    names = [d.name for d in devices]
    daily = {n: {k: np.zeros(settings.days) for k in
                 ("review", "routine", "routine_pos", "positives", "true_miss")} for n in names}
    certified_day: dict[str, int | None] = dict.fromkeys(names)
    champion = None
    versions: list[int] = []
    buffer: list[tuple[str, np.ndarray, np.ndarray]] = []
    for day in range(settings.days):
        rng = np.random.default_rng([settings.seed, day])
        for device in devices:
            y = (rng.uniform(size=settings.per_day) < settings.prevalence).astype(int)
            p = device.sample(rng, y)
            audited = rng.uniform(size=y.size) < settings.audit
            g = champion.get(device.name) if champion else None
            t_low, t_high = (g.t_low, g.t_high) if g else (None, None)
            routine = (p < t_low) if t_low is not None else np.zeros(y.size, bool)
            urgent = (p >= t_high) if t_high is not None else np.zeros(y.size, bool)
            auto = (routine | urgent) & ~audited
            row = daily[device.name]
            row["review"][day] = int((~auto).sum())
            row["routine"][day] = int((routine & ~audited).sum())
            row["routine_pos"][day] = int((routine & ~audited & (y == 1)).sum())
            row["positives"][day] = int(y.sum())
            row["true_miss"][day] = device.rates(t_low, None)["miss"]
            buffer.append((device.name, p[audited], y[audited]))
        if (day + 1) % settings.recalibrate_every:
            continue
        p = np.concatenate([part[1] for part in buffer])
        y = np.concatenate([part[2] for part in buffer])
        groups = np.concatenate([np.full(part[1].size, part[0]) for part in buffer])
        if y.sum() == 0 or y.sum() == y.size:
            continue
        fitted = fit_thresholds(p, y, groups, cfg)
        fresh = certified_here(fitted)
        buffer = [part for part in buffer if part[0] not in fresh]  # `spent_labels`
        if champion is not None:  # no temperature here: the logit rule is the threshold
            fitted = carry_over(fitted, champion.to_dict(), parent=str(len(versions)),
                                scale=1.0)
        new = {n for n in names if (g := fitted.get(n)) and g.t_low is not None}
        old = {n for n in names if champion and (g := champion.get(n)) and g.t_low is not None}
        if new and new >= old:
            champion = fitted
            versions.append(day + 1)
            for name in new:
                if certified_day[name] is None:
                    certified_day[name] = day + 1
    return {"settings": settings.__dict__, "certified_day": certified_day,
            "versions": versions, "daily": daily}


def guarantee_days(result: dict[str, Any], alpha: float) -> dict[str, dict[str, float]]:
    """Per device, over the days it had a certified routine threshold: the mean exact miss
    rate of the champion (what ``marginal`` bounds in expectation) and the share of those
    days on which it exceeded alpha (what ``pac`` bounds by delta, per version)."""
    out = {}
    for name, d in result["daily"].items():
        day = result["certified_day"][name]
        rates = d["true_miss"][day - 1:] if day else np.zeros(0)
        out[name] = {"days": int(rates.size),
                     "mean": float(rates.mean()) if rates.size else float("nan"),
                     "exceed": float((rates > alpha).mean()) if rates.size else float("nan")}
    return out


def windows(days: int) -> list[tuple[int, int]]:
    """Reporting windows (first day, last day), 1-based, within `days`."""
    edges = [0, 30, 90, 180, 365, 730, 1095]
    return [(a + 1, b) for a, b in zip(edges, edges[1:], strict=False) if b <= days]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Per window and device (and all devices): review share, realized routine miss rate
    (positives routed routine / positives), and the mean and largest exact miss rate of the
    champion's thresholds."""
    s = result["settings"]
    out: dict[str, Any] = {"settings": s, "certified_day": result["certified_day"],
                           "versions": len(result["versions"]), "windows": [],
                           "guarantee": guarantee_days(result, config(s["mode"],
                                                                     s["stratify"]).alpha)}
    for a, b in windows(s["days"]):
        sl = slice(a - 1, b)
        rows = {}
        for name, d in result["daily"].items():
            rows[name] = _window(d, sl, s["per_day"])
        total = {k: sum(result["daily"][n][k][sl].sum() for n in result["daily"])
                 for k in ("review", "routine_pos", "positives")}
        rows["all"] = {"review": total["review"] / (len(result["daily"]) * s["per_day"]
                                                     * (b - a + 1)),
                       "miss": total["routine_pos"] / max(total["positives"], 1),
                       "true_miss_mean": float(np.mean([r["true_miss_mean"]
                                                        for r in rows.values()])),
                       "true_miss_max": float(max(r["true_miss_max"] for r in rows.values()))}
        out["windows"].append({"days": [a, b], "groups": rows})
    return out


def _window(d: dict[str, np.ndarray], sl: slice, per_day: int) -> dict[str, float]:
    n_days = d["review"][sl].size
    return {"review": float(d["review"][sl].sum() / (per_day * n_days)),
            "miss": float(d["routine_pos"][sl].sum() / max(d["positives"][sl].sum(), 1)),
            "true_miss_mean": float(d["true_miss"][sl].mean()),
            "true_miss_max": float(d["true_miss"][sl].max())}
