"""Per-device appearance in the model's input domain: intensity landmarks, noise, resolution.

`estimate_appearances` summarizes the training split's cached volumes of each device group
(float32 [X, Y, Z], CT window [0, 1] with air = 0, or MR z-scores) as an `Appearance`;
`triage.train.perturb.DevicePerturbation` re-renders one device's volumes with another's.
The estimators (docs/perturbation.md has the math):

* **body**: voxels whose in-plane 3x3 mean, eroded by a 3x3 minimum, exceeds
  ``floor + BODY_FRACTION * (q99 - floor)`` (``floor`` = the volume's minimum, the air
  value). The mean keeps air noise out, the erosion the air/body boundary layer;
* **landmarks**: `LANDMARK_QUANTILES` of the body eroded once more (voxels two voxels
  inside), Nyul-Udupa style: they describe tissue, not the skin's partial volume;
* **noise_sigma**: Immerkaer's in-plane Laplacian-difference residual, ``L = a (x) a``
  with ``a = (1, -2, 1)`` and ``|L| = 6``, at those inner voxels, away from saturated
  (clipped) values, and among the flattest `HOMOGENEOUS_FRACTION` by the gradient of the
  3x3 mean; ``1.4826 * MAD / 6``;
* **resolution_sigma**: the standard deviation of the in-plane line-spread function,
  pooled over air/body edge profiles (rows and columns through the middle of the body,
  entering from both sides) about their crossings of the level half-way from air to the
  body's q10 (found on the 3x3 mean, so that noise does not pick sharp-looking crossings),
  centroid-corrected, and mapped through a table computed on noise-free steps blurred by
  `blur_kernel`. It is the standard deviation (voxels) of the discrete blur kernel a
  voxel-aligned step went through.

Every statistic comes from up to `MAX_SLICES` evenly spaced slices (20-30 ms for a
96x96x48 volume on one shared core); a device's value is the median of its volumes' values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

LANDMARK_QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
BODY_FRACTION = 0.1  # of the floor-to-q99 range; CT window: -150 HU, below fat
MAX_SLICES = 16
EDGE_WINDOW = 3  # line-spread samples each side of the crossing (12 mm at 4 mm voxels)
EDGE_BAND = 0.3  # profiles through the middle 30 % of the body: edges within ~17 deg of normal
MIN_BODY_VOXELS = 100
MIN_NOISE_VOXELS = 200
MIN_EDGE_PROFILES = 8
MAX_RESOLUTION_SIGMA = 3.0
HOMOGENEOUS_FRACTION = 0.3
_LAPLACE_1D = np.array([1.0, -2.0, 1.0])
_CENTRAL = np.array([-1.0, 0.0, 1.0])
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Appearance:
    """How one device group's volumes look in the model's input domain.

    Attributes:
        device_group: the device group key.
        n_volumes: volumes the estimate is the median of.
        landmarks: body intensities at `LANDMARK_QUANTILES`, non-decreasing.
        noise_sigma: in-plane white-noise standard deviation (input units); NaN if unknown.
        resolution_sigma: in-plane effective blur (voxels, standard deviation of the
            discrete line-spread function); NaN if unknown.
        floor: the air value (median of the volumes' minima): 0 in the CT window.
    """

    device_group: str
    n_volumes: int
    landmarks: tuple[float, ...]
    noise_sigma: float
    resolution_sigma: float
    floor: float = 0.0

    def __post_init__(self) -> None:
        landmarks = tuple(float(v) for v in self.landmarks)
        if len(landmarks) != len(LANDMARK_QUANTILES) or not all(map(math.isfinite, landmarks)):
            raise ValueError(f"Appearance of device group '{self.device_group}' needs "
                             f"{len(LANDMARK_QUANTILES)} finite landmarks (quantiles "
                             f"{LANDMARK_QUANTILES}); got {self.landmarks!r}.")
        if any(b < a for a, b in zip(landmarks, landmarks[1:], strict=False)):
            raise ValueError(f"Appearance of device group '{self.device_group}': landmarks "
                             f"must be non-decreasing; got {landmarks}.")
        if not landmarks[0] >= self.floor:
            raise ValueError(f"Appearance of device group '{self.device_group}': floor "
                             f"{self.floor} lies above the first landmark {landmarks[0]}.")
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "noise_sigma", float(self.noise_sigma))
        object.__setattr__(self, "resolution_sigma", float(self.resolution_sigma))
        object.__setattr__(self, "floor", float(self.floor))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN becomes None)."""
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {"device_group": self.device_group, "n_volumes": self.n_volumes,
                "landmark_quantiles": list(LANDMARK_QUANTILES),
                "landmarks": list(self.landmarks), "noise_sigma": num(self.noise_sigma),
                "resolution_sigma": num(self.resolution_sigma), "floor": self.floor}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Appearance:
        """Inverse of `to_dict`.

        Raises:
            ValueError: the landmarks were computed at other quantiles than this version's.
        """
        quantiles = tuple(data.get("landmark_quantiles", LANDMARK_QUANTILES))
        if not np.allclose(quantiles, LANDMARK_QUANTILES):
            raise ValueError(f"Appearance of device group '{data.get('device_group')}' has "
                             f"landmarks at quantiles {quantiles}; this version uses "
                             f"{LANDMARK_QUANTILES}. Re-estimate the appearances.")

        def num(v: Any) -> float:
            return float("nan") if v is None else float(v)

        return cls(device_group=str(data["device_group"]), n_volumes=int(data["n_volumes"]),
                   landmarks=tuple(data["landmarks"]), noise_sigma=num(data["noise_sigma"]),
                   resolution_sigma=num(data["resolution_sigma"]),
                   floor=float(data.get("floor", 0.0)))


@functools.lru_cache(maxsize=256)
def _kernel(variance: float) -> tuple[float, ...]:
    if variance <= 1e-6:
        return (1.0,)
    if variance <= 0.5:  # three taps reach any variance up to 0.5 exactly
        return (variance / 2, 1.0 - variance, variance / 2)

    def sampled(sigma: float) -> tuple[np.ndarray, float]:
        radius = math.ceil(4 * sigma) + 1
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        w = np.exp(-0.5 * (x / sigma) ** 2)
        w /= w.sum()
        return w, float((w * x * x).sum())

    low, high = 0.5 * math.sqrt(variance), 1.5 * math.sqrt(variance)
    for _ in range(40):  # a sampled Gaussian's variance grows monotonically with sigma
        mid = 0.5 * (low + high)
        low, high = (mid, high) if sampled(mid)[1] < variance else (low, mid)
    return tuple(sampled(0.5 * (low + high))[0].tolist())


def blur_kernel(variance: float) -> np.ndarray:
    """A symmetric 1-D blur kernel (sums to 1) whose variance is exactly `variance` voxels².

    A sampled Gaussian of sigma s has a variance well below s² when s < 0.6 (0.08 at
    s = 0.4), so: three taps ``(v/2, 1-v, v/2)`` up to v = 0.5, above that a sampled
    Gaussian whose sigma is solved for the variance. Variances add under convolution,
    which is what lets blur be raised from one device's resolution to another's.
    """
    return np.array(_kernel(round(max(float(variance), 0.0), 6)))


def noise_gain(kernel: np.ndarray) -> float:
    """Factor by which an in-plane blur with `kernel` (along both axes) scales white noise
    as `Appearance.noise_sigma` measures it (Immerkaer residual norm ratio)."""
    response = np.convolve(_LAPLACE_1D, np.asarray(kernel, dtype=np.float64))
    return float((response ** 2).sum() / 6.0)


def _sampled_slices(array: np.ndarray) -> np.ndarray:
    idx = np.unique(np.linspace(0, array.shape[2] - 1, min(array.shape[2], MAX_SLICES))
                    .round().astype(int))
    return np.ascontiguousarray(array[:, :, idx], dtype=np.float32)


def _edge_moments(profiles: np.ndarray, guides: np.ndarray, level: float) -> np.ndarray:
    """Pooled line-spread moments of `profiles` about the crossings of `level` by `guides`.

    `profiles` (n, L) run from air into the body; `guides` are the same lines of a less
    noisy image (the 3x3 mean), so that where the crossing is found depends little on the
    profile's own noise (which would make the edges found look sharper). Returns (sum d,
    sum d * r, sum d * r², profiles used), d the profiles' first differences and r their
    distance to the crossing.
    """
    w = EDGE_WINDOW
    above = guides >= level
    j = above.argmax(axis=1)
    ok = above.any(axis=1) & (j - 1 - w >= 0) & (j + w < profiles.shape[1])
    if not ok.any():
        return np.zeros(4)
    index = (j[ok] - 1 - w)[:, None] + np.arange(2 * w + 2)
    seg = np.take_along_axis(profiles[ok], index, axis=1).astype(np.float64)
    guide = np.take_along_axis(guides[ok], index, axis=1).astype(np.float64)
    keep = (guide[:, :2].mean(axis=1) < level) & (guide[:, -2:].mean(axis=1) > level)
    seg, guide = seg[keep], guide[keep]
    if seg.shape[0] == 0:
        return np.zeros(4)
    x0 = w + (level - guide[:, w]) / (guide[:, w + 1] - guide[:, w])
    d = np.diff(seg, axis=1)
    r = np.arange(2 * w + 1) + 0.5 - x0[:, None]
    return np.array([d.sum(), (d * r).sum(), (d * r * r).sum(), seg.shape[0]])


def _variance(sums: np.ndarray) -> float:
    """Line-spread variance about its pooled centroid (removes a systematic offset of the
    crossing from the edge centre, e.g. when `level` is not half-way up the step)."""
    return float(sums[2] / sums[0] - (sums[1] / sums[0]) ** 2)


@functools.lru_cache(maxsize=1)
def _moment_table() -> tuple[np.ndarray, np.ndarray]:
    """Line-spread moment of noise-free voxel-aligned steps blurred by `blur_kernel`."""
    sigmas = np.linspace(0.0, MAX_RESOLUTION_SIGMA, 61)
    step = np.repeat([0.0, 1.0], 24)
    moments = []
    for s in sigmas:
        k = blur_kernel(s * s)
        r = len(k) // 2
        profile = np.convolve(np.pad(step, r, mode="edge"), k, mode="valid")
        moments.append(_variance(_edge_moments(profile[None], profile[None], 0.5)))
    return np.maximum.accumulate(np.array(moments)), sigmas


def resolution_from_moment(moment: float) -> float:
    """Blur sigma (voxels) whose noise-free step has line-spread second moment `moment`."""
    table, sigmas = _moment_table()
    return float(np.interp(moment, table, sigmas))


@dataclass(frozen=True)
class VolumeMeasures:
    """One volume's estimates (None where the volume does not allow one)."""

    floor: float
    landmarks: np.ndarray | None
    noise_sigma: float | None
    resolution_sigma: float | None


def measure_volume(array: np.ndarray) -> VolumeMeasures:
    """The `Appearance` estimates of one volume [X, Y, Z] (see the module docstring).

    Raises:
        ValueError: `array` is not three-dimensional.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"Appearance estimation needs a 3-D volume [X, Y, Z]; got shape "
                         f"{array.shape}.")
    s = _sampled_slices(array)
    floor = float(s.min())
    voxels = s.reshape(-1)
    k99 = int(0.99 * (voxels.size - 1))
    top = float(np.partition(voxels, k99)[k99])
    if not top > floor:
        return VolumeMeasures(floor, None, None, None)
    threshold = floor + BODY_FRACTION * (top - floor)
    mean3 = ndimage.uniform_filter(s, size=(3, 3, 1), mode="nearest")
    core3 = ndimage.minimum_filter(mean3, size=(3, 3, 1), mode="nearest")
    body = core3 > threshold
    inner = ndimage.minimum_filter(core3, size=(3, 3, 1), mode="nearest") > threshold
    values = s[inner]
    if values.size < MIN_BODY_VOXELS:
        return VolumeMeasures(floor, None, None, None)
    landmarks = np.quantile(values, LANDMARK_QUANTILES)

    smax = float(s.max())
    inner &= ndimage.maximum_filter(s, size=(3, 3, 1), mode="nearest") < smax
    noise = None
    if inner.sum() >= MIN_NOISE_VOXELS:
        # Homogeneous = the flattest HOMOGENEOUS_FRACTION of the body by the gradient of
        # the 3x3 mean. That gradient (an odd kernel) is uncorrelated with the residual
        # (an even one), so selecting on it keeps edges out without biasing the noise.
        gx = ndimage.correlate1d(mean3, _CENTRAL, axis=0, mode="nearest")[inner]
        gy = ndimage.correlate1d(mean3, _CENTRAL, axis=1, mode="nearest")[inner]
        gradient = gx * gx + gy * gy
        kth = int(HOMOGENEOUS_FRACTION * (gradient.size - 1))
        flat = gradient <= np.partition(gradient, kth)[kth]
        residual = ndimage.correlate1d(s, _LAPLACE_1D, axis=0, mode="nearest")
        residual = ndimage.correlate1d(residual, _LAPLACE_1D, axis=1, mode="nearest")
        residual = residual[inner][flat]
        mad = np.median(np.abs(residual - np.median(residual)))
        noise = float(_MAD_TO_SD * mad / 6.0)

    level = floor + 0.5 * (float(landmarks[2]) - floor)  # half-way from air to body's q10
    resolution = _resolution(s, mean3, body, level)
    return VolumeMeasures(floor, landmarks, noise, resolution)


def _resolution(s: np.ndarray, mean3: np.ndarray, body: np.ndarray, level: float
                ) -> float | None:
    """Pooled line-spread estimate over edges through the middle of the body."""
    zs = np.flatnonzero(body.any(axis=(0, 1)))
    if zs.size == 0:
        return None
    zc, zh = 0.5 * (zs[0] + zs[-1]), max(0.5, 0.5 * EDGE_BAND * (zs[-1] - zs[0] + 1))
    sums = np.zeros(4)
    for k in zs[np.abs(zs - zc) <= zh]:
        plane, smooth, mask = s[:, :, k], mean3[:, :, k], body[:, :, k]
        for axis in (0, 1):  # profiles along axis 0 (rows of x), then along axis 1
            lines = np.flatnonzero(mask.any(axis=axis))
            if lines.size < 2:
                continue
            c, h = 0.5 * (lines[0] + lines[-1]), 0.5 * EDGE_BAND * (lines[-1] - lines[0] + 1)
            chosen = lines[np.abs(lines - c) <= max(h, 0.5)]
            profiles = plane[:, chosen].T if axis == 0 else plane[chosen, :]
            guides = smooth[:, chosen].T if axis == 0 else smooth[chosen, :]
            sums += _edge_moments(profiles, guides, level)
            sums += _edge_moments(profiles[:, ::-1], guides[:, ::-1], level)
    if sums[3] < MIN_EDGE_PROFILES or sums[0] <= 0:
        return None
    return resolution_from_moment(max(_variance(sums), 0.0))


def estimate_appearance(arrays: Iterable[np.ndarray], device_group: str) -> Appearance:
    """Median over `arrays` of the per-volume estimates of `measure_volume`.

    Raises:
        ValueError: no array of the group has a measurable body (e.g. all empty).
    """
    measures = [measure_volume(a) for a in arrays]
    with_body = [m for m in measures if m.landmarks is not None]
    if not with_body:
        raise ValueError(f"Device group '{device_group}': none of its {len(measures)} "
                         f"volumes has at least {MIN_BODY_VOXELS} body voxels; check that "
                         f"its cached volumes are not empty.")
    landmarks = np.median(np.stack([m.landmarks for m in with_body]), axis=0)
    landmarks = np.maximum.accumulate(landmarks)
    floor = min(float(np.median([m.floor for m in measures])), float(landmarks[0]))

    def median(values: list[float | None]) -> float:
        kept = [v for v in values if v is not None]
        return float(np.median(kept)) if kept else float("nan")

    return Appearance(device_group=device_group, n_volumes=len(measures),
                      landmarks=tuple(landmarks.tolist()),
                      noise_sigma=median([m.noise_sigma for m in with_body]),
                      resolution_sigma=median([m.resolution_sigma for m in with_body]),
                      floor=floor)


def estimate_appearances(arrays_by_device: Mapping[str, Iterable[np.ndarray]]
                         ) -> dict[str, Appearance]:
    """`estimate_appearance` for each device group (sorted by name).

    Example:
        >>> train = resolved.split("train")  # doctest: +SKIP
        >>> by_device = {}  # doctest: +SKIP
        >>> for i, s in enumerate(train):  # doctest: +SKIP
        ...     by_device.setdefault(s.device_group, []).append(dataset.array(i))
        >>> appearances = estimate_appearances(by_device)  # doctest: +SKIP
    """
    return {group: estimate_appearance(arrays, group)
            for group, arrays in sorted(arrays_by_device.items())}
