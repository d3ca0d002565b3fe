"""How far a study's CT intensities are from every device the model was trained on.

A deliberately simple out-of-distribution signal for the rules (docs/worklist.md). Ingest
measures each CT series' body HU (voxels above -500 HU, on up to 16 slices:
`triage.preprocess.stats`), and the bundle carries the same statistics pooled over the
training split per device group. For a training device ``d`` with body-HU mean ``m_d`` and
standard deviation ``s_d``, and the study's ``m`` and ``s``::

    z_d = sqrt(((m - m_d) / s_d) ** 2 + ((s - s_d) / s_d) ** 2)

and ``input_distance = min_d z_d``: 0 for a study that looks like some training device,
about 0.3 for a 100 HU shift of a device whose body HU spreads 300 HU (a miscalibrated
scanner), larger for a different kind of image. It is None where it cannot be measured
(non-CT, no statistics recorded, an empty body mask).
"""

from __future__ import annotations

import math
from typing import Any


def _moments(stats: dict[str, Any]) -> list[tuple[float, float]]:
    """(mean, std) of body HU of each device group in a `DeviceStatsAccumulator` dict."""
    from triage.preprocess.stats import DeviceStatsAccumulator

    acc = DeviceStatsAccumulator.from_dict(stats)
    out = []
    for device in acc.devices.values():
        if device.n_voxels and math.isfinite(device.std) and device.std > 0:
            out.append((device.mean, device.std))
    return out


def input_distance(study_stats: dict[str, Any] | None, train_stats: dict[str, Any] | None
                   ) -> float | None:
    """Distance of one study's HU statistics to the nearest training device (see above).

    Args:
        study_stats: the study's statistics as ingest returns them
            (`StudyOutcome.device_stats`, a `DeviceStatsAccumulator.to_dict()`).
        train_stats: ``ModelBundle.device_stats``.

    Returns:
        The distance (>= 0), or None when either side has no usable statistics.

    Example:
        >>> from triage.preprocess.stats import DeviceStatsAccumulator
        >>> import numpy as np
        >>> acc = DeviceStatsAccumulator()
        >>> acc.add_array(np.linspace(-400, 400, 64 ** 3).reshape(64, 64, 64),
        ...               np.ones(3), "acme")
        >>> input_distance(acc.to_dict(), acc.to_dict())
        0.0
    """
    if not study_stats or not train_stats:
        return None
    try:
        study, train = _moments(study_stats), _moments(train_stats)
    except (KeyError, TypeError, ValueError):
        return None
    if not study or not train:
        return None
    mean, std = study[0]
    return min(math.hypot((mean - m) / s, (std - s) / s) for m, s in train)
