"""Validation of the arrays that calibration functions take: probabilities, labels, logits."""

from __future__ import annotations

from typing import Any

import numpy as np

from triage.errors import TriageError


class CalibrationInputError(TriageError, ValueError):
    """Probabilities, labels, logits or an option given to `triage.calibrate` are invalid."""


def as_numpy(values: Any) -> np.ndarray:
    """`values` as a NumPy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    index = int(np.flatnonzero(bad)[0])
    return (f"{int(bad.sum())} value(s) are not; the first is {values[index].item()!r} at "
            f"index {index}")


def check_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """Return `labels` as a 1-D int64 array of 0/1.

    Args:
        labels: array-like of 0/1 (ints, floats equal to 0 or 1, or booleans).
        name: the argument name used in error messages.

    Raises:
        CalibrationInputError: not 1-D, empty, or holding a value other than 0 and 1.
    """
    array = as_numpy(labels)
    if array.ndim != 1:
        raise CalibrationInputError(
            f"Argument '{name}' must be 1-D (one label per sample); got shape {array.shape}.")
    if array.size == 0:
        raise CalibrationInputError(f"Argument '{name}' is empty; at least one sample is needed.")
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number):
        raise CalibrationInputError(
            f"Argument '{name}' must hold the numbers 0 and 1; got dtype {array.dtype}.")
    bad = (array != 0) & (array != 1)
    if bad.any():
        raise CalibrationInputError(
            f"Argument '{name}' must hold only 0 (negative) and 1 (positive), but "
            f"{_first_bad(array, bad)}.")
    return array.astype(np.int64)


def check_probabilities(p_pos: Any, name: str = "p_pos") -> np.ndarray:
    """Return `p_pos` as a 1-D float64 array of probabilities in [0, 1].

    Raises:
        CalibrationInputError: not 1-D, empty, non-numeric, NaN, or outside [0, 1].
    """
    array = as_numpy(p_pos)
    if array.ndim != 1:
        hint = " (pass the positive-class column, e.g. probabilities(logits))" \
            if array.ndim == 2 else ""
        raise CalibrationInputError(
            f"Argument '{name}' must be 1-D (one positive-class probability per sample); "
            f"got shape {array.shape}{hint}.")
    if array.size == 0:
        raise CalibrationInputError(f"Argument '{name}' is empty; at least one sample is needed.")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise CalibrationInputError(
            f"Argument '{name}' must hold numbers in [0, 1]; got dtype {array.dtype}.")
    array = array.astype(np.float64)
    bad = ~((array >= 0) & (array <= 1))  # catches NaN too
    if bad.any():
        raise CalibrationInputError(
            f"Argument '{name}' must hold probabilities in [0, 1], but {_first_bad(array, bad)} "
            "(pass probabilities, not logits: see triage.calibrate.probabilities).")
    return array


def check_pair(p_pos: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate probabilities and labels together (same length)."""
    p = check_probabilities(p_pos)
    y = check_labels(labels)
    if p.shape != y.shape:
        raise CalibrationInputError(
            f"Arguments 'p_pos' and 'labels' must have the same length; got {p.size} "
            f"probabilities and {y.size} labels.")
    return p, y


def check_logits(logits: Any, name: str = "logits") -> np.ndarray:
    """Return two-class `logits` as an (N, 2) float64 array of finite values.

    Raises:
        CalibrationInputError: not (N, 2), empty, or holding NaN or infinity.
    """
    array = as_numpy(logits)
    if array.ndim != 2 or array.shape[1] != 2:
        raise CalibrationInputError(
            f"Argument '{name}' must have shape (N, 2) (two-class logits); got shape "
            f"{array.shape}.")
    if array.shape[0] == 0:
        raise CalibrationInputError(f"Argument '{name}' is empty; at least one sample is needed.")
    if not np.issubdtype(array.dtype, np.number):
        raise CalibrationInputError(
            f"Argument '{name}' must hold numbers; got dtype {array.dtype}.")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise CalibrationInputError(
            f"Argument '{name}' must be finite; {int(bad.sum())} row(s) hold NaN or infinity, "
            f"the first at index {index}.")
    return array


def check_n_bins(n_bins: Any) -> int:
    """Return `n_bins` if it is an integer >= 1."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise CalibrationInputError(f"Argument 'n_bins' must be an integer >= 1; got {n_bins!r}.")
    return int(n_bins)


def check_threshold(threshold: Any) -> float:
    """Return `threshold` if it is a number in [0, 1]."""
    ok = isinstance(threshold, int | float | np.number) and not isinstance(threshold, bool)
    if not ok or not 0 <= threshold <= 1:
        raise CalibrationInputError(
            f"Argument 'threshold' must be a probability in [0, 1]; got {threshold!r}.")
    return float(threshold)
