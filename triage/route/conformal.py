"""Split-conformal routing thresholds: expected miss rate <= alpha, expected false-urgent rate
<= beta, from order statistics of the calibration scores.

The statements, and the exchangeability they rest on, are in docs/calibration.md
("Marginal guarantee: split conformal").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def marginal_rank(n: int, alpha: float) -> int:
    """``floor(alpha * (n + 1))``: the rank of the calibration score used as threshold.

    0 means that `n` scores are too few for `alpha` (no threshold).

    Example:
        >>> marginal_rank(99, 0.01), marginal_rank(98, 0.01), marginal_rank(300, 0.01)
        (1, 0, 3)
    """
    return math.floor(alpha * (n + 1) + 1e-9)


def marginal_needed(alpha: float) -> int:
    """Fewest calibration scores with which a conformal threshold exists: ``ceil(1/alpha - 1)``.

    Example:
        >>> marginal_needed(0.01), marginal_needed(0.05), marginal_needed(0.1)
        (99, 19, 9)
    """
    n = max(math.ceil(1.0 / alpha - 1.0 - 1e-9), 1)
    while marginal_rank(n, alpha) < 1:  # guard the float edge
        n += 1
    return n


def conformal_low(scores_pos: Any, alpha: float) -> tuple[float | None, int, float]:
    """Routine threshold from calibration positives: the ``k``-th smallest score.

    With ``k = floor(alpha (n + 1))`` and ``t = s_(k)``, a new positive exchangeable with the
    `n` calibration positives has ``P(p < t) <= k / (n + 1) <= alpha`` (equality in the first
    when scores have no ties).

    Args:
        scores_pos: calibrated probabilities of the calibration positives.
        alpha: tolerated expected miss rate.

    Returns:
        ``(t_low, misses, bound)``: the threshold (None when ``k == 0``), the calibration
        positives strictly below it, and the bound ``k / (n + 1)`` (1.0 when no threshold).

    Example:
        >>> conformal_low(np.arange(1, 100) / 100, 0.01)
        (0.01, 0, 0.01)
    """
    scores = np.sort(np.asarray(scores_pos, dtype=np.float64))
    k = marginal_rank(scores.size, alpha)
    if k < 1:
        return None, 0, 1.0
    t = float(scores[k - 1])
    return t, int(np.searchsorted(scores, t, side="left")), k / (scores.size + 1)


def conformal_high(scores_neg: Any, beta: float) -> tuple[float | None, float]:
    """Urgent threshold from calibration negatives, just above their ``j``-th smallest score.

    With ``j = ceil((1 - beta)(m + 1))`` and urgent meaning ``p > r_(j)`` (the returned
    threshold is the next float above ``r_(j)``, so ``p >= t`` says the same), a new negative
    exchangeable with the `m` calibration negatives is routed urgent with probability
    ``(m + 1 - j) / (m + 1) <= beta`` at most.

    Returns:
        ``(t_high, bound)``: the threshold (None when ``j > m``, too few negatives) and the
        bound ``(m + 1 - j) / (m + 1)`` (1.0 when no threshold).

    Example:
        >>> t, bound = conformal_high(np.arange(1, 20) / 20, 0.05)
        >>> t > 0.95, bound
        (True, 0.05)
    """
    scores = np.sort(np.asarray(scores_neg, dtype=np.float64))
    m = scores.size
    j = m + 1 - marginal_rank(m, beta)  # = ceil((1 - beta)(m + 1)) up to float noise
    if j > m:
        return None, 1.0
    return float(np.nextafter(scores[j - 1], np.inf)), (m + 1 - j) / (m + 1)
