"""Calibration figures written as PNG files: reliability, confusion, per-group and risk-coverage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from triage.calibrate.inputs import CalibrationInputError, check_labels, check_n_bins, check_pair
from triage.calibrate.metrics import ECE_KINDS, ece, reliability_bins, risk_coverage
from triage.io import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Figures are built on `Figure` with an Agg canvas, never through pyplot: nothing changes
# the backend or the current figure of a caller who uses pyplot, and nothing leaks.

DPI = 120
AFTER_COLOR = "#1f77b4"
BEFORE_COLOR = "#d62728"


def _figure(**kwargs: Any) -> Figure:
    """A new figure (matplotlib is imported here, on first use: about 0.3 s that a run
    which draws nothing does not pay)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig: Figure, path: Path | str) -> Path:
    """Render `fig` to `path` as a PNG, atomically, and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return path


def _check_path(path: Path | str) -> Path:
    if not isinstance(path, str | Path):
        raise TypeError(f"Argument 'path' must be a str or Path; got {type(path).__name__}.")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CalibrationInputError(
            f"Figures are written as PNG, but path {str(path)!r} does not end in '.png'; "
            "give it that suffix.")
    return path


def reliability_diagram(p_pos: Any, labels: Any, path: Path | str, *, n_bins: int = 15,
                        title: str = "", before: Any = None,
                        kind: str = "top-label") -> Path:
    """Accuracy per confidence bin against the diagonal, with the samples per bin below.

    Args:
        p_pos: positive-class probabilities (after calibration), shape (N,).
        labels: 0/1 labels, shape (N,).
        path: the ``.png`` file to write (parent folders are created).
        n_bins: equal-width bins, as in `triage.calibrate.metrics.ece`.
        title: figure title.
        before: optional probabilities of the same samples before calibration, drawn as a
            second, outlined series.
        kind: ``top-label`` (confidence ``max(p, 1 - p)`` vs. accuracy) or ``class1`` /
            ``class0`` (a class's probability vs. the fraction of that class).

    Returns:
        `path`.

    Raises:
        CalibrationInputError: invalid probabilities or labels, `before` of another length,
            an unknown `kind`, or a path not ending in ``.png``.
    """
    path = _check_path(path)
    if kind not in ECE_KINDS:
        raise CalibrationInputError(
            f"Argument 'kind' must be one of {', '.join(ECE_KINDS)}; got {kind!r}.")
    p, y = check_pair(p_pos, labels)
    n_bins = check_n_bins(n_bins)
    series = [("calibrated" if before is not None else "model", p, AFTER_COLOR)]
    if before is not None:
        p_before, _ = check_pair(before, y)
        series.insert(0, ("before", p_before, BEFORE_COLOR))

    fig = _figure(figsize=(6, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = 1.0 / n_bins
    for i, (name, probs, color) in enumerate(series):
        bins = reliability_bins(probs, y, n_bins, kind=kind)
        filled = bins["count"] > 0
        centers = ((bins["lower"] + bins["upper"]) / 2)[filled]
        value = ece(probs, y, n_bins, kind=kind)
        outlined = name == "before"
        top.bar(centers, bins["accuracy"][filled], width=width * 0.95, label=f"{name} "
                f"(ECE {100 * value:.1f}%)", color="none" if outlined else color,
                edgecolor=color, linewidth=1.5 if outlined else 0.5, alpha=1 if outlined else 0.7,
                zorder=3 if outlined else 2)
        offset = (i - (len(series) - 1) / 2) * width * 0.45
        bottom.bar(centers + offset, bins["count"][filled], width=width * 0.45, color=color,
                   alpha=0.7, label=name)
        if not outlined:
            for x, acc, count in zip(centers, bins["accuracy"][filled], bins["count"][filled],
                                     strict=True):
                top.annotate(str(int(count)), (x, acc), textcoords="offset points",
                             xytext=(0, 2), ha="center", fontsize=7, color="0.3")
    low = np.floor(0.5 * n_bins) / n_bins if kind == "top-label" else 0.0
    top.plot([low, 1], [low, 1], ls="--", color="0.4", lw=1, label="perfect calibration")
    top.set_xlim(low, 1)
    top.set_ylim(0, 1.05)
    what = "confidence max(p, 1-p)" if kind == "top-label" else f"predicted P({kind})"
    top.set_ylabel("accuracy" if kind == "top-label" else f"fraction {kind}")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title or f"Reliability ({kind}, {n_bins} bins, N={p.size})")
    bottom.set_xlabel(what)
    bottom.set_ylabel("samples")
    if len(series) > 1:
        bottom.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix_figure(labels: Any, predicted: Any, path: Path | str, *,
                            title: str = "") -> Path:
    """2 x 2 confusion matrix with counts and the share of each true class (row).

    Args:
        labels: true 0/1 labels, shape (N,).
        predicted: predicted 0/1 labels, shape (N,) (e.g. ``p_pos >= threshold``).
        path: the ``.png`` file to write.
        title: figure title.

    Returns:
        `path`.

    Raises:
        CalibrationInputError: labels or predictions not 0/1, different lengths, or a
            path not ending in ``.png``.
    """
    path = _check_path(path)
    y = check_labels(labels)
    pred = check_labels(predicted, name="predicted")
    if y.size != pred.size:
        raise CalibrationInputError(
            f"Arguments 'labels' and 'predicted' must have the same length; got {y.size} and "
            f"{pred.size}.")
    matrix = np.bincount(2 * y + pred, minlength=4).reshape(2, 2)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)

    fig = _figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count}\n{100 * share[i, j]:.1f}%", ha="center", va="center",
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks([0, 1], ["negative", "positive"])
    ax.set_yticks([0, 1], ["negative", "positive"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"Confusion matrix (N={y.size})")
    fig.tight_layout()
    return _save(fig, path)


def per_group_bars(df: pd.DataFrame, metric: str, path: Path | str, *, title: str = "") -> Path:
    """One bar per group of a `grouped_report` frame; the ``all`` row is a horizontal line.

    Args:
        df: frame with a ``group`` column and a `metric` column (`grouped_report`'s output);
            an ``n`` column, when present, labels each bar with its sample count.
        metric: the column to draw, e.g. ``"ece"`` or ``"auroc"``; NaN bars read "n/a".
        path: the ``.png`` file to write.
        title: figure title.

    Returns:
        `path`.

    Raises:
        CalibrationInputError: `df` lacks the ``group`` or `metric` column or has no group
            other than ``all``, or a path not ending in ``.png``.
    """
    path = _check_path(path)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Argument 'df' must be a pandas DataFrame; got {type(df).__name__}.")
    for column in ("group", metric):
        if column not in df.columns:
            raise CalibrationInputError(
                f"The frame has no column {column!r}; expected the output of grouped_report, "
                f"whose columns are: {', '.join(map(str, df.columns))}.")
    is_all = df["group"].astype(str) == "all"
    groups = df[~is_all]
    if groups.empty:
        raise CalibrationInputError(
            "The frame has no group other than 'all'; nothing to draw per group.")
    values = pd.to_numeric(groups[metric], errors="coerce").to_numpy(dtype=float)
    names = groups["group"].astype(str).tolist()
    if "n" in groups.columns:
        names = [f"{name}\nn={int(n)}" for name, n in zip(names, groups["n"], strict=True)]

    fig = _figure(figsize=(max(4.0, 0.8 * len(names) + 2), 4))
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x, np.nan_to_num(values), color=AFTER_COLOR, alpha=0.8)
    finite = values[np.isfinite(values)]
    top = finite.max() if finite.size else 1.0
    for xi, value in zip(x, values, strict=True):
        text = "n/a" if np.isnan(value) else f"{value:.3g}"
        ax.annotate(text, (xi, 0 if np.isnan(value) else value), textcoords="offset points",
                    xytext=(0, 2), ha="center", fontsize=8)
    if is_all.any():
        overall = float(pd.to_numeric(df.loc[is_all, metric], errors="coerce").iloc[0])
        if np.isfinite(overall):
            ax.axhline(overall, ls="--", color="0.2", lw=1, label=f"all: {overall:.3g}")
            ax.legend(fontsize=8)
            top = max(top, overall)
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per group")
    fig.tight_layout()
    return _save(fig, path)


def risk_coverage_curve(p_pos: Any, labels: Any, path: Path | str, *, title: str = "") -> Path:
    """Selective risk (error rate of the kept samples) against coverage (fraction kept) when
    abstaining on the least confident samples first (`metrics.risk_coverage`).

    Args:
        p_pos: positive-class probabilities, shape (N,).
        labels: 0/1 labels, shape (N,).
        path: the ``.png`` file to write.
        title: figure title.

    Returns:
        `path`.

    Raises:
        CalibrationInputError: invalid probabilities or labels, or a path not ending in
            ``.png``.
    """
    path = _check_path(path)
    p, y = check_pair(p_pos, labels)
    coverage, risk = risk_coverage(p, y)
    fig = _figure(figsize=(5.5, 4))
    ax = fig.subplots()
    ax.step(np.r_[0.0, coverage], np.r_[risk[0], risk], where="pre", color=AFTER_COLOR,
            label="selective risk")
    ax.axhline(risk[-1], ls="--", color="0.4", lw=1, label=f"no abstention: {risk[-1]:.3g}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(float(risk.max()) * 1.1, 0.01))
    ax.set_xlabel("coverage (fraction of studies the model decides)")
    ax.set_ylabel("risk (error rate among them)")
    ax.legend(fontsize=8)
    ax.set_title(title or f"Risk-coverage (N={p.size})")
    fig.tight_layout()
    return _save(fig, path)
