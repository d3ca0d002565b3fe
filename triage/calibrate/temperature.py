"""Temperature scaling (Guo et al. 2017): one scalar T that divides the logits to calibrate them.

For two-class logits ``z`` only the difference ``d = z[:, 1] - z[:, 0]`` matters:
``softmax(z / T)[:, 1] = sigmoid(d / T)``. The NLL is convex in ``1 / T``, so a bounded
scalar search over ``log T`` finds the global minimum within the bounds; it is
deterministic and needs no gradient. Dividing by T > 0 keeps every prediction's sign, so
accuracy and AUROC do not change.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from triage.calibrate.inputs import (
    CalibrationInputError,
    as_numpy,
    check_labels,
    check_logits,
)

log = logging.getLogger(__name__)

# Bounds of the fitted temperature. Separable calibration data drives the unbounded optimum
# to T -> 0 (ever sharper) and labels unrelated to the logits drive it to T -> inf; a fit that
# lands on a bound is logged as a warning.
T_MIN = 0.05
T_MAX = 20.0


def _check_temperature(T: Any) -> float:
    ok = isinstance(T, int | float | np.number) and not isinstance(T, bool)
    if not ok or not math.isfinite(T) or T <= 0:
        raise CalibrationInputError(f"Argument 'T' (temperature) must be a finite number > 0; "
                                    f"got {T!r}.")
    return float(T)


def temperature_nll(logits: Any, labels: Any, T: float = 1.0) -> float:
    """Mean NLL of ``softmax(logits / T)``, computed stably from the logits.

    Args:
        logits: two-class logits, shape (N, 2).
        labels: 0/1 labels, shape (N,).
        T: temperature > 0.
    """
    z, y = _check_inputs(logits, labels)
    return _nll(_signed_margin(z, y), _check_temperature(T))


def _check_inputs(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = check_logits(logits)
    y = check_labels(labels)
    if y.size != z.shape[0]:
        raise CalibrationInputError(
            f"Arguments 'logits' and 'labels' must have the same number of samples; got "
            f"{z.shape[0]} rows of logits and {y.size} labels.")
    return z, y


def _signed_margin(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(z_true - z_other)``: positive where the logits favour the true class."""
    return (z[:, 1] - z[:, 0]) * (2 * y - 1)


def _nll(margin: np.ndarray, temperature: float) -> float:
    # -log sigmoid(m / T) = log(1 + exp(-m / T)), exact for huge |m| via logaddexp.
    return float(np.logaddexp(0.0, -margin / temperature).mean())


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature T in [`T_MIN`, `T_MAX`] that minimizes the NLL of ``softmax(z / T)``.

    Fit it on held-out calibration data, never on the training split.

    Args:
        logits: two-class logits, shape (N, 2) (NumPy array, list or CPU/GPU torch tensor).
        labels: 0/1 labels, shape (N,).

    Returns:
        The fitted temperature; > 1 softens over-confident logits, < 1 sharpens.

    Raises:
        CalibrationInputError: logits not (N, 2) or not finite, labels not 0/1, or
            different lengths.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> d = rng.normal(0, 4, 5000)
        >>> y = (rng.uniform(size=5000) < 1 / (1 + np.exp(-d / 2))).astype(int)
        >>> round(fit_temperature(np.stack([np.zeros_like(d), d], 1), y), 1)
        2.0
    """
    z, y = _check_inputs(logits, labels)
    margin = _signed_margin(z, y)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    if _nll(margin, T_MIN) == _nll(margin, T_MAX):
        # Logits so large that every term under- or overflows to the same value: the NLL is
        # flat, so leave the logits unchanged.
        log.warning("The NLL of the %d calibration samples is the same at every temperature "
                    "(logits all equal, or too large to tell apart); using T = 1.", y.size)
        return 1.0
    result = minimize_scalar(lambda log_t: _nll(margin, math.exp(log_t)), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-7, "maxiter": 500})
    # Bounded Brent never evaluates the end points; compare them explicitly.
    temperature = min((float(math.exp(result.x)), T_MIN, T_MAX), key=lambda t: _nll(margin, t))
    if math.isclose(temperature, T_MIN, rel_tol=1e-3) or math.isclose(temperature, T_MAX,
                                                                       rel_tol=1e-3):
        log.warning(
            "Fitted temperature %.3g is at its bound [%g, %g]: the %d calibration samples are "
            "(nearly) separable by the logits or unrelated to them; check the calibration "
            "split.", temperature, T_MIN, T_MAX, y.size)
    return temperature


def apply_temperature(logits: Any, T: float) -> np.ndarray:
    """``logits / T`` as a float64 NumPy array (any shape).

    Raises:
        CalibrationInputError: `T` is not a finite number > 0.
    """
    t = _check_temperature(T)
    return as_numpy(logits).astype(np.float64) / t


def probabilities(logits: Any, T: float = 1.0) -> np.ndarray:
    """Positive-class probability ``softmax(logits / T)[:, 1]``, shape (N,).

    Computed as ``sigmoid((z1 - z0) / T)``, which neither overflows nor loses precision for
    huge logits.

    Raises:
        CalibrationInputError: logits not (N, 2) or not finite, or a bad `T`.
    """
    z = check_logits(logits)
    return expit((z[:, 1] - z[:, 0]) / _check_temperature(T))
