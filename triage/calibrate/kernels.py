"""Metric kernels on batches: P (B, N) probabilities and Y (B, N) labels give (B,) values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# One row per bootstrap resample, or a single row for a point estimate, so both run the same
# code. Inputs are assumed valid (`triage.calibrate.inputs` checks them first).

Kernel = Callable[[np.ndarray, np.ndarray, float, int], np.ndarray]
"""``kernel(P, Y, threshold, n_bins) -> values``; kernels ignore what they do not need."""

NLL_EPS = 1e-15  # probabilities are clipped to [eps, 1 - eps] so that NLL stays finite


def confidence(P: np.ndarray, Y: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and 0/1 outcome that an ECE of `kind` compares (see `metrics.ece`)."""
    if kind == "top-label":
        return np.maximum(P, 1.0 - P), ((P >= 0.5) == Y).astype(np.float64)
    if kind == "class1":
        return P, Y.astype(np.float64)
    return 1.0 - P, (1 - Y).astype(np.float64)


def bin_index(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin k holds (edges[k], edges[k + 1]]; a confidence of exactly 0 goes to bin 0."""
    n_bins = edges.size - 1
    # ceil() finds the bin and the two comparisons fix rounding at the edges: equal to
    # searchsorted(edges, conf) - 1, and several times faster.
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    bins -= (conf <= edges[bins]) & (bins > 0)
    bins += conf > edges[bins + 1]
    return bins


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den == 0`` (without a warning)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _binned_ece(P: np.ndarray, Y: np.ndarray, n_bins: int, kind: str) -> np.ndarray:
    conf, outcome = confidence(P, Y, kind)
    bins = bin_index(conf, np.linspace(0.0, 1.0, n_bins + 1))
    flat = (np.arange(P.shape[0])[:, None] * n_bins + bins).ravel()
    size = P.shape[0] * n_bins
    gap = np.bincount(flat, outcome.ravel(), size) - np.bincount(flat, conf.ravel(), size)
    # sum_b n_b/N |acc_b - conf_b| = sum_b |sum(outcome in b) - sum(conf in b)| / N
    return np.abs(gap.reshape(-1, n_bins)).sum(axis=1) / P.shape[1]


def ece_top_label(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Top-label ECE, equal-width bins."""
    return _binned_ece(P, Y, n_bins, "top-label")


def ece_class1(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Positive-class ECE, equal-width bins."""
    return _binned_ece(P, Y, n_bins, "class1")


def ece_class0(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Negative-class ECE, equal-width bins."""
    return _binned_ece(P, Y, n_bins, "class0")


def adaptive_ece(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Top-label ECE with equal-count bins (sizes differ by <= 1; one sample per bin when
    N < n_bins); ties in confidence keep their sample order."""
    conf, outcome = confidence(P, Y, "top-label")
    order = np.argsort(conf, axis=1, kind="stable")
    conf = np.take_along_axis(conf, order, axis=1)
    outcome = np.take_along_axis(outcome, order, axis=1)
    n = P.shape[1]
    starts = np.unique(np.linspace(0, n, min(n_bins, n) + 1).astype(np.int64)[:-1])
    gap = np.add.reduceat(outcome, starts, axis=1) - np.add.reduceat(conf, starts, axis=1)
    return np.abs(gap).sum(axis=1) / n


def _counts(P: np.ndarray, Y: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    pred = P >= threshold
    pos = Y == 1
    return ((pred & pos).sum(axis=1), (pred & ~pos).sum(axis=1),
            (~pred & pos).sum(axis=1), (~pred & ~pos).sum(axis=1))


def accuracy(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Fraction of ``(P >= threshold) == Y``."""
    tp, _, _, tn = _counts(P, Y, threshold)
    return (tp + tn) / P.shape[1]


def sensitivity(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """TP / (TP + FN); NaN without positives."""
    tp, _, fn, _ = _counts(P, Y, threshold)
    return ratio(tp, tp + fn)


def specificity(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """TN / (TN + FP); NaN without negatives."""
    _, fp, _, tn = _counts(P, Y, threshold)
    return ratio(tn, tn + fp)


def macro_f1(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Mean F1 = 2TP / (2TP + FP + FN) of the classes present in labels or predictions."""
    tp, fp, fn, tn = _counts(P, Y, threshold)
    den1, den0 = 2 * tp + fp + fn, 2 * tn + fn + fp  # the negative class: TN plays TP
    f1 = np.nan_to_num(ratio(2 * tp, den1)) + np.nan_to_num(ratio(2 * tn, den0))
    # As scikit-learn's default label set: a class absent from both is left out of the mean.
    return f1 / ((den1 > 0).astype(np.int64) + (den0 > 0))


def auroc(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Mann-Whitney U / (n1 n0) with mid-ranks for ties; NaN for a row with one class."""
    from scipy.stats import rankdata  # here: scipy.stats takes ~0.7 s to import

    ranks = rankdata(P, axis=1)
    n1 = Y.sum(axis=1).astype(np.float64)
    n0 = P.shape[1] - n1
    u = (ranks * Y).sum(axis=1) - n1 * (n1 + 1) / 2
    return ratio(u, n1 * n0)


def nll(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Mean -log likelihood with P clipped to [NLL_EPS, 1 - NLL_EPS]."""
    P = np.clip(P, NLL_EPS, 1 - NLL_EPS)
    return -np.where(Y == 1, np.log(P), np.log1p(-P)).mean(axis=1)


def brier(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Mean (P - Y)^2."""
    return ((P - Y) ** 2).mean(axis=1)


def prevalence(P: np.ndarray, Y: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """Fraction of positive labels."""
    return Y.mean(axis=1)


KERNELS: dict[str, Kernel] = {
    "prevalence": prevalence, "accuracy": accuracy, "macro_f1": macro_f1, "auroc": auroc,
    "sensitivity": sensitivity, "specificity": specificity, "nll": nll, "brier": brier,
    "ece": ece_top_label, "ece_class0": ece_class0, "ece_class1": ece_class1,
    "adaptive_ece": adaptive_ece,
}
"""Kernel of every key of `metrics.METRIC_KEYS` except ``n``, in that order."""
