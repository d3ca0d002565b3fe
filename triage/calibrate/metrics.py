"""Binary classification and calibration metrics, per-group reports and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from triage.calibrate.inputs import (
    CalibrationInputError,
    as_numpy,
    check_n_bins,
    check_pair,
    check_threshold,
)
from triage.calibrate.kernels import KERNELS, bin_index, confidence, ratio

METRIC_KEYS = ("n", "prevalence", "accuracy", "macro_f1", "auroc", "sensitivity",
               "specificity", "nll", "brier", "ece", "ece_class0", "ece_class1", "adaptive_ece")
ECE_KINDS = ("top-label", "class1", "class0")

# Every metric takes ``p_pos`` (the positive-class probability, ``softmax(logits)[:, 1]``)
# and ``labels`` (0/1); a sample is predicted positive when ``p_pos >= threshold``. Values
# come from the batch kernels of `triage.calibrate.kernels`, the same code that computes the
# bootstrap resamples. Definitions: docs/calibration.md.


def _one(name: str, p_pos: Any, labels: Any, threshold: float = 0.5, n_bins: int = 15) -> float:
    p, y = check_pair(p_pos, labels)
    return float(KERNELS[name](p[None], y[None], check_threshold(threshold),
                               check_n_bins(n_bins))[0])


# ---- public point metrics ------------------------------------------------------------------


def ece(p_pos: Any, labels: Any, n_bins: int = 15, *, kind: str = "top-label") -> float:
    """Expected calibration error with `n_bins` equal-width bins on [0, 1].

    Args:
        p_pos: positive-class probabilities, shape (N,).
        labels: 0/1 labels, shape (N,).
        n_bins: number of equal-width bins ``(k/n, (k+1)/n]`` (0 goes to the first).
        kind: ``top-label``: confidence ``max(p, 1 - p)`` against the correctness of the
            prediction ``p >= 0.5`` (only bins above 0.5 can be filled); ``class1``: ``p``
            against ``labels``; ``class0``: ``1 - p`` against ``1 - labels``.

    Returns:
        ``sum_b n_b / N * |accuracy_b - confidence_b|`` in [0, 1].

    Raises:
        CalibrationInputError: invalid inputs or an unknown `kind`.

    Example:
        >>> round(ece([0.9, 0.9, 0.25, 0.35], [1, 0, 0, 1], n_bins=5), 6)
        0.3
    """
    if kind not in ECE_KINDS:
        raise CalibrationInputError(
            f"Argument 'kind' must be one of {', '.join(ECE_KINDS)}; got {kind!r}.")
    name = {"top-label": "ece", "class1": "ece_class1", "class0": "ece_class0"}[kind]
    return _one(name, p_pos, labels, n_bins=n_bins)


def adaptive_ece(p_pos: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label ECE with equal-count bins (ranked by confidence; sizes differ by <= 1).

    With fewer samples than bins every sample is its own bin.
    """
    return _one("adaptive_ece", p_pos, labels, n_bins=n_bins)


def nll(p_pos: Any, labels: Any) -> float:
    """Mean negative log-likelihood (log loss, natural log); p is clipped to [1e-15, 1-1e-15]."""
    return _one("nll", p_pos, labels)


def brier(p_pos: Any, labels: Any) -> float:
    """Binary Brier score: mean of ``(p - y)^2``."""
    return _one("brier", p_pos, labels)


def auroc(p_pos: Any, labels: Any) -> float:
    """Area under the ROC curve; NaN (no error, no warning) when only one class is present."""
    p, y = check_pair(p_pos, labels)
    if y.min() == y.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def accuracy(p_pos: Any, labels: Any, threshold: float = 0.5) -> float:
    """Fraction of samples whose prediction ``p >= threshold`` equals the label."""
    return _one("accuracy", p_pos, labels, threshold)


def macro_f1(p_pos: Any, labels: Any, threshold: float = 0.5) -> float:
    """Mean of the two classes' F1 at `threshold` (scikit-learn ``average="macro"``)."""
    return _one("macro_f1", p_pos, labels, threshold)


