"""Layered augmentation: a weak and a strong tier drawn from one fixed pool of operators.

The pool (`triage.train.config.OPERATORS`, in the order the operators run):

- ``flip``: mirror one axis drawn uniformly (MONAI `Flip`);
- ``rotate``: in-plane rotation by up to ``rotate_deg`` degrees (MONAI `Rotate`, zeros
  outside, the padding value of cached volumes);
- ``elastic``: a smooth random displacement field (MONAI `Rand3DElastic`'s draws, smoothing
  kernel and resampling), its magnitude the displacement's standard deviation in voxels
  (`_displacement`: MONAI's own magnitude is a bare factor on a field of sd ~0.005);
- ``intensity``: affine jitter ``a * x + b``, ``a`` in ``1 ± intensity_scale``, ``b`` in
  ``± intensity_shift``;
- ``bias_field``: a smooth multiplicative field (MONAI `RandBiasField`);
- ``blur``: in-plane Gaussian smoothing (MONAI `GaussianSmooth`);
- ``noise``: white Gaussian noise of standard deviation up to ``noise_std``.

Every sample gets the weak tier, each operator with its probability in ``layered.weak``;
with probability ``p_strong`` it then gets the strong tier (``layered.strong``), whose
magnitudes are the weak ones times ``strong_scale``. Every draw comes from the caller's
generator (MONAI's random transforms from a seed drawn from it), so an epoch is the same
whatever the number of DataLoader workers. The info returned counts what was applied, per
tier and operator (`COUNT_NAMES`), which the training loop sums per epoch and
``train_model`` logs to MLflow as ``augment.<tier>.<operator>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.train.config import OPERATORS, LayeredAugmentConfig

TIERS = ("weak", "strong")
COUNT_NAMES = tuple(f"{tier}.{op}" for tier in TIERS for op in OPERATORS)


@dataclass(frozen=True)
class LayeredInfo:
    """What one call applied: ``operators[i]`` counts `COUNT_NAMES[i]` (0 or 1)."""

    operators: np.ndarray
    target_device: str | None = None


class LayeredAugmentation:
    """Training transform ``(array, sample, rng) -> (array, LayeredInfo)``.

    Args:
        config: the run's `LayeredAugmentConfig`.

    Example:
        >>> aug = LayeredAugmentation(LayeredAugmentConfig(enabled=True))
        >>> out, info = aug(np.zeros((8, 8, 4), np.float32), None, np.random.default_rng(0))
        >>> out.shape, int(info.operators.sum()) >= 0
        ((8, 8, 4), True)
    """

    def __init__(self, config: LayeredAugmentConfig) -> None:
        self.config = config
        self._monai: dict[str, Any] | None = None

    def _transforms(self) -> dict[str, Any]:
        """MONAI's random transforms, built on first use (importing MONAI is slow)."""
        if self._monai is None:
            from monai.transforms import Rand3DElastic, RandBiasField

            c = self.config
            self._monai = {}
            for tier, k in (("weak", 1.0), ("strong", c.strong_scale)):
                self._monai[f"{tier}.elastic"] = Rand3DElastic(
                    sigma_range=c.elastic_sigma,
                    magnitude_range=(c.elastic_magnitude[0] * k, c.elastic_magnitude[1] * k),
                    prob=1.0,
                    padding_mode="zeros")
                self._monai[f"{tier}.bias_field"] = RandBiasField(
                    coeff_range=(0.0, c.bias_coeff * k), prob=1.0)
        return self._monai

    def __call__(self, array: np.ndarray, sample: Any, rng: np.random.Generator
                 ) -> tuple[np.ndarray, LayeredInfo]:
        counts = np.zeros(len(COUNT_NAMES), dtype=np.int64)
        x = np.asarray(array, dtype=np.float32)
        if not self.config.enabled:
            return x, LayeredInfo(counts)
        tiers = [("weak", self.config.weak, 1.0)]
        if rng.random() < self.config.p_strong:
            tiers.append(("strong", self.config.strong, self.config.strong_scale))
        for tier, probabilities, scale in tiers:
            # One draw per pool operator whatever the tier lists: the draws of one operator
            # do not shift when another's probability changes.
            for op in OPERATORS:
                if rng.random() < probabilities.get(op, 0.0):
                    x = self._apply(op, tier, scale, x, rng)
                    counts[COUNT_NAMES.index(f"{tier}.{op}")] += 1
        return np.ascontiguousarray(x, dtype=np.float32), LayeredInfo(counts)

    def _apply(self, op: str, tier: str, k: float, x: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        c = self.config
        if op == "flip":
            return np.flip(x, axis=int(rng.integers(3)))
        if op == "intensity":
            gain = 1.0 + rng.uniform(-1, 1) * min(c.intensity_scale * k, 0.99)
            offset = rng.uniform(-1, 1) * c.intensity_shift * k
            return x * np.float32(gain) + np.float32(offset)
        if op == "noise":
            sd = rng.uniform(0, c.noise_std * k)
            return x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sd)
        if op == "rotate":
            from monai.transforms import Rotate

            angle = math.radians(rng.uniform(-1, 1) * c.rotate_deg * k)
            rotate = Rotate(angle=(0.0, 0.0, angle), keep_size=True, padding_mode="zeros")
            return _numpy(rotate(x[None]))  # type: ignore[arg-type]  # MONAI takes numpy
        if op == "blur":
            from monai.transforms import GaussianSmooth

            low, high = c.blur_sigma
            sigma = rng.uniform(low, high) * k
            return _numpy(GaussianSmooth(sigma=(sigma, sigma, 0.0))(x[None]))
        transform = self._transforms()[f"{tier}.{op}"]  # elastic, bias_field
        transform.set_random_state(seed=int(rng.integers(2 ** 31)))
        if op == "elastic":
            return _numpy(_elastic(transform, x[None]))
        return _numpy(transform(x[None]))

    def describe(self) -> dict[str, Any]:
        """Flat ``augmentation.<tier>.<operator>`` probabilities (every pool operator, 0 for
        those a tier leaves out) and ``augmentation.p_strong``, for MLflow parameters."""
        out: dict[str, Any] = {"augmentation.enabled": self.config.enabled,
                               "augmentation.p_strong": self.config.p_strong,
                               "augmentation.strong_scale": self.config.strong_scale}
        for tier in TIERS:
            probabilities = getattr(self.config, tier)
            for op in OPERATORS:
                out[f"augmentation.{tier}.{op}"] = probabilities.get(op, 0.0)
        return out


