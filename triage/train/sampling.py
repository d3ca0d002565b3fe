"""Which samples make up a training epoch: class-aware and/or device-balanced draws.

With both options on, every (class, device) cell that has samples gets the same share
within its class, and both classes the same share overall: a sample's probability is
``1/n_classes * 1/n_devices_in_its_class * 1/n_in_its_cell``. Balanced epochs draw with
replacement; with neither option an epoch is a shuffle (without replacement). The draw
depends only on ``(seed, epoch)``, so a resumed run repeats the epochs it would have seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from triage.errors import ConfigError
from triage.train.config import SamplingConfig

_STREAM = 0x5A4D  # separates the sampler's random stream from others seeded by (seed, epoch)


class EpochSampler(Sampler[int]):
    """A fixed list of dataset indices for one epoch.

    Attributes:
        indices: the indices in the order they are served.
        weights: the per-sample draw probabilities (sum 1); None for a plain shuffle.
    """

    def __init__(self, indices: np.ndarray, weights: np.ndarray | None) -> None:
        self.indices = [int(i) for i in indices]
        self.weights = weights

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def sample_weights(labels: Sequence[int], devices: Sequence[Hashable], *, class_aware: bool,
                   device_balanced: bool) -> np.ndarray | None:
    """Per-sample draw probabilities (sum 1), or None when no balancing is asked for.

    Example:
        >>> sample_weights([0, 0, 0, 1], ["a"] * 4, class_aware=True,
        ...                device_balanced=False).round(3).tolist()
        [0.167, 0.167, 0.167, 0.5]
    """
    labels = [int(y) for y in labels]
    devices = list(devices)
    if not (class_aware or device_balanced):
        return None
    # A sample's group: its class (class-aware) or everything; its cell: group x device.
    groups = labels if class_aware else [0] * len(labels)
    cells = list(zip(groups, devices if device_balanced else [0] * len(labels), strict=True))
    cell_size = Counter(cells)
    cells_per_group = Counter(group for group, _ in cell_size)
    n_groups = len(cells_per_group)
    weights = np.array([1.0 / (n_groups * cells_per_group[g] * cell_size[c])
                        for g, c in zip(groups, cells, strict=True)])
    return weights / weights.sum()


def make_sampler(labels: Sequence[int], devices: Sequence[Hashable], config: SamplingConfig,
                 *, seed: int, epoch: int = 0) -> EpochSampler:
    """The sampler of training epoch `epoch`.

    Args:
        labels: class of each training sample (0/1).
        devices: device group of each training sample (names or indices).
        config: ``class_aware``, ``device_balanced``, ``epoch_size`` (0 = ``len(labels)``).
        seed: the run's seed.
        epoch: the epoch number (0-based); each epoch draws anew.

    Returns:
        An `EpochSampler`; the same arguments give the same indices.

    Raises:
        ConfigError: no samples, or `labels` and `devices` of different lengths.
    """
    if len(labels) != len(devices):
        raise ConfigError(f"make_sampler: {len(labels)} labels but {len(devices)} device "
                          f"groups; every training sample needs both.")
    n = len(labels)
    if n == 0:
        raise ConfigError("The training split is empty: no samples to draw an epoch from.")
    size = config.epoch_size or n
    rng = np.random.default_rng([seed, epoch, _STREAM])
    weights = sample_weights(labels, devices, class_aware=config.class_aware,
                             device_balanced=config.device_balanced)
    if weights is None:
        repeats = -(-size // n)
        indices = np.concatenate([rng.permutation(n) for _ in range(repeats)])[:size]
    else:
        indices = rng.choice(n, size=size, replace=True, p=weights)
    return EpochSampler(indices, weights)
