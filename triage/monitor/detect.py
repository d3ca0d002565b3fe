"""Drift statistics: PSI and KS between histograms, a two-sided CUSUM, proportion bounds.

All are small pure functions on numbers; `triage.monitor.window` applies them per device
group (the rule and its thresholds are in docs/monitoring.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: CUSUM allowance and decision interval, in reference standard deviations (docs/monitoring.md).
#: The allowance grows by `REFERENCE_SE` standard errors of the reference mean
#: (`cusum_allowance`): a reference of n studies is itself off by about 1/sqrt(n) SD.
CUSUM_K = 0.5
CUSUM_H = 10.0
REFERENCE_SE = 3.0
#: PSI above this is reported as a shifted score distribution (the usual "major shift" bound).
PSI_SHIFT = 0.25
#: The labelled-performance rule: a drop of more than this (absolute) ...
PERFORMANCE_DROP = 0.05
#: ... with this confidence (one-sided Clopper-Pearson bound of the recent window).
PERFORMANCE_CONFIDENCE = 0.95


def psi(reference: Sequence[float], current: Sequence[float], eps: float = 1e-4) -> float:
    """Population stability index of two histograms on the same bins.

    ``sum((c - r) * ln(c / r))`` over bins of the two normalized histograms, each bin
    floored at `eps` so an empty bin does not make it infinite.

    Example:
        >>> psi([10, 10], [10, 10])
        0.0
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if r.sum() <= 0 or c.sum() <= 0:
        return float("nan")
    r = np.maximum(r / r.sum(), eps)
    c = np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_binned(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic between two histograms on the same bins, and its
    asymptotic two-sample p-value (conservative: binning can only lower the statistic).

    Example:
        >>> ks_binned([5, 5], [5, 5])[0]
        0.0
    """
    from scipy.special import kolmogorov  # scipy.stats' kstwobign.sf, without its import

    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    n, m = r.sum(), c.sum()
    if n <= 0 or m <= 0:
        return float("nan"), float("nan")
    d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(c) / m)))
    effective = n * m / (n + m)
    return d, float(kolmogorov(d * math.sqrt(effective)))


@dataclass(frozen=True)
class CusumResult:
    """Where a two-sided CUSUM crossed its interval.

    Attributes:
        index: the 0-based position in the stream of the first crossing, or None.
        direction: ``"up"`` or ``"down"`` for the crossing (empty when none).
        peak: the largest statistic reached (either side).
        upper, lower: the statistics after the last value.
    """

    index: int | None
    direction: str
    peak: float
    upper: float
    lower: float


def cusum_allowance(n_reference: int) -> float:
    """CUSUM allowance k for a reference of `n_reference` values: ``0.5 + 3 / sqrt(n)``.

    Example:
        >>> round(cusum_allowance(400), 3)
        0.65
    """
    return CUSUM_K + REFERENCE_SE / math.sqrt(max(n_reference, 1))


def cusum(z: Iterable[float], *, k: float = CUSUM_K, h: float = CUSUM_H) -> CusumResult:
    """Two-sided tabular CUSUM of standardized values `z` (stops at the first crossing).

    ``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)``; alarm when either exceeds `h`.

    Example:
        >>> cusum([0.0] * 50).index is None, cusum([0.0] * 5 + [3.0] * 10).index
        (True, 9)
    """
    upper = lower = peak = 0.0
    for i, value in enumerate(z):
        if not math.isfinite(value):
            continue
        upper = max(0.0, upper + value - k)
        lower = max(0.0, lower - value - k)
        peak = max(peak, upper, lower)
        if upper > h or lower > h:
            return CusumResult(i, "up" if upper > h else "down", peak, upper, lower)
    return CusumResult(None, "", peak, upper, lower)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of a proportion k/n ((0, 1) when n is 0).

    Example:
        >>> [round(v, 4) for v in clopper_pearson(0, 10)]
        [0.0, 0.3085]
    """
    from scipy import stats  # here: ~0.7 s of import a run skips

    if n <= 0:
        return 0.0, 1.0
    a = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return low, high


def upper_bound(k: int, n: int, confidence: float = PERFORMANCE_CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of k/n (1 when n is 0)."""
    from scipy import stats  # here: ~0.7 s of import a run skips

    if n <= 0 or k >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, k + 1, n - k))


def logit(p: np.ndarray | Sequence[float], clip: float = 8.0) -> np.ndarray:
    """log(p / (1 - p)), clipped to [-clip, clip] (scores of exactly 0 or 1 stay finite)."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.clip(np.log(q / (1 - q)), -clip, clip)
