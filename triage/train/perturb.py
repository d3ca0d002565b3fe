"""Device-grouped domain perturbation: re-render a training volume with another device's look.

With probability ``p_transfer`` a volume of training device A is given the appearance of
another training device B (`triage.train.appearance.Appearance`), in this order:

1. **intensity**: piecewise-linear map of A's landmarks onto B's (Nyul-Udupa), anchored
   at the air floor (A's floor -> B's) and continued with slope 1 above the top landmark;
2. **resolution**: when B is blurrier, an in-plane blur whose variance is
   ``resolution_B² - resolution_A²`` (`blur_kernel`), so the result has B's resolution;
3. **noise**: white Gaussian noise in the body, of standard deviation
   ``sqrt(noise_B² - (slope * gain * noise_A)²)`` when positive, where ``slope`` is the
   intensity map's interquartile slope (it scales A's noise) and ``gain`` the factor by
   which the blur of step 2 lowered it (`noise_gain`).

Then, each with its own probability, MONAI's scanner artefacts: RandBiasField,
RandAdjustContrast (gamma), RandGaussianNoise, RandGaussianSmooth (in-plane). Every random
draw comes from the caller's generator (MONAI's from a seed drawn from it), so the same
generator state gives the same output. The result is clipped to ``value_range``.
docs/perturbation.md describes the method and its parameters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from triage.data.dataset import Sample
from triage.train.appearance import LANDMARK_QUANTILES, Appearance, blur_kernel, noise_gain
from triage.train.config import PerturbConfig

ARTEFACTS = ("bias_field", "gamma", "noise", "smooth")
_IQR = (LANDMARK_QUANTILES.index(0.25), LANDMARK_QUANTILES.index(0.75))
_FAR = 1.0e3  # the intensity map's last knot, slope 1 beyond the top landmark


@dataclass(frozen=True)
class PerturbInfo:
    """What one call did: the sample's device, the device it was rendered as (None when
    not transferred) and the artefacts applied, in order (names from `ARTEFACTS`)."""

    source_device: str
    target_device: str | None
    artefacts: tuple[str, ...]


@dataclass(frozen=True)
class _Transfer:
    """The precomputed steps that render device A as device B."""

    knots: tuple[np.ndarray, np.ndarray] | None
    kernel: np.ndarray | None
    noise_sd: float


def _plan(a: Appearance, b: Appearance, config: PerturbConfig) -> _Transfer:
    knots, slope = None, 1.0
    if config.intensity:
        xp = np.array([a.floor, *a.landmarks, a.landmarks[-1] + _FAR])
        fp = np.array([b.floor, *b.landmarks, b.landmarks[-1] + _FAR])
        # np.interp needs increasing knots: nudge ties (a constant quantile) apart
        xp = xp + np.arange(xp.size) * 1e-7
        knots = (xp, fp)
        spread_a = a.landmarks[_IQR[1]] - a.landmarks[_IQR[0]]
        spread_b = b.landmarks[_IQR[1]] - b.landmarks[_IQR[0]]
        slope = spread_b / spread_a if spread_a > 0 else 1.0
    kernel, gain = None, 1.0
    if (config.resolution and math.isfinite(a.resolution_sigma)
            and math.isfinite(b.resolution_sigma) and b.resolution_sigma > a.resolution_sigma):
        kernel = blur_kernel(b.resolution_sigma ** 2 - a.resolution_sigma ** 2)
        kernel = kernel if kernel.size > 1 else None
        gain = noise_gain(kernel) if kernel is not None else 1.0
    noise_sd = 0.0
    if config.noise and math.isfinite(a.noise_sigma) and math.isfinite(b.noise_sigma):
        left = slope * gain * a.noise_sigma
        noise_sd = math.sqrt(max(b.noise_sigma ** 2 - left ** 2, 0.0))
    return _Transfer(knots, kernel, noise_sd)


def _param_name(text: str) -> str:
    """A device group as an MLflow parameter-key part (letters, digits, - and _)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class DevicePerturbation:
    """Training transform ``(array, sample, rng) -> (array, PerturbInfo)``.

    Args:
        config: the run's `PerturbConfig`.
        appearances: device group -> `Appearance`, estimated on the training split; a
            sample of any other group gets artefacts only.
        value_range: (low, high) the output is clipped to; either may be None. The
            default is the CT window's [0, 1]; pass ``(floor, None)`` for z-scored MR.

    Example:
        >>> perturb = DevicePerturbation(config.perturb, appearances)  # doctest: +SKIP
        >>> dataset = CachedVolumeDataset(train, cache_root, transform=perturb)  # doctest: +SKIP
    """

    def __init__(self, config: PerturbConfig, appearances: Mapping[str, Appearance], *,
                 value_range: tuple[float | None, float | None] | None = (0.0, 1.0)) -> None:
        self.config = config
        self.appearances = dict(sorted(appearances.items()))
        self.devices = tuple(self.appearances)
        for name, appearance in self.appearances.items():
            if appearance.device_group != name:
                raise ValueError(f"Appearance of device group '{appearance.device_group}' "
                                 f"is filed under '{name}'; key appearances by their group.")
        low, high = value_range if value_range is not None else (None, None)
        if low is not None and high is not None and not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high; got "
                             f"{value_range!r}.")
        self.value_range = (low, high)
        self._plans = {(a, b): _plan(self.appearances[a], self.appearances[b], config)
                       for a in self.devices for b in self.devices if a != b}
        self._probabilities = (("bias_field", config.p_bias_field), ("gamma", config.p_gamma),
                               ("noise", config.p_noise), ("smooth", config.p_smooth))
        self._transforms: dict[str, Any] | None = None

    def _monai(self) -> dict[str, Any]:
        """The MONAI artefact transforms, built on first use (importing MONAI is slow)."""
        if self._transforms is None:
            from monai.transforms import (
                RandAdjustContrast,
                RandBiasField,
                RandGaussianNoise,
                RandGaussianSmooth,
            )

            c = self.config
            self._transforms = {
                "bias_field": RandBiasField(coeff_range=(0.0, c.bias_coeff), prob=1.0),
                "gamma": RandAdjustContrast(prob=1.0, gamma=c.gamma_range),
                "noise": RandGaussianNoise(prob=1.0, std=c.noise_std),
                # in-plane, as a softer reconstruction kernel would be
                "smooth": RandGaussianSmooth(sigma_x=c.smooth_sigma, sigma_y=c.smooth_sigma,
                                             sigma_z=(0.0, 0.0), prob=1.0),
            }
        return self._transforms

    def __call__(self, array: np.ndarray, sample: Sample, rng: np.random.Generator
                 ) -> tuple[np.ndarray, PerturbInfo]:
        """Perturb `array` [X, Y, Z] of `sample`; float32, same shape; `array` is not
        modified. Draws from `rng` only."""
        source = str(sample.device_group)
        x = np.asarray(array, dtype=np.float32)
        if not self.config.enabled:
            return x, PerturbInfo(source, None, ())
        c = self.config
        others = [d for d in self.devices if d != source] if source in self.appearances else []
        target = None
        if rng.random() < c.p_transfer and others:
            target = others[int(rng.integers(len(others)))]
        applied = [name for name, p in self._probabilities if rng.random() < p]
        if target is None and not applied:
            return x, PerturbInfo(source, None, ())

        low, high = self.value_range
        air = x <= low if low is not None else None  # stays air: no noise is added there
        out = x
        if target is not None:
            out = self._transfer(x, self._plans[(source, target)], air, rng)
        for name in applied:
            transform = self._monai()[name]
            transform.set_random_state(seed=int(rng.integers(2 ** 31)))
            result = np.asarray(transform(out[None]), dtype=np.float32)[0]
            if name == "noise" and air is not None:
                result[air] = low
            out = result
        out = out.copy() if out is x else out
        if low is not None or high is not None:
            np.clip(out, low, high, out=out)
        return out, PerturbInfo(source, target, tuple(applied))

    @staticmethod
    def _transfer(x: np.ndarray, plan: _Transfer, air: np.ndarray | None,
                  rng: np.random.Generator) -> np.ndarray:
        out = x
        if plan.knots is not None:
            out = np.interp(x, *plan.knots).astype(np.float32)
        if plan.kernel is not None:
            out = ndimage.correlate1d(out, plan.kernel, axis=0, mode="nearest")
            out = ndimage.correlate1d(out, plan.kernel, axis=1, mode="nearest")
        if plan.noise_sd > 0:
            noise = rng.standard_normal(out.shape, dtype=np.float32)
            noise *= np.float32(plan.noise_sd)
            if air is not None:
                noise[air] = 0.0
            out = out + noise
        return out

    def describe(self) -> dict[str, Any]:
        """Flat ``perturbation.*`` parameters for MLflow: the settings, the training
        devices and each device's appearance (landmarks as a comma-separated string)."""
        c = self.config
        out: dict[str, Any] = {
            "perturbation.enabled": c.enabled,
            "perturbation.p_transfer": c.p_transfer,
            "perturbation.intensity": c.intensity,
            "perturbation.noise": c.noise,
            "perturbation.resolution": c.resolution,
            "perturbation.p_bias_field": c.p_bias_field,
            "perturbation.bias_coeff": c.bias_coeff,
            "perturbation.p_gamma": c.p_gamma,
            "perturbation.gamma_low": c.gamma_range[0],
            "perturbation.gamma_high": c.gamma_range[1],
            "perturbation.p_noise": c.p_noise,
            "perturbation.noise_std": c.noise_std,
            "perturbation.p_smooth": c.p_smooth,
            "perturbation.smooth_sigma_low": c.smooth_sigma[0],
            "perturbation.smooth_sigma_high": c.smooth_sigma[1],
            "perturbation.value_low": self.value_range[0],
            "perturbation.value_high": self.value_range[1],
            "perturbation.devices": ",".join(self.devices),
            "perturbation.landmark_quantiles": ",".join(f"{q:g}" for q in LANDMARK_QUANTILES),
        }
        for name, a in self.appearances.items():
            key = f"perturbation.device.{_param_name(name)}"
            out[f"{key}.n_volumes"] = a.n_volumes
            out[f"{key}.landmarks"] = ",".join(f"{v:.4f}" for v in a.landmarks)
            out[f"{key}.noise_sigma"] = round(a.noise_sigma, 5)
            out[f"{key}.resolution_sigma"] = round(a.resolution_sigma, 4)
            out[f"{key}.floor"] = round(a.floor, 4)
        return out