def _smooth(field: Any, sigma: float) -> tuple[Any, Any]:
    """MONAI's ``GaussianFilter(3, sigma, truncated=3.0)`` of a (C, X, Y, Z) tensor (zero
    padding), as one banded matrix product per axis, and the 1-D kernel.

    MONAI runs a grouped 3-D convolution per axis: about 30 of the 46 ms that its
    `Rand3DElastic` takes for one (96, 72, 20) volume on CPU; the products take about 2 ms.
    """
    import torch
    from monai.networks.layers.convutils import gaussian_1d

    kernel = gaussian_1d(torch.as_tensor(sigma, dtype=torch.float), truncated=3.0,
                         approx="erf")
    radius = (kernel.numel() - 1) // 2
    for axis in range(field.dim() - 1):
        at = torch.arange(field.shape[axis + 1])
        lag = at[None, :] - at[:, None] + radius  # band[i, j] = kernel[j - i + radius]
        band = torch.where((lag >= 0) & (lag <= 2 * radius),
                           kernel[lag.clamp(0, 2 * radius)], torch.zeros(()))
        field = torch.movedim(torch.tensordot(band, field, dims=([1], [axis + 1])), 0, axis + 1)
    return field, kernel


def _displacement(transform: Any, shape: tuple[int, ...]) -> Any:
    """A (3, X, Y, Z) displacement (voxels) drawn by a MONAI `Rand3DElastic` built with
    ``prob=1.0``: its uniform field smoothed with its kernel, scaled so that the drawn
    magnitude is the displacement's standard deviation along each axis.

    MONAI multiplies the smoothed field by the magnitude as it is. Smoothing a field of
    uniform(-1, 1) noise with sigma 5-7 voxels leaves a standard deviation of about 0.005,
    so a magnitude of 2 moved voxels by about 0.01 voxel (MONAI's examples use magnitudes
    of 100-200 for that reason). Here the magnitude is in voxels.
    """
    import math

    import torch

    transform.randomize(grid_size=shape)
    field, kernel = _smooth(torch.as_tensor(transform.rand_offset), float(transform.sigma))
    # Away from the borders each component is a kernel-weighted sum of independent
    # uniform(-1, 1) draws (variance 1/3): sd = sqrt(1/3) * (sum of squared weights)^(3/2).
    spread = math.sqrt(1.0 / 3.0) * float((kernel ** 2).sum()) ** 1.5
    return field * (float(transform.magnitude) / spread)


def _elastic(transform: Any, image: np.ndarray) -> Any:
    """A MONAI `Rand3DElastic` (``prob=1.0``) applied to a (1, X, Y, Z) image with its
    magnitude in voxels (`_displacement`): MONAI's draws, smoothing kernel, affine grid and
    resampling, the same values as ``transform(image)`` with the magnitude rescaled
    (tests/train/test_layered.py)."""
    from monai.transforms.utils import create_grid

    shape = tuple(int(n) for n in image.shape[1:])
    displacement = _displacement(transform, shape)
    grid = create_grid(spatial_size=shape, device=None, backend="torch")
    grid[:3] += displacement
    grid = transform.rand_affine_grid(grid=grid)
    return transform.resampler(image, grid, mode=transform.mode,
                               padding_mode=transform.padding_mode)


def _numpy(value: Any) -> np.ndarray:
    """A MONAI transform's (1, X, Y, Z) output as a float32 (X, Y, Z) array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)[0]
