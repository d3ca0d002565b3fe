"""Figures: each function writes a real PNG atomically, leaves pyplot alone, rejects bad input."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from triage.calibrate import (
    CalibrationInputError,
    confusion_matrix_figure,
    grouped_report,
    per_group_bars,
    reliability_diagram,
    risk_coverage_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000  # a drawn figure, not an empty canvas
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def predictions(make_predictions):
    p, y = make_predictions(600, seed=0, sharpen=2.0)
    groups = np.array(["ct-a", "ct-b", "mr-c"] * 200)
    return p, y, groups


def test_every_figure_is_a_png(predictions, tmp_path):
    p, y, groups = predictions
    out = tmp_path / "figures" / "nested"  # parents are created
    paths = [
        reliability_diagram(p, y, out / "reliability.png", title="test"),
        reliability_diagram(p ** 0.5, y, out / "before_after.png", before=p, n_bins=10),
        reliability_diagram(p, y, out / "class1.png", kind="class1"),
        confusion_matrix_figure(y, (p >= 0.5).astype(int), out / "confusion.png"),
        per_group_bars(grouped_report(p, y, groups), "ece", out / "ece.png"),
        risk_coverage_curve(p, y, str(out / "risk.png")),
    ]
    for path in paths:
        assert isinstance(path, Path)
        assert_png(path)


def test_per_group_bars_draws_nan_groups(predictions, tmp_path):
    p, y, groups = predictions
    y = y.copy()
    y[groups == "mr-c"] = 0  # AUROC of that group is NaN
    df = grouped_report(p, y, groups)
    assert_png(per_group_bars(df, "auroc", tmp_path / "auroc.png"))
    assert_png(per_group_bars(df[df["group"] != "all"], "brier", tmp_path / "no_all.png"))


def test_pyplot_state_is_untouched(predictions, tmp_path):
    import matplotlib.pyplot as plt

    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    p, y, _ = predictions
    reliability_diagram(p, y, tmp_path / "r.png")
    confusion_matrix_figure(y, y, tmp_path / "c.png")
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == figures


def test_overwrites_an_existing_file(predictions, tmp_path):
    p, y, _ = predictions
    path = tmp_path / "r.png"
    path.write_bytes(b"old")
    assert_png(reliability_diagram(p, y, path))


def test_bad_input(predictions, tmp_path):
    p, y, groups = predictions
    with pytest.raises(CalibrationInputError, match="does not end in '.png'"):
        reliability_diagram(p, y, tmp_path / "r.jpg")
    with pytest.raises(CalibrationInputError, match="same length"):
        reliability_diagram(p, y, tmp_path / "r.png", before=p[:10])
    with pytest.raises(CalibrationInputError, match="'kind' must be one of"):
        reliability_diagram(p, y, tmp_path / "r.png", kind="bogus")
    with pytest.raises(CalibrationInputError, match="probabilities in \\[0, 1\\]"):
        risk_coverage_curve(p * 3, y, tmp_path / "k.png")
    with pytest.raises(CalibrationInputError, match="'predicted' must hold only 0"):
        confusion_matrix_figure(y, p, tmp_path / "c.png")
    with pytest.raises(CalibrationInputError, match="'labels' and 'predicted' must have the same"):
        confusion_matrix_figure(y, y[:5], tmp_path / "c.png")
    df = grouped_report(p, y, groups)
    with pytest.raises(CalibrationInputError, match="no column 'eec'"):
        per_group_bars(df, "eec", tmp_path / "b.png")
    with pytest.raises(CalibrationInputError, match="no group other than 'all'"):
        per_group_bars(df[df["group"] == "all"], "ece", tmp_path / "b.png")
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        per_group_bars(df.to_dict(), "ece", tmp_path / "b.png")
    assert list(tmp_path.iterdir()) == []  # nothing written on failure
