"""Modality-aware intensity normalization: a registry of normalizers, one per modality.

CT values are physical (HU), so a fixed window maps them onto [0, 1]. MR values have no
absolute scale, so they are clipped at robust foreground percentiles and z-scored per
volume. Every normalizer also reports `background`, the normalized value of air, which
alignment uses to pad.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from triage.errors import TriageError

if TYPE_CHECKING:
    from triage.preprocess.config import PreprocessConfig

# Percentile estimates on a strided subsample above this many voxels: the result moves by
# far less than the clip matters, and np.percentile on 8 M voxels costs ~0.2 s.
_MAX_STAT_VOXELS = 1_000_000


class NormalizationError(TriageError, ValueError):
    """A volume cannot be normalized (e.g. an MR volume with constant intensity)."""


class UnsupportedModalityError(TriageError, NotImplementedError):
    """No normalizer handles the volume's modality."""


@dataclass(frozen=True)
class Normalized:
    """A normalized array and what was applied to it.

    Attributes:
        array: float32 array, same shape as the input.
        background: the normalized value of air; alignment pads with it.
        params: the values applied (window, percentiles, mean/std), for the cache sidecar.
    """

    array: np.ndarray
    background: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Normalization:
    """One volume's normalization: clip to ``[low, high]``, then ``(x - shift) * scale``.

    Every normalizer is this clip followed by an affine map. Alignment (Gaussian weights
    that sum to one, linear interpolation, padding) commutes with the affine map, so the
    preprocessing pipeline clips the native volume (one pass) and maps only the aligned
    output, some 20 times fewer voxels (`rescale_`).

    Attributes:
        low, high: the clip, in modality units (HU for CT).
        shift, scale: the affine map after the clip.
        params: the values applied, for the cache sidecar.
    """

    low: float
    high: float
    shift: float
    scale: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def background(self) -> float:
        """The normalized value of air (the clip floor after the map)."""
        return (self.low - self.shift) * self.scale

    def clip(self, array: np.ndarray, *, in_place: bool = False) -> np.ndarray:
        """`array` clipped to ``[low, high]`` (modality units), as float32.

        Args:
            array: the volume.
            in_place: overwrite `array` when it is a writeable float32 array (no new
                allocation of a native-size volume: its page faults cost as much as the
                clip); otherwise a new array either way.
        """
        if in_place and array.dtype == np.float32 and array.flags.writeable:
            return np.clip(array, np.float32(self.low), np.float32(self.high), out=array)
        return np.clip(array, self.low, self.high, dtype=np.float32)

    def rescale_(self, out: np.ndarray) -> np.ndarray:
        """Apply ``(x - shift) * scale`` to the float32 array `out` in place; return it.

        The result is clipped to the map of ``[low, high]``: interpolating between clipped
        values can leave them by a float32 rounding, and air must map to exactly
        `background` (0 for CT).
        """
        shift, scale = np.float32(self.shift), np.float32(self.scale)
        out -= shift
        out *= scale
        bounds = (np.float32(self.low) - shift) * scale, (np.float32(self.high) - shift) * scale
        return np.clip(out, *bounds, out=out)


class Normalizer(ABC):
    """Base class: maps modality values of one volume to network-ready float32."""

    name: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]]

    @classmethod
    @abstractmethod
    def from_config(cls, config: PreprocessConfig) -> Normalizer:
        """Build the normalizer with the parameters `config` sets for it."""

    @abstractmethod
    def fit(self, array: np.ndarray) -> Normalization:
        """The clip and map for `array` (modality units); the input is never modified."""

    def __call__(self, array: np.ndarray) -> Normalized:
        """Normalize `array` (modality units); the input is never modified."""
        normalization = self.fit(array)
        return Normalized(normalization.rescale_(normalization.clip(array)),
                          background=normalization.background, params=normalization.params)


_REGISTRY: dict[str, type[Normalizer]] = {}


def register_normalizer(cls: type[Normalizer]) -> type[Normalizer]:
    """Class decorator adding a `Normalizer` subclass to the registry under `cls.name`."""
    if cls.name in _REGISTRY:
        raise ValueError(f"A normalizer named '{cls.name}' is already registered.")
    _REGISTRY[cls.name] = cls
    return cls


def list_normalizers() -> list[str]:
    """Names of the registered normalizers, sorted."""
    return sorted(_REGISTRY)


