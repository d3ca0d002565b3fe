"""The calibration score reference a bundle carries for monitoring.

At training, `score_reference` summarizes the calibrated probabilities of the calibration
split per device group (and ``all``): a histogram on `triage.monitor.record.SCORE_BINS`
plus the mean and standard deviation of the logit of the score, and the bundle stores it
as ``ModelBundle.score_reference``. Bundles made before this existed have none: monitoring
then uses the first runs of the window as the reference (docs/monitoring.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from triage.monitor.detect import logit
from triage.monitor.record import SCORE_BINS, score_histogram

#: Pooled over every device group.
ALL = "all"


def _entry(scores: np.ndarray) -> dict[str, Any]:
    z = logit(scores)
    return {"n": int(scores.size), "hist": score_histogram(scores),
            "logit_mean": round(float(z.mean()), 6) if z.size else None,
            "logit_std": round(float(z.std()), 6) if z.size else None}


def score_reference(p: Sequence[float] | np.ndarray, groups: Sequence[str]
                    ) -> dict[str, Any]:
    """The reference of calibrated probabilities `p` whose device groups are `groups`.

    Example:
        >>> ref = score_reference([0.1, 0.9], ["a", "b"])
        >>> ref["groups"]["all"]["n"], sorted(ref["groups"])
        (2, ['a', 'all', 'b'])
    """
    scores = np.asarray(p, dtype=np.float64)
    names = np.asarray([str(g) for g in groups])
    out = {ALL: _entry(scores)} if scores.size else {}
    for name in sorted(set(names.tolist())):
        out[name] = _entry(scores[names == name])
    return {"bins": list(SCORE_BINS), "groups": out}


def reference_for(bundle_reference: dict[str, Any] | None, device_group: str
                  ) -> dict[str, Any] | None:
    """The bundle's reference entry for `device_group` (None when it has none)."""
    if not bundle_reference or list(bundle_reference.get("bins", [])) != list(SCORE_BINS):
        return None
    return bundle_reference.get("groups", {}).get(device_group)
