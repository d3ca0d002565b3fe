"""How far a study's CT intensities are from every device the model was trained on.

A deliberately simple out-of-distribution signal for the rules (docs/worklist.md). Ingest
measures each CT series' body HU (voxels above -500 HU, on up to 16 slices:
`triage.preprocess.stats`), and the bundle carries the same statistics pooled over the
training split per device group. For a training device ``d`` with body-HU mean ``m_d`` and
standard deviation ``s_d`` and median image noise ``n_d`` (`estimate_noise_hu`, one
estimate per training volume), and the study's ``m``, ``s`` and ``n``::

    z_d = sqrt(((m - m_d) / s_d) ** 2 + ((s - s_d) / s_d) ** 2
               + (ln(n / n_d) / ln(NOISE_DOUBLING)) ** 2)

and ``input_distance = min_d z_d``: 0 for a study that looks like some training device,
about 0.3 for a 100 HU shift of a device whose body HU spreads 300 HU (a miscalibrated
scanner), 1 for twice (or half) the device's noise, larger for a different kind of image.
The body-HU terms barely see image noise (its SD of tens of HU vanishes beside the 300 HU
body spread), hence the third term on a log scale: noise is a ratio-scale quantity, and the
estimate's scatter between studies of one device (a few per cent) adds only ~0.05-0.1.
Statistics without a noise estimate (older bundles or study stats, too little soft tissue
to measure it) drop the noise term for that pair and keep the first two. It is None where
it cannot be measured (non-CT, no statistics recorded, an empty body mask).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

#: The noise ratio that counts as one unit of distance (like one body-HU SD of shift).
NOISE_DOUBLING = 2.0


def _moments(stats: dict[str, Any]) -> list[tuple[float, float, float | None]]:
    """(mean, std, median noise or None) of body HU of each device group in a
    `DeviceStatsAccumulator` dict."""
    from triage.preprocess.stats import DeviceStatsAccumulator

    acc = DeviceStatsAccumulator.from_dict(stats)
    out = []
    for device in acc.devices.values():
        if device.n_voxels and math.isfinite(device.std) and device.std > 0:
            noise = [float(n) for n in device.noise_hu
                     if isinstance(n, (int, float)) and math.isfinite(n) and n > 0]
            out.append((device.mean, device.std, statistics.median(noise) if noise else None))
    return out


def _distance(study: tuple[float, float, float | None],
              train: tuple[float, float, float | None]) -> float:
    (mean, std, noise), (m, s, n) = study, train
    if noise is None or n is None:
        return math.hypot((mean - m) / s, (std - s) / s)
    return math.hypot((mean - m) / s, (std - s) / s,
                      math.log(noise / n) / math.log(NOISE_DOUBLING))


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
    return min(_distance(study[0], device) for device in train)