def create_normalizer(name: str, **kwargs: Any) -> Normalizer:
    """Build the registered normalizer `name` with its constructor arguments.

    Raises:
        ValueError: if `name` is not registered; the message lists the valid names.

    Example:
        >>> create_normalizer("ct-window", window=(-160, 240)).window
        (-160.0, 240.0)
    """
    if name not in _REGISTRY:
        import difflib  # only for this message

        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown normalizer '{name}'.{hint} "
                         f"Valid normalizers: {', '.join(list_normalizers())}.")
    return _REGISTRY[name](**kwargs)


def normalizer_for(modality: str, config: PreprocessConfig) -> Normalizer:
    """The registered normalizer for a DICOM `modality`, configured from `config`.

    Raises:
        UnsupportedModalityError: if no normalizer declares `modality`.
    """
    for cls in _REGISTRY.values():
        if modality in cls.modalities:
            return cls.from_config(config)
    supported = sorted({m for cls in _REGISTRY.values() for m in cls.modalities})
    raise UnsupportedModalityError(
        f"No intensity normalizer for modality '{modality}'; supported modalities: "
        f"{', '.join(supported)}. Select a series of a supported modality, or register a "
        f"normalizer for '{modality}' with @register_normalizer."
    )


@register_normalizer
class CTWindowNormalizer(Normalizer):
    """CT: clip HU to `window` and map it linearly onto [0, 1] (air -> 0).

    Args:
        window: (low, high) HU. The default (-200, 300) HU is the abdominal soft-tissue
            window (W400 L40) widened a little on both sides, so that fat, contrast-filled
            vessels and a scanner's HU offset of a few tens stay inside it.
    """

    name = "ct-window"
    modalities = ("CT",)

    def __init__(self, window: tuple[float, float] = (-200.0, 300.0)) -> None:
        low, high = (float(w) for w in window)
        if not low < high:
            raise ValueError(f"Argument 'window' must be (low, high) with low < high, "
                             f"got {window!r}.")
        self.window = (low, high)

    @classmethod
    def from_config(cls, config: PreprocessConfig) -> CTWindowNormalizer:
        return cls(window=config.ct_window)

    def fit(self, array: np.ndarray) -> Normalization:
        low, high = self.window
        return Normalization(low, high, shift=low, scale=1.0 / (high - low),
                             params={"name": self.name, "window": list(self.window)})


def _sample(array: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil((array.size / _MAX_STAT_VOXELS) ** (1 / 3))))
    return array[::step, ::step, ::step] if array.ndim == 3 else array.ravel()[::step ** 3]


@register_normalizer
class MRZScoreNormalizer(Normalizer):
    """MR: clip to robust percentiles, then z-score with foreground statistics.

    The foreground is the voxels brighter than the volume mean (the usual head/body
    heuristic). The upper clip is the foreground's `percentiles[1]`, which removes bright
    spikes; the lower clip is the whole volume's `percentiles[0]`, which removes negative
    reconstruction outliers but keeps the body/air contrast. Air maps to the clip floor.

    Args:
        percentiles: (low, high) percentiles in [0, 100].
    """

    name = "mr-zscore"
    modalities = ("MR",)

    def __init__(self, percentiles: tuple[float, float] = (0.5, 99.5)) -> None:
        low, high = (float(p) for p in percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"Argument 'percentiles' must satisfy 0 <= low < high <= 100, "
                             f"got {percentiles!r}.")
        self.percentiles = (low, high)

    @classmethod
    def from_config(cls, config: PreprocessConfig) -> MRZScoreNormalizer:
        return cls(percentiles=config.mr_percentiles)

    def fit(self, array: np.ndarray) -> Normalization:
        sample = _sample(array).astype(np.float32, copy=False)
        foreground = sample[sample > sample.mean()]
        if foreground.size < 2:
            raise NormalizationError("The MR volume has no foreground (constant intensity); "
                                     "it cannot be z-scored. Check the selected series.")
        low = float(np.percentile(sample, self.percentiles[0]))
        high = float(np.percentile(foreground, self.percentiles[1]))
        clipped_fg = np.clip(foreground, low, high)
        mean, std = float(clipped_fg.mean()), float(clipped_fg.std())
        if std <= 1e-6 * max(1.0, abs(mean)):
            raise NormalizationError("The MR volume's foreground has no intensity variation "
                                     "after percentile clipping; it cannot be z-scored.")
        return Normalization(low, high, shift=mean, scale=1.0 / std, params={
            "name": self.name, "percentiles": list(self.percentiles),
            "clip": [low, high], "mean": mean, "std": std})


def normalize(array: np.ndarray, modality: str, config: PreprocessConfig) -> Normalized:
    """Normalize `array` with the normalizer registered for `modality`."""
    return normalizer_for(modality, config)(array)
