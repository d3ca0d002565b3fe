"""`SynthConfig`: every knob of a synthetic export, validated at construction.

Config values never depend on the number of studies in a way that changes a study's
content: study ``i`` of a 10-study export is byte-identical to study ``i`` of a 1000-study
export with the same seed and knobs (only the split assignment of patients depends on N).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from triage.data.manifest import Split
from triage.data.synth.devices import DEVICE_PROFILES, DeviceProfile, get_device
from triage.errors import ConfigError
from triage.settings import require_finite

DEFAULT_SPLITS: tuple[tuple[str, float], ...] = (
    ("train", 0.6), ("val", 0.1), ("calib", 0.15), ("test", 0.15))


def parse_splits(text: str) -> tuple[tuple[str, float], ...]:
    """Parse ``"train=0.6,val=0.1,calib=0.15,test=0.15"`` into (split, fraction) pairs.

    Raises:
        ConfigError: naming the malformed item.

    Example:
        >>> parse_splits("train=0.8,test=0.2")
        (('train', 0.8), ('test', 0.2))
    """
    pairs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            pairs.append((name.strip(), float(value)))
        except ValueError as err:
            raise ConfigError(f"splits: '{item}' is not of the form name=fraction "
                              f"(e.g. 'train=0.6,val=0.1,calib=0.15,test=0.15').") from err
    return tuple(pairs)


def parse_devices(names: str | Iterable[str | DeviceProfile]) -> tuple[DeviceProfile, ...]:
    """Profiles from a comma-separated string or an iterable of names/profiles."""
    items = names.split(",") if isinstance(names, str) else list(names)
    profiles = tuple(item if isinstance(item, DeviceProfile) else get_device(str(item))
                     for item in items if not (isinstance(item, str) and not item.strip()))
    if not profiles:
        raise ConfigError("devices: at least one device profile is required; valid devices: "
                          f"{', '.join(DEVICE_PROFILES)}.")
    groups = [p.device_group for p in profiles]
    if len(set(groups)) != len(groups):
        raise ConfigError(f"devices: each device may be listed once, got {groups}.")
    return profiles


def parse_device_noise(text: str | Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """``"cygnus=50,acme=12"`` (or pairs) as ``(("cygnus", 50.0), ("acme", 12.0))``."""
    if not isinstance(text, str):
        return tuple((str(name), float(hu)) for name, hu in text)
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"device_noise: '{item}' is not DEVICE=HU (e.g. 'cygnus=50').")
    return tuple(pairs)


def _check(condition: bool, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{name} must be {expected}, got {value!r}.")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Devices may be given as names; they are resolved to profiles.

    Attributes:
        studies: number of studies.
        seed: master seed; same seed and knobs give byte-identical files.
        slices: slices of each thin axial series.
        matrix: base matrix (rows = columns), scaled per device.
        prevalence: probability that a study is positive.
        lesion_contrast_hu: mean lesion contrast relative to liver (jittered +-20 %).
        lesion_diameter_mm: (min, max) lesion diameter.
        max_lesions: lesions per positive study are 1..max_lesions.
        distractor_probability: chance that a study (either label) carries a distractor.
        devices: device profiles, assigned round-robin by study index.
        noise_scale: multiplies every device's noise level.
        device_noise: (device name, noise HU) pairs replacing those devices' own noise
            level (before `noise_scale`): a stronger shift of one scanner, e.g. for the
            held-out device of the quality benchmark.
        texture_hu: tissue texture amplitude.
        repeat_patient_fraction: share of patients with a second study.
        thick_fraction: share of studies with an extra 5 mm reconstruction.
        thick_mm: thickness and spacing of that reconstruction.
        extras: add a localizer, a Basic Text SR and a dose-report Secondary Capture.
        dicomdir: write a DICOMDIR (files then use the DICOM media layout).
        splits: (split, fraction) pairs; patients are split, not studies.
    """

    studies: int = 40
    seed: int = 0
    slices: int = 32
    matrix: int = 64
    prevalence: float = 0.5
    lesion_contrast_hu: float = -25.0
    lesion_diameter_mm: tuple[float, float] = (6.0, 15.0)
    max_lesions: int = 3
    distractor_probability: float = 0.4
    devices: tuple[DeviceProfile, ...] = field(
        default_factory=lambda: tuple(DEVICE_PROFILES.values()))
    noise_scale: float = 1.0
    device_noise: tuple[tuple[str, float], ...] = ()
    texture_hu: float = 6.0
    repeat_patient_fraction: float = 0.2
    thick_fraction: float = 0.3
    thick_mm: float = 5.0
    extras: bool = True
    dicomdir: bool = False
    splits: tuple[tuple[str, float], ...] = DEFAULT_SPLITS

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", parse_devices(self.devices))
        object.__setattr__(self, "device_noise", parse_device_noise(self.device_noise))
        self._apply_device_noise()
        if isinstance(self.splits, str):
            object.__setattr__(self, "splits", parse_splits(self.splits))
        object.__setattr__(self, "lesion_diameter_mm",
                           tuple(float(v) for v in self.lesion_diameter_mm))
        require_finite(self, ConfigError)
        _check(isinstance(self.studies, int) and self.studies >= 1, "studies", self.studies,
               "a positive integer")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed,
               "a non-negative integer")
        _check(isinstance(self.slices, int) and 4 <= self.slices <= 2048, "slices",
               self.slices, "an integer in 4..2048")
        _check(isinstance(self.matrix, int) and 32 <= self.matrix <= 1024, "matrix",
               self.matrix, "an integer in 32..1024")
        for name in ("prevalence", "distractor_probability", "repeat_patient_fraction",
                     "thick_fraction"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, name, value, "within [0, 1]")
        sizes = self.lesion_diameter_mm
        _check(len(sizes) == 2 and 1.0 <= sizes[0] <= sizes[-1] <= 60.0,
               "lesion_diameter_mm", sizes, "(min, max) with 1 <= min <= max <= 60")
        _check(-300.0 <= self.lesion_contrast_hu <= 300.0 and self.lesion_contrast_hu != 0,
               "lesion_contrast_hu", self.lesion_contrast_hu, "non-zero within [-300, 300]")
        _check(isinstance(self.max_lesions, int) and 1 <= self.max_lesions <= 10,
               "max_lesions", self.max_lesions, "an integer in 1..10")
        _check(0.0 <= self.noise_scale <= 10.0, "noise_scale", self.noise_scale, "within [0, 10]")
        _check(0.0 <= self.texture_hu <= 100.0, "texture_hu", self.texture_hu, "within [0, 100]")
        _check(1.0 <= self.thick_mm <= 20.0, "thick_mm", self.thick_mm, "within [1, 20] mm")
        self._check_splits()

    def _apply_device_noise(self) -> None:
        devices = list(self.devices)
        for name, hu in self.device_noise:
            _check(0.0 <= hu <= 500.0, f"device_noise[{name}]", hu, "within [0, 500] HU")
            matches = [i for i, d in enumerate(devices) if d.name == name]
            if not matches:
                raise ConfigError(f"device_noise: '{name}' is not one of the export's devices "
                                  f"({', '.join(d.name for d in devices)}).")
            devices[matches[0]] = replace(devices[matches[0]], noise_hu=hu)
        object.__setattr__(self, "devices", tuple(devices))

    def _check_splits(self) -> None:
        valid = {s.value for s in Split}
        names = [name for name, _ in self.splits]
        for name, fraction in self.splits:
            _check(name in valid, "splits", name, f"one of {', '.join(sorted(valid))}")
            _check(fraction >= 0.0, f"splits[{name}]", fraction, "non-negative")
        _check(len(set(names)) == len(names), "splits", names, "free of repeated names")
        total = sum(f for _, f in self.splits)
        _check(math.isclose(total, 1.0, abs_tol=1e-6), "the sum of split fractions",
               round(total, 6), "1")

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.devices)
