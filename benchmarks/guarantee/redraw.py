"""Guarantee modes over calibration redraws: what each (mode, stratify) pair clears, sends to
review, and whether its promise holds, at a given number of calibration positives.

Each draw gives every device `n` calibration positives and `n` negatives (the triage
pool's ~50 % prevalence), fits `triage.route.fit_thresholds` under the mode, and measures
the thresholds with the devices' exact rates (`pool.Device.rates`): no test-set noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.guarantee.pool import DEVICES, Device, review_share
from triage.route import fit_thresholds
from triage.route.thresholds import ThresholdConfig

MODES = ("pac", "marginal")
STRATIFY = ("device", "pooled", "auto")
SIZES = (50, 100, 300, 1000)
#: Deployment prevalence at which the review share is computed (the feedback loop's).
PREVALENCE = 0.1


def config(mode: str, stratify: str, **overrides: Any) -> ThresholdConfig:
    """The default rules' thresholds (alpha 0.01, delta 0.05, PPV 0.9) under a mode."""
    return ThresholdConfig(guarantee=mode, stratify=stratify, **overrides)


def draw_calibration(rng: np.random.Generator, n: int, devices: Sequence[Device] = DEVICES
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` positives and `n` negatives per device: probabilities, labels, device groups."""
    labels = np.tile(np.r_[np.ones(n, int), np.zeros(n, int)], len(devices))
    groups = np.repeat([d.name for d in devices], 2 * n)
    p = np.concatenate([d.sample(rng, labels[:2 * n]) for d in devices])
    return p, labels, groups


def device_rates(fitted: Any, devices: Sequence[Device] = DEVICES,
                 prevalence: float = PREVALENCE) -> dict[str, dict[str, float]]:
    """Per device: exact rates of its fitted thresholds, review share, certified sides."""
    out = {}
    for device in devices:
        g = fitted.get(device.name)
        t_low, t_high = (g.t_low, g.t_high) if g else (None, None)
        r = device.rates(t_low, t_high)
        out[device.name] = {**r, "review": review_share(r, prevalence),
                            "routine_cert": float(t_low is not None),
                            "urgent_cert": float(t_high is not None)}
    return out


def run_cell(mode: str, stratify: str, n: int, draws: int, seed: int = 0,
             devices: Sequence[Device] = DEVICES) -> dict[str, Any]:
    """One (mode, stratify, n) cell over `draws` seeded calibration redraws.

    Returns:
        Per device and for the mix (devices equally weighted): mean negatives cleared,
        review share, share of draws certified (routine), mean miss rate with its standard
        error, and the share of draws whose miss rate exceeds alpha.
    """
    cfg = config(mode, stratify)
    per: dict[str, list[dict[str, float]]] = {d.name: [] for d in devices}
    mix_miss = []
    for k in range(draws):
        rng = np.random.default_rng([seed, n, k])
        p, y, g = draw_calibration(rng, n, devices)
        rates = device_rates(fit_thresholds(p, y, g, cfg), devices)
        for name, r in rates.items():
            per[name].append(r)
        mix_miss.append(np.mean([r["miss"] for r in rates.values()]))
    out: dict[str, Any] = {"mode": mode, "stratify": stratify, "n": n, "draws": draws,
                           "alpha": cfg.alpha, "delta": cfg.delta, "groups": {}}
    for name, rows in per.items():
        out["groups"][name] = _stats({key: np.array([r[key] for r in rows]) for key in rows[0]},
                                     cfg.alpha)
    mix = {key: np.mean([[r[key] for r in per[d.name]] for d in devices], axis=0)
           for key in per[devices[0].name][0]}
    mix["miss"] = np.array(mix_miss)
    out["groups"]["mix"] = _stats(mix, cfg.alpha)
    return out


def _stats(values: dict[str, np.ndarray], alpha: float) -> dict[str, float]:
    miss = values["miss"]
    return {"cleared": float(values["cleared"].mean()), "review": float(values["review"].mean()),
            "certified": float(values["routine_cert"].mean()),
            "urgent_certified": float(values["urgent_cert"].mean()),
            "miss_mean": float(miss.mean()),
            "miss_se": float(miss.std(ddof=1) / np.sqrt(miss.size)) if miss.size > 1 else 0.0,
            "exceed": float((miss > alpha).mean())}


def run_grid(draws: int, sizes: Sequence[int] = SIZES, seed: int = 0) -> list[dict[str, Any]]:
    """Every (mode, stratify, n) cell."""
    return [run_cell(mode, stratify, n, draws, seed)
            for mode in MODES for stratify in STRATIFY for n in sizes]
