"""Calibration: metrics with bootstrap intervals, temperature scaling, and figures."""

from triage.calibrate.inputs import CalibrationInputError
from triage.calibrate.metrics import (
    METRIC_KEYS,
    accuracy,
    adaptive_ece,
    auroc,
    binary_report,
    bootstrap_ci,
    brier,
    ece,
    grouped_report,
    macro_f1,
    nll,
    reliability_bins,
    risk_coverage,
    sensitivity,
    specificity,
)
from triage.calibrate.plots import (
    confusion_matrix_figure,
    per_group_bars,
    reliability_diagram,
    risk_coverage_curve,
)
from triage.calibrate.temperature import (
    apply_temperature,
    fit_temperature,
    probabilities,
    temperature_nll,
)

__all__ = [
    "METRIC_KEYS", "CalibrationInputError", "accuracy", "adaptive_ece", "apply_temperature",
    "auroc", "binary_report", "bootstrap_ci", "brier", "confusion_matrix_figure", "ece",
    "fit_temperature", "grouped_report", "macro_f1", "nll", "per_group_bars", "probabilities",
    "reliability_bins", "reliability_diagram", "risk_coverage", "risk_coverage_curve",
    "sensitivity", "specificity", "temperature_nll",
]
