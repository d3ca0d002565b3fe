"""Guarantee modes (`pac`, `marginal`), strata (`device`, `pooled`, `auto`), their labels
and the shift check that lets `auto` lend a device the pooled threshold.

The exact statements are in docs/calibration.md ("Guarantee modes").
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np


class Guarantee(StrEnum):
    """What a certified threshold promises (the ``guarantee:`` key of ``thresholds:``).

    `PAC`: P(miss rate > alpha) <= delta over the calibration draw (Clopper–Pearson,
    fixed-sequence). `MARGINAL`: E[miss rate] <= alpha over the calibration draw (split
    conformal).
    """

    PAC = "pac"
    MARGINAL = "marginal"


class Stratify(StrEnum):
    """Which calibration studies a device's threshold comes from (``stratify:``).

    `DEVICE`: the device's own (Mondrian). `POOLED`: every device's together; the
    guarantee is for the calibration split's device mix. `AUTO`: the device's own where it
    has enough, else the pooled threshold where the shift check does not reject, else none.
    """

    DEVICE = "device"
    POOLED = "pooled"
    AUTO = "auto"


#: Where a certified threshold came from (the part after the mode in a label).
SOURCE_DEVICE = "device"
SOURCE_POOLED = "pooled"


def low_label(guarantee: str, source: str, alpha: float, delta: float) -> str:
    """The worklist's ``guarantee`` text of a routine threshold.

    Example:
        >>> low_label("pac", "device", 0.01, 0.05), low_label("marginal", "pooled", 0.01, 0.05)
        ('pac/device a=0.01 d=0.05', 'marginal/pooled a=0.01')
    """
    if guarantee == Guarantee.PAC:
        return f"{guarantee}/{source} a={alpha:g} d={delta:g}"
    return f"{guarantee}/{source} a={alpha:g}"


def high_label(guarantee: str, source: str, *, ppv_target: float, delta: float,
               urgent_fpr: float) -> str:
    """The worklist's ``guarantee`` text of an urgent threshold.

    Example:
        >>> high_label("pac", "device", ppv_target=0.9, delta=0.05, urgent_fpr=0.05)
        'pac/device ppv=0.9 d=0.05'
        >>> high_label("marginal", "pooled", ppv_target=0.9, delta=0.05, urgent_fpr=0.05)
        'marginal/pooled fpr=0.05'
    """
    if guarantee == Guarantee.PAC:
        return f"{guarantee}/{source} ppv={ppv_target:g} d={delta:g}"
    return f"{guarantee}/{source} fpr={urgent_fpr:g}"


def label_parts(label: str, default: str = "pac") -> tuple[str, str]:
    """``(guarantee, source)`` of a label; ``(default, "device")`` for an empty one.

    Example:
        >>> label_parts("marginal/pooled a=0.01")
        ('marginal', 'pooled')
    """
    if not label:
        return default, SOURCE_DEVICE
    mode, _, rest = label.partition(" ")[0].partition("/")
    return mode, rest or SOURCE_DEVICE


def low_statement(guarantee: str, source: str, alpha: float, delta: float) -> str:
    """Plain words for a routine threshold's guarantee (the routine rule's reason).

    Example:
        >>> low_statement("pac", "device", 0.01, 0.05)
        'miss rate <= 0.01 with confidence 0.95'
        >>> low_statement("marginal", "pooled", 0.01, 0.05)
        'expected miss rate <= 0.01, pooled over the calibration devices'
    """
    text = (f"miss rate <= {alpha:g} with confidence {1 - delta:g}"
            if guarantee == Guarantee.PAC else f"expected miss rate <= {alpha:g}")
    return text + (", pooled over the calibration devices" if source == SOURCE_POOLED else "")


def high_statement(guarantee: str, source: str, *, ppv_target: float, delta: float,
                   urgent_fpr: float) -> str:
    """Plain words for an urgent threshold's guarantee (the urgent rule's reason).

    Example:
        >>> high_statement("marginal", "device", ppv_target=0.9, delta=0.05, urgent_fpr=0.05)
        'expected share of negatives routed urgent <= 0.05'
    """
    text = (f"PPV >= {ppv_target:g} with confidence {1 - delta:g}"
            if guarantee == Guarantee.PAC
            else f"expected share of negatives routed urgent <= {urgent_fpr:g}")
    return text + (", pooled over the calibration devices" if source == SOURCE_POOLED else "")


def shift_pvalue(device_scores: Any, other_scores: Any, *, lower: bool) -> float:
    """One-sided Mann–Whitney p-value that the device's scores run lower (or higher) than
    the other devices'.

    Args:
        device_scores: the device's calibration scores of one class.
        other_scores: the other devices' calibration scores of the same class.
        lower: True tests "device lower" (positives: a device whose positives score lower
            would be missed more); False tests "device higher" (negatives: more false
            urgents).

    Returns:
        The p-value (exact null distribution for small samples without ties, normal
        approximation otherwise; scipy's ``method="auto"``), or NaN when a side is empty.

    Example:
        >>> round(shift_pvalue([0.1, 0.2, 0.15], np.linspace(0.5, 0.9, 20), lower=True), 4)
        0.0006
    """
    from scipy.stats import mannwhitneyu

    a = np.asarray(device_scores, dtype=np.float64)
    b = np.asarray(other_scores, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(mannwhitneyu(a, b, alternative="less" if lower else "greater").pvalue)