def sensitivity(p_pos: Any, labels: Any, threshold: float = 0.5) -> float:
    """True-positive rate at `threshold`; NaN when there is no positive label."""
    return _one("sensitivity", p_pos, labels, threshold)


def specificity(p_pos: Any, labels: Any, threshold: float = 0.5) -> float:
    """True-negative rate at `threshold`; NaN when there is no negative label."""
    return _one("specificity", p_pos, labels, threshold)


def risk_coverage(p_pos: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk against coverage when abstaining on the least confident samples.

    Samples are kept in order of decreasing top-label confidence ``max(p, 1 - p)``; tied
    confidences are kept or abstained on together.

    Returns:
        ``(coverage, risk)``: fraction of samples kept and the error rate (prediction
        ``p >= 0.5``) among them, from the most confident group up to coverage 1.
    """
    p, y = check_pair(p_pos, labels)
    conf = np.maximum(p, 1 - p)
    order = np.argsort(-conf, kind="stable")
    errors = np.cumsum(((p[order] >= 0.5) != y[order]).astype(np.float64))
    last = np.r_[np.flatnonzero(np.diff(conf[order]) != 0), p.size - 1]
    kept = last + 1.0
    return kept / p.size, errors[last] / kept


def reliability_bins(p_pos: Any, labels: Any, n_bins: int = 15, *,
                     kind: str = "top-label") -> pd.DataFrame:
    """Per-bin statistics behind `ece` (same bins), for reliability diagrams.

    Returns:
        One row per bin with columns ``lower``, ``upper``, ``count``, ``confidence`` (mean
        confidence) and ``accuracy`` (mean outcome: correctness for ``top-label``, the
        class indicator otherwise); the means are NaN in empty bins.
    """
    if kind not in ECE_KINDS:
        raise CalibrationInputError(
            f"Argument 'kind' must be one of {', '.join(ECE_KINDS)}; got {kind!r}.")
    p, y = check_pair(p_pos, labels)
    n_bins = check_n_bins(n_bins)
    conf, outcome = confidence(p, y, kind)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = bin_index(conf, edges)
    count = np.bincount(bins, minlength=n_bins)
    return pd.DataFrame({
        "lower": edges[:-1], "upper": edges[1:], "count": count,
        "confidence": ratio(np.bincount(bins, conf, n_bins), count),
        "accuracy": ratio(np.bincount(bins, outcome, n_bins), count)})


# ---- reports -------------------------------------------------------------------------------


def binary_report(p_pos: Any, labels: Any, *, threshold: float = 0.5,
                  n_bins: int = 15) -> dict[str, float]:
    """Every metric of `METRIC_KEYS` for one set of predictions.

    Returns:
        ``{key: value}`` in `METRIC_KEYS` order; ``n`` is a float count, and ``auroc``,
        ``sensitivity`` or ``specificity`` are NaN when a class is absent.
    """
    p, y = check_pair(p_pos, labels)
    threshold, n_bins = check_threshold(threshold), check_n_bins(n_bins)
    report = {"n": float(p.size)}
    for key in METRIC_KEYS[1:]:
        report[key] = float(KERNELS[key](p[None], y[None], threshold, n_bins)[0])
    return report


def grouped_report(p_pos: Any, labels: Any, groups: Any, *, threshold: float = 0.5,
                   n_bins: int = 15) -> pd.DataFrame:
    """`binary_report` for all samples, then for each group (e.g. device) in sorted order.

    Args:
        p_pos: positive-class probabilities, shape (N,).
        labels: 0/1 labels, shape (N,).
        groups: group of each sample, shape (N,); values are shown as strings.

    Returns:
        A frame with column ``group`` (``"all"`` first) followed by `METRIC_KEYS`.

    Raises:
        CalibrationInputError: invalid inputs, a missing group, or a group named ``all``.
    """
    p, y = check_pair(p_pos, labels)
    g = as_numpy(groups)
    if g.ndim != 1 or g.size != p.size:
        raise CalibrationInputError(
            f"Argument 'groups' must be 1-D with one group per sample ({p.size}); got shape "
            f"{g.shape}.")
    missing = pd.isna(g)
    if missing.any():
        raise CalibrationInputError(
            f"Argument 'groups' has {int(missing.sum())} missing value(s), the first at index "
            f"{int(np.flatnonzero(missing)[0])}; give every sample a group.")
    try:
        names = np.unique(g)  # sorted by the original values, so 2 comes before 10
    except TypeError:  # mixed types (e.g. 3 and "a") do not compare: sort by their text
        g = g.astype(str)
        names = np.unique(g)
    if "all" in {str(name) for name in names}:
        raise CalibrationInputError(
            "Argument 'groups' contains a group named 'all', which is reserved for the row of "
            "all samples; rename that group.")
    rows = [{"group": "all", **binary_report(p, y, threshold=threshold, n_bins=n_bins)}]
    for name in names:
        mask = g == name
        rows.append({"group": str(name),
                     **binary_report(p[mask], y[mask], threshold=threshold, n_bins=n_bins)})
    return pd.DataFrame(rows, columns=["group", *METRIC_KEYS])


# ---- bootstrap -----------------------------------------------------------------------------

_PUBLIC = {ece: "ece", adaptive_ece: "adaptive_ece", nll: "nll", brier: "brier",
           auroc: "auroc", accuracy: "accuracy", macro_f1: "macro_f1",
           sensitivity: "sensitivity", specificity: "specificity"}
_MAX_BATCH_ELEMENTS = 2_000_000  # resamples x samples per vectorized chunk (~16 MB float64)


def bootstrap_ci(metric: str | Callable[[np.ndarray, np.ndarray], float], p_pos: Any,
                 labels: Any, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 threshold: float = 0.5, n_bins: int = 15) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a metric.

    Resamples of N samples are drawn with replacement. A metric named by a key of
    `METRIC_KEYS` (or given as one of this module's metric functions) is computed for
    many resamples at once; any other callable ``metric(p_pos, labels) -> float`` is called
    once per resample. Resamples where the metric is NaN (e.g. AUROC of a resample with
    one class) are left out of the percentiles.

    Args:
        metric: a name such as ``"ece"`` or a callable.
        p_pos: positive-class probabilities, shape (N,).
        labels: 0/1 labels, shape (N,).
        n_boot: number of resamples.
        alpha: the interval covers ``1 - alpha``.
        seed: seed of `numpy.random.default_rng`; the same seed gives the same interval.
        threshold: decision threshold for named metrics that need one.
        n_bins: bins of the named ECE metrics (``ece`` given as a function means
            top-label ECE with these bins).

    Returns:
        ``(low, high)``: the ``alpha/2`` and ``1 - alpha/2`` percentiles; ``(nan, nan)``
        when every resample gave NaN.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> p = rng.uniform(size=500); y = (rng.uniform(size=500) < p).astype(int)
        >>> low, high = bootstrap_ci("ece", p, y, n_boot=200)
        >>> 0 <= low <= high < 0.2
        True
    """
    p, y = check_pair(p_pos, labels)
    threshold, n_bins = check_threshold(threshold), check_n_bins(n_bins)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise CalibrationInputError(f"Argument 'n_boot' must be an integer >= 1; got {n_boot!r}.")
    if not isinstance(alpha, int | float | np.floating) or not 0 < alpha < 1:
        raise CalibrationInputError(f"Argument 'alpha' must be in (0, 1); got {alpha!r}.")
    name = next((key for fn, key in _PUBLIC.items() if fn is metric), metric)
    if not isinstance(name, str) and not callable(name):
        raise TypeError(f"Argument 'metric' must be a metric name or a callable; got {metric!r}.")
    if isinstance(name, str) and name not in KERNELS:
        raise CalibrationInputError(
            f"Unknown metric {name!r} for bootstrap_ci; use one of {', '.join(KERNELS)} or a "
            "callable metric(p_pos, labels) -> float.")
    rng = np.random.default_rng(seed)
    n = p.size
    values = np.empty(n_boot)
    chunk = max(1, _MAX_BATCH_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        if isinstance(name, str):
            values[start:start + len(idx)] = KERNELS[name](p[idx], y[idx], threshold, n_bins)
        else:
            values[start:start + len(idx)] = [float(name(p[i], y[i])) for i in idx]
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)
