"""`PreprocessConfig`: the typed, validated, fingerprinted settings of normalize + align.

The fingerprint is part of every cache key and every model bundle: two configs with the
same values (``4`` or ``4.0``, list or tuple) have the same fingerprint, and any change of
value changes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.errors import ConfigError
from triage.settings import check_finite, check_keys, load_yaml

INTERPOLATIONS = ("trilinear", "nearest")
_AXIS_PAIRS = ("LR", "PA", "IS")


def _floats(name: str, value: Any, n: int) -> tuple[float, ...]:
    message = f"Preprocess option '{name}' must be a list of {n} numbers, got {value!r}."
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != n:
        raise ConfigError(message)
    if any(isinstance(v, bool) for v in value):
        raise ConfigError(message)
    try:
        floats = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(message) from err
    if not all(math.isfinite(f) for f in floats):
        raise ConfigError(message)
    return floats


def _ints(name: str, value: Any, n: int) -> tuple[int, ...]:
    floats = _floats(name, value, n)
    if any(f != int(f) or f < 1 for f in floats):
        raise ConfigError(
            f"Preprocess option '{name}' must be {n} positive integers, got {value!r}."
        )
    return tuple(int(f) for f in floats)


def _check_axcodes(codes: Any) -> str:
    hint = "it needs one letter from each of L/R, P/A and I/S, e.g. 'RAS' or 'LPS'"
    if not isinstance(codes, str) or len(codes) != 3:
        raise ConfigError(f"Preprocess option 'orientation' is {codes!r}: {hint}.")
    codes = codes.upper()
    axes = sorted(i for c in codes for i, pair in enumerate(_AXIS_PAIRS) if c in pair)
    if axes != [0, 1, 2]:
        raise ConfigError(f"Preprocess option 'orientation' is {codes!r}: {hint}.")
    return codes


@dataclass(frozen=True)
class PreprocessConfig:
    """How a `Volume` becomes a network input. See docs/preprocessing.md for the defaults.

    Attributes:
        target_spacing: output voxel size (x, y, z) in mm, along the `orientation` axes.
        target_shape: output array shape (x, y, z); the resampled volume is centre-cropped
            or padded (with the normalized value of air) to it.
        orientation: axis codes of the output grid, NIfTI style: ``"RAS"`` means index
            i grows towards the patient's Right, j towards Anterior, k towards Superior.
        interpolation: ``"trilinear"`` (images) or ``"nearest"``.
        anti_aliasing: low-pass filter before downsampling (a Gaussian of sigma
            ``(f - 1) / 2`` input voxels for a downsampling factor ``f``).
        ct_window: HU window (low, high) mapped linearly onto [0, 1] for CT.
        mr_percentiles: clip percentiles (low over the whole volume, high over the
            foreground) applied before MR z-scoring.

    Raises:
        ConfigError: on any invalid value, naming the option and what would fix it.
    """

    target_spacing: tuple[float, float, float] = (4.0, 4.0, 5.0)
    target_shape: tuple[int, int, int] = (96, 96, 48)
    orientation: str = "RAS"
    interpolation: str = "trilinear"
    anti_aliasing: bool = True
    ct_window: tuple[float, float] = (-200.0, 300.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        # Canonicalise in place (frozen): equal values must give equal fingerprints.
        spacing = _floats("target_spacing", self.target_spacing, 3)
        if any(s <= 0 for s in spacing):
            raise ConfigError(f"Preprocess option 'target_spacing' must be positive mm, "
                              f"got {self.target_spacing!r}.")
        window = _floats("ct_window", self.ct_window, 2)
        if window[0] >= window[1]:
            raise ConfigError(f"Preprocess option 'ct_window' must be [low, high] HU with "
                              f"low < high, got {self.ct_window!r}.")
        pct = _floats("mr_percentiles", self.mr_percentiles, 2)
        if not 0.0 <= pct[0] < pct[1] <= 100.0:
            raise ConfigError(f"Preprocess option 'mr_percentiles' must satisfy "
                              f"0 <= low < high <= 100, got {self.mr_percentiles!r}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"Preprocess option 'interpolation' is {self.interpolation!r}; "
                              f"choose one of {', '.join(INTERPOLATIONS)}.")
        if not isinstance(self.anti_aliasing, bool):
            raise ConfigError(f"Preprocess option 'anti_aliasing' must be true or false, "
                              f"got {self.anti_aliasing!r}.")
        canonical = {
            "target_spacing": spacing,
            "target_shape": _ints("target_shape", self.target_shape, 3),
            "orientation": _check_axcodes(self.orientation),
            "ct_window": window,
            "mr_percentiles": pct,
        }
        for name, value in canonical.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the preprocess config"
                  ) -> PreprocessConfig:
        """Build a config from a mapping; missing keys keep their defaults.

        Args:
            data: option name -> value, as in the ``preprocess`` section of
                triage/configs/ingest/default.yaml.
            source: where `data` came from, for error messages (a file path).

        Raises:
            ConfigError: for an unknown key (with a did-you-mean suggestion) or a bad value.

        Example:
            >>> PreprocessConfig.from_dict({"target_shape": [64, 64, 32]}).target_shape
            (64, 64, 32)
        """
        check_keys(data, [f.name for f in dataclasses.fields(cls)], "preprocess option", source)
        check_finite(data, "preprocess option", source)
        try:
            return cls(**dict(data))
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from err

    @classmethod
    def from_yaml(cls, path: Path | str, section: str | None = None) -> PreprocessConfig:
        """Load a config from a YAML file, optionally from one top-level `section` of it.

        Raises:
            ConfigError: if the file is missing, is not valid YAML, lacks `section`, or
                holds an unknown key or bad value.
        """
        path = Path(path)
        data = load_yaml(path, "preprocess config")
        data = {} if data is None else data
        if section is not None:
            if not isinstance(data, Mapping) or section not in data:
                raise ConfigError(f"Config file {path} has no top-level '{section}' section.")
            data = data[section] or {}
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the canonical JSON of `to_dict()`.

        Example:
            >>> PreprocessConfig().fingerprint() == PreprocessConfig.from_dict(
            ...     {"target_spacing": [4, 4, 5]}).fingerprint()
            True
        """
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
