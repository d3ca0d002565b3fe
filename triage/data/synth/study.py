"""One synthetic study with its ground truth: geometry, findings and the stored HU volumes.

`build_study` is a pure function of the config and the study's slot, so a study can be
regenerated at any time (tests compare the files on disk to ``build_study(...).series``).
Series of a study, in series-number order: 1 localizer (extras), 2 thin axial, 3 thick
axial (some studies), 900 dose report and 999 text report (extras).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from triage.data.synth.cohort import StudySlot
from triage.data.synth.config import SynthConfig
from triage.data.synth.devices import DeviceProfile
from triage.data.synth.dicom_writer import StudyHeader, make_uid
from triage.data.synth.extras import localizer_geometry, localizer_image
from triage.data.synth.findings import Distractor, Lesion, sample_distractor, sample_lesions
from triage.data.synth.geometry import SeriesGeometry, axial_geometry
from triage.data.synth.identity import Stream, rng_for, study_header
from triage.data.synth.layout import file_names, series_folder, study_folder
from triage.data.synth.phantom import (
    BodyParams,
    Placement,
    body_shapes,
    liver_shape,
    occluders,
    sample_body,
)
from triage.data.synth.scanner import Acquisition, acquire
from triage.data.synth.shapes import Ellipsoid
from triage.data.synth.texture import TextureField


class SeriesKind(StrEnum):
    """Role of a series in the study; written to ground_truth.json."""

    AXIAL = "axial"
    THICK = "axial-thick"
    LOCALIZER = "localizer"
    DOSE_REPORT = "dose-report"
    TEXT_REPORT = "text-report"


SERIES_NUMBERS = {SeriesKind.LOCALIZER: 1, SeriesKind.AXIAL: 2, SeriesKind.THICK: 3,
                  SeriesKind.DOSE_REPORT: 900, SeriesKind.TEXT_REPORT: 999}


@dataclass(frozen=True, eq=False)
class SeriesTruth:
    """Ground truth of one series. Arrays are in acquisition order (index k).

    Attributes:
        kind: role of the series.
        series_uid: SeriesInstanceUID.
        series_number: SeriesNumber.
        description: SeriesDescription.
        geometry: pixel geometry (None for SR and Secondary Capture).
        instance_numbers: InstanceNumber per slice.
        sop_uids: SOPInstanceUID per slice.
        files: paths relative to the export root, per slice.
        hu: stored HU volume ``[slice, row, column]``, or None when not rendered/kept.
        tilt_deg: gantry tilt.
        dropped: indices of the regular grid that are missing (irregular spacing).
    """

    kind: SeriesKind
    series_uid: str
    series_number: int
    description: str
    geometry: SeriesGeometry | None
    instance_numbers: tuple[int, ...]
    sop_uids: tuple[str, ...]
    files: tuple[str, ...]
    hu: np.ndarray | None = None
    tilt_deg: float = 0.0
    dropped: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class StudyTruth:
    """Ground truth of one study. `header` holds the synthetic identifiers: never log it."""

    slot: StudySlot
    header: StudyHeader
    frame_of_reference_uid: str
    body: BodyParams
    placement: Placement
    lesions: tuple[Lesion, ...]
    distractors: tuple[Distractor, ...]
    series: tuple[SeriesTruth, ...]
    export_path: str

    @property
    def study_uid(self) -> str:
        return self.header.study_uid

    @property
    def device(self) -> DeviceProfile:
        return self.slot.device

    @property
    def label(self) -> int:
        return self.slot.label

    def get_series(self, kind: SeriesKind) -> SeriesTruth | None:
        """The series of the given kind, or None."""
        return next((s for s in self.series if s.kind is kind), None)

    @property
    def primary(self) -> SeriesTruth:
        """The thin axial series that series selection should pick."""
        series = self.get_series(SeriesKind.AXIAL)
        assert series is not None
        return series


@dataclass(frozen=True)
class _Protocol:
    prone: bool
    tilt_deg: float
    dropped: tuple[int, ...]
    thick: bool
    center: tuple[float, float, float]


def occurs(fraction: float, ordinal: int) -> bool:
    """Whether the `ordinal`-th study (0-based) of a device gets a quirk of this frequency.

    A low-discrepancy rule instead of a coin flip: the first study of each device has every
    quirk its profile enables, and any run of studies has the configured share (+-1), so
    even tiny exports exercise prone scans, tilt and gaps.

    Example:
        >>> [occurs(0.35, k) for k in range(6)]
        [True, False, True, False, False, True]
    """
    return math.ceil((ordinal + 1) * fraction - 1e-9) > math.ceil(ordinal * fraction - 1e-9)


def _protocol(config: SynthConfig, slot: StudySlot, rng: np.random.Generator,
              at: Placement) -> _Protocol:
    device = slot.device
    ordinal = slot.index // len(config.devices)
    tilt = device.gantry_tilt_deg if occurs(device.tilt_fraction, ordinal) else 0.0
    gaps = occurs(device.gap_fraction, ordinal)
    count = int(rng.integers(1, 3))
    thick = bool(rng.uniform() < config.thick_fraction)
    center = (round(float(rng.uniform(-5, 5)), 1), round(float(rng.uniform(-5, 5)), 1),
              round(at.z0 + float(rng.uniform(-15, 15)), 1))
    dropped: tuple[int, ...] = ()
    total = config.slices + count
    if gaps and total >= 6:
        interior = np.arange(2, total - 2)
        picked = rng.choice(interior, size=min(count, len(interior)), replace=False)
        dropped = tuple(sorted(int(i) for i in picked))
    return _Protocol(at.prone, tilt, dropped, thick, center)


def _series_truth(kind: SeriesKind, study_uid: str, description: str,
                  geometry: SeriesGeometry | None, folder: str, names_rng: np.random.Generator,
                  device: DeviceProfile, n: int = 1, tilt_deg: float = 0.0,
                  dropped: tuple[int, ...] = ()) -> SeriesTruth:
    number = SERIES_NUMBERS[kind]
    uid = str(make_uid(study_uid, "series", number))
    if kind is SeriesKind.DOSE_REPORT:
        sops = (str(make_uid(uid, "sc")),)
    elif kind is SeriesKind.TEXT_REPORT:
        sops = (str(make_uid(uid, "sr")),)
    else:
        sops = tuple(str(make_uid(uid, "slice", k)) for k in range(n))
    numbers = tuple(range(n, 0, -1)) if device.reversed_instances and n > 1 else tuple(
        range(1, n + 1))
    names = file_names(device.naming, numbers, sops, names_rng)
    files = tuple(f"{folder}/{series_folder(number)}/{name}" for name in names)
    return SeriesTruth(kind, uid, number, description, geometry, numbers, sops, files,
                       tilt_deg=tilt_deg, dropped=dropped)


def build_study(config: SynthConfig, slot: StudySlot, *, render: bool = True) -> StudyTruth:
    """Plan (and with `render`, synthesize) one study deterministically from its slot."""
    seed, p, v, device = config.seed, slot.patient, slot.visit, slot.device
    header = study_header(seed, p, v, slot.index)
    body = sample_body(rng_for(seed, Stream.ANATOMY, p))
    rng = rng_for(seed, Stream.STUDY, p, v)
    ordinal = slot.index // len(config.devices)
    at = Placement(round(float(rng.uniform(-12, 12)), 1), round(float(rng.uniform(-12, 12)), 1),
                   round(float(rng.uniform(-600, -150)), 1),
                   prone=occurs(device.prone_fraction, ordinal))
    proto = _protocol(config, slot, rng, at)
    matrix = device.matrix(config.matrix)
    common = dict(center=proto.center, fov_mm=device.fov_mm, matrix=matrix, prone=proto.prone,
                  tilt_deg=proto.tilt_deg, feet_first=device.feet_first_order)
    thin = axial_geometry(n_slices=config.slices, spacing_mm=device.slice_spacing_mm,
                          thickness_mm=device.slice_thickness_mm, dropped=proto.dropped,
                          **common)
    coverage = config.slices * device.slice_spacing_mm
    n_thick = max(3, int(round(coverage / config.thick_mm)))
    thick = axial_geometry(n_slices=n_thick, spacing_mm=config.thick_mm,
                           thickness_mm=config.thick_mm, **common) if proto.thick else None

    findings_rng = rng_for(seed, Stream.FINDINGS, p, v)
    liver, blockers = liver_shape(body, at), occluders(body, at)
    lesions: tuple[Lesion, ...] = ()
    if slot.label:
        weights = 0.5 ** np.arange(config.max_lesions)
        count = 1 + int(findings_rng.choice(config.max_lesions, p=weights / weights.sum()))
        lesions = sample_lesions(findings_rng, count=count, liver=liver, series=[thin],
                                 occluders=blockers, diameter_mm=config.lesion_diameter_mm,
                                 contrast_hu=config.lesion_contrast_hu)
    distractors: tuple[Distractor, ...] = ()
    if findings_rng.uniform() < config.distractor_probability:
        distractors = (sample_distractor(findings_rng, liver=liver, liver_hu=body.liver_hu,
                                         series=[thin], occluders=blockers),)
    shapes = body_shapes(body, at, tuple([*(les.shape(body.liver_hu) for les in lesions),
                                          *(d.shape() for d in distractors)]))

    folder = study_folder(slot.patient_key, v)
    names_rng = rng_for(seed, Stream.STUDY, p, v, 1)
    series = [_series_truth(SeriesKind.AXIAL, header.study_uid,
                            device.series_description(device.slice_thickness_mm), thin, folder,
                            names_rng, device, thin.n_slices, proto.tilt_deg, proto.dropped)]
    if thick is not None:
        series.append(_series_truth(SeriesKind.THICK, header.study_uid,
                                    device.series_description(config.thick_mm), thick, folder,
                                    names_rng, device, thick.n_slices, proto.tilt_deg))
    if config.extras:
        scout = localizer_geometry(at, proto.center, max(200.0, coverage + 120.0), matrix,
                                   device.fov_mm[1])
        series.append(_series_truth(SeriesKind.LOCALIZER, header.study_uid, "TOPOGRAM 0.6",
                                    scout, folder, names_rng, device))
        series.append(_series_truth(SeriesKind.DOSE_REPORT, header.study_uid, "Dose Report",
                                    None, folder, names_rng, device))
        series.append(_series_truth(SeriesKind.TEXT_REPORT, header.study_uid,
                                    "Preliminary report", None, folder, names_rng, device))
    if render:
        series = _render(config, slot, body, at, shapes, series)
    series.sort(key=lambda s: s.series_number)
    return StudyTruth(slot, header, str(make_uid(header.study_uid, "frame-of-reference")),
                      body, at, lesions, distractors, tuple(series), folder)


def _render(config: SynthConfig, slot: StudySlot, body: BodyParams, at: Placement,
            shapes: tuple[Ellipsoid, ...], series: list[SeriesTruth]) -> list[SeriesTruth]:
    """Fill `hu` of every image series."""
    device = slot.device
    axial = [s for s in series if s.kind in (SeriesKind.AXIAL, SeriesKind.THICK)]
    zs = [z for s in axial for z in s.geometry.z_range()]
    low = np.array([at.x0 - body.half_width, at.y0 - body.half_depth, min(zs)])
    high = np.array([at.x0 + body.half_width, at.y0 + body.half_depth, max(zs)])
    texture = TextureField.random(rng_for(config.seed, Stream.NOISE, slot.patient, slot.visit),
                                  low, high)
    out = []
    for s in series:
        noise_rng = rng_for(config.seed, Stream.NOISE, slot.patient, slot.visit, s.series_number)
        if s.kind is SeriesKind.LOCALIZER:
            s = replace(s, hu=localizer_image(shapes, s.geometry, body, device.encoding,
                                              noise_rng))
        elif s.geometry is not None:
            thickness_ratio = device.slice_thickness_mm / s.geometry.slice_thickness
            effects = Acquisition(device.kernel,
                                  device.noise_hu * config.noise_scale * math.sqrt(thickness_ratio),
                                  device.hu_offset, device.encoding, config.texture_hu)
            s = replace(s, hu=acquire(shapes, s.geometry, effects, texture, noise_rng))
        out.append(s)
    return out
