"""Seeded factories that write DICOM CT series with known geometry for the loader tests.

Every series samples one analytic phantom, `phantom_hu`, a linear function of the LPS
position, so any voxel's expected value follows from the geometry alone: a flipped axis,
a wrong origin or a misplaced slice shows up as a value mismatch, and linear interpolation
along the slice normal reproduces the phantom exactly (up to the integer storage).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom import config, dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from triage.data.synth.dicom_writer import (
    EquipmentHeader,
    PixelEncoding,
    SeriesSpec,
    StudyHeader,
    ct_slice_datasets,
    ds_str,
    make_uid,
    save,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
PRONE = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)

#: HU per mm along L, P, S, and the value at the LPS origin.
PHANTOM_GRADIENT = np.array([1.5, -2.0, 3.0])
PHANTOM_OFFSET = 40.0


def oblique_orientation(angle_x_deg: float = 20.0, angle_y_deg: float = 20.0) -> tuple:
    """Axial IOP rotated about the L axis, then about the P axis (degrees).

    ``oblique_orientation(t, 0)`` is the IOP of a CT acquired with a gantry tilt of t.
    """
    ax, ay = np.deg2rad([angle_x_deg, angle_y_deg])
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rot_y = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rot = rot_y @ rot_x
    return tuple(float(v) for v in np.concatenate([rot[:, 0], rot[:, 1]]))


def phantom_hu(points: np.ndarray) -> np.ndarray:
    """The analytic phantom: HU at LPS points (..., 3)."""
    return np.asarray(points, dtype=np.float64) @ PHANTOM_GRADIENT + PHANTOM_OFFSET


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """cross(row direction, column direction) of an ImageOrientationPatient."""
    iop = np.asarray(orientation, dtype=np.float64)
    return np.cross(iop[:3], iop[3:])


def pixel_points(
    position: np.ndarray, orientation: Sequence[float], pixel_spacing: tuple[float, float],
    rows: int, cols: int,
) -> np.ndarray:
    """LPS centre of every pixel of one slice, shape (rows, cols, 3)."""
    iop = np.asarray(orientation, dtype=np.float64)
    r = np.arange(rows)[:, None, None]
    c = np.arange(cols)[None, :, None]
    return (np.asarray(position, dtype=np.float64)
            + c * pixel_spacing[1] * iop[:3] + r * pixel_spacing[0] * iop[3:])


@dataclass(frozen=True)
class SeriesRecipe:
    """Geometry and encoding of one synthetic series.

    Attributes:
        orientation: ImageOrientationPatient.
        n_slices, rows, cols: image size.
        pixel_spacing: (row spacing, column spacing) in mm.
        step: distance between slices along the normal, in mm.
        offsets: slice offsets along the normal (overrides `step`), in array order.
        origin: LPS position of the first slice's first pixel.
        track: direction along which the positions advance (default: the slice
            normal); another direction makes a gantry-tilt series, whose positions
            then advance by ``offset`` along `track`.
        file_order: "sorted", "reversed" or "shuffled" order of files on disk.
        descending: positions decrease along the normal in InstanceNumber order.
        encoding: how HU are stored.
        transfer_syntax: transfer syntax UID.
        gantry_tilt: GantryDetectorTilt written in the header.
        seed: seed for shuffling.
    """

    orientation: tuple[float, ...] = AXIAL
    n_slices: int = 16
    rows: int = 40
    cols: int = 48
    pixel_spacing: tuple[float, float] = (0.7, 0.8)
    step: float = 2.5
    offsets: tuple[float, ...] | None = None
    origin: tuple[float, float, float] = (-20.0, -15.0, 30.0)
    track: tuple[float, float, float] | None = None
    file_order: str = "sorted"
    descending: bool = False
    encoding: PixelEncoding = field(default_factory=PixelEncoding)
    transfer_syntax: str = ExplicitVRLittleEndian
    gantry_tilt: float = 0.0
    seed: int = 0

    def with_(self, **changes: object) -> SeriesRecipe:
        """A copy with `changes` applied."""
        return replace(self, **changes)

    def slice_offsets(self) -> np.ndarray:
        """Offsets along the normal in InstanceNumber order."""
        if self.offsets is not None:
            offsets = np.asarray(self.offsets, dtype=np.float64)
        else:
            offsets = np.arange(self.n_slices) * self.step
        return offsets[::-1].copy() if self.descending else offsets

    def positions(self) -> np.ndarray:
        """ImagePositionPatient per slice in InstanceNumber order, shape (n, 3)."""
        offsets = self.slice_offsets()
        track = slice_normal(self.orientation) if self.track is None else np.asarray(
            self.track, dtype=np.float64)
        return np.asarray(self.origin) + offsets[:, None] * track


@dataclass
class WrittenSeries:
    """What `write_series` wrote: paths in file-name order and the ground truth."""

    folder: Path
    paths: list[Path]
    recipe: SeriesRecipe
    positions: np.ndarray
    hu: np.ndarray
    series_uid: str
    study_uid: str


STUDY = StudyHeader(
    study_uid=make_uid("loader-tests", "study"),
    patient_name="SYNTH^LOADER",
    patient_id="SYN-0001",
    patient_birth_date="19700101",
    patient_sex="O",
    accession_number="ACC0001",
    study_date="20240101",
)
EQUIPMENT = EquipmentHeader(manufacturer="SYNTHCO", model_name="Model X", station_name="CT01")

Mutator = Callable[[int, FileDataset], None]


def phantom_series(recipe: SeriesRecipe) -> tuple[np.ndarray, np.ndarray]:
    """Positions (n, 3) and phantom HU (n, rows, cols) in InstanceNumber order."""
    positions = recipe.positions()
    hu = np.stack([
        phantom_hu(pixel_points(p, recipe.orientation, recipe.pixel_spacing,
                                recipe.rows, recipe.cols))
        for p in positions
    ])
    return positions, hu


def write_series(
    folder: Path,
    recipe: SeriesRecipe = SeriesRecipe(),
    *,
    name: str = "series",
    mutate: Mutator | None = None,
    hu: np.ndarray | None = None,
    datasets_hook: Callable[[list[FileDataset]], list[FileDataset]] | None = None,
) -> WrittenSeries:
    """Write `recipe` as one file per slice under ``folder / name``.

    Args:
        folder: parent folder (a pytest ``tmp_path``).
        recipe: geometry and encoding.
        name: sub-folder name; also seeds the UIDs.
        mutate: called as ``mutate(k, ds)`` on each dataset before saving (k in
            InstanceNumber order) to plant a defect.
        hu: pixel values (n, rows, cols) instead of the phantom.
        datasets_hook: receives the full dataset list and returns the list to save
            (to add, drop or duplicate slices).

    Returns:
        The written series with paths in file-name order.
    """
    positions, phantom = phantom_series(recipe)
    values = phantom if hu is None else np.asarray(hu)
    series_uid = make_uid("loader-tests", name, "series")
    spec = SeriesSpec(
        series_uid=series_uid,
        frame_of_reference_uid=make_uid("loader-tests", name, "for"),
        orientation=recipe.orientation,
        positions=positions,
        pixel_spacing=recipe.pixel_spacing,
        slice_thickness=abs(recipe.step),
        encoding=recipe.encoding,
        transfer_syntax=recipe.transfer_syntax,
        gantry_tilt=recipe.gantry_tilt,
    )
    datasets = ct_slice_datasets(STUDY, EQUIPMENT, spec, values)
    if mutate is not None:
        for k, ds in enumerate(datasets):
            mutate(k, ds)
    if datasets_hook is not None:
        datasets = datasets_hook(datasets)
    order = np.arange(len(datasets))
    if recipe.file_order == "reversed":
        order = order[::-1]
    elif recipe.file_order == "shuffled":
        order = np.random.default_rng(recipe.seed).permutation(len(datasets))
    elif recipe.file_order != "sorted":
        raise ValueError(f"Unknown file_order {recipe.file_order!r}.")
    target = folder / name
    paths = [save(datasets[k], target / f"IM{i:04d}.dcm") for i, k in enumerate(order)]
    return WrittenSeries(target, paths, recipe, positions, values, series_uid,
                         STUDY.study_uid)


def expected_lps(volume_affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """LPS centre of every voxel of a volume, shape (*shape, 3)."""
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    return idx @ volume_affine[:3, :3].T + volume_affine[:3, 3]


def own_study(*names: str) -> Mutator:
    """A mutator that puts the series in a study of its own, its Study Instance UID derived
    from `names` (the same names give the same study)."""
    uid = make_uid(*names, "study")

    def mutate(_: int, ds: FileDataset) -> None:
        ds.StudyInstanceUID = uid

    return mutate


def overlong_decimals(keyword: str = "ImagePositionPatient", digits: int = 18) -> Mutator:
    """A mutator rewriting `keyword` as over-long decimal strings ('-125.000000000000000000').

    Such values are invalid DICOM (DS allows 16 characters) but unambiguous; they are
    seen in the wild and break MONAI's PydicomReader.
    """

    def mutate(_: int, ds: FileDataset) -> None:
        values = [float(v) for v in ds[keyword].value]
        with config.disable_value_validation():
            ds[keyword] = DataElement(ds[keyword].tag, "DS",
                                      [f"{v:.{digits}f}" for v in values])

    return mutate


def patch_text(path: Path, keyword: str, text: str) -> None:
    """Overwrite the value of text element `keyword` in the saved file `path` in place.

    pydicom validates values when it writes them, so a malformed value is planted by
    editing the bytes: `text` is space-padded to the existing value's length (which it
    must not exceed), so no other byte of the file moves.
    """
    ds = dcmread(path, stop_before_pixels=True)
    old = ds.get_item(Tag(keyword)).value
    new = text.encode("ascii")
    if len(new) > len(old):
        raise ValueError(f"{text!r} is longer than the existing value {old!r}.")
    data = path.read_bytes()
    if data.count(old) != 1:
        raise ValueError(f"The value {old!r} of {keyword} is not unique in {path}.")
    path.write_bytes(data.replace(old, new.ljust(len(old))))


def resized(ds: FileDataset, rows: int, cols: int, value: int = 0) -> FileDataset:
    """A copy of a native-syntax slice with another size and a new SOP instance UID."""
    out = copy.deepcopy(ds)
    out.Rows, out.Columns = rows, cols
    out.PixelData = np.full((rows, cols), value, dtype=np.uint16).tobytes()
    renumber(out, "resized")
    return out


def renumber(ds: FileDataset, tag: str) -> None:
    """Give `ds` a new, deterministic SOP instance UID derived from its old one."""
    uid = make_uid(ds.SOPInstanceUID, tag)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid


def localizer_from(ds: FileDataset, *, typed: bool = True, index: int = 0) -> FileDataset:
    """A coronal copy of slice `ds` (a stray scout image), ImageType LOCALIZER if `typed`."""
    out = copy.deepcopy(ds)
    out.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    out.ImagePositionPatient = [-50.0, 10.0 + index, 80.0]
    if typed:
        out.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    renumber(out, f"localizer-{index}")
    return out


ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def write_enhanced_ct(
    folder: Path,
    recipe: SeriesRecipe = SeriesRecipe(),
    *,
    name: str = "enhanced",
    frame_order: Sequence[int] | None = None,
    per_frame_rescale: Sequence[tuple[float, float]] | None = None,
    functional_groups: bool = True,
) -> tuple[Path, np.ndarray, np.ndarray]:
    """Write `recipe` as one Enhanced CT Image Storage file with functional groups.

    Args:
        folder: parent folder.
        recipe: geometry and encoding (uncompressed syntaxes only).
        name: file stem; seeds UIDs.
        frame_order: InstanceNumber-order slice index stored as each frame (default as is).
        per_frame_rescale: (slope, intercept) per stored frame, in PixelValueTransformation
            per frame; otherwise one shared transformation from `recipe.encoding`.
        functional_groups: False writes a classic multi-frame (one top-level position).

    Returns:
        The file path, positions and HU in InstanceNumber order.
    """
    positions, hu = phantom_series(recipe)
    order = list(range(len(positions)) if frame_order is None else frame_order)
    series = SeriesSpec(
        series_uid=make_uid("loader-tests", name, "series"),
        frame_of_reference_uid=make_uid("loader-tests", name, "for"),
        orientation=recipe.orientation, positions=positions[:1],
        pixel_spacing=recipe.pixel_spacing, slice_thickness=abs(recipe.step),
        encoding=recipe.encoding,
    )
    ds = ct_slice_datasets(STUDY, EQUIPMENT, series, hu[:1])[0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT_STORAGE
    ds.NumberOfFrames = len(order)
    rescale = list(per_frame_rescale or [])
    frames = []
    for stored_index, k in enumerate(order):
        if rescale:
            slope, intercept = rescale[stored_index]
            enc = PixelEncoding(slope=slope, intercept=intercept,
                                signed=recipe.encoding.signed,
                                bits_stored=recipe.encoding.bits_stored)
        else:
            enc = recipe.encoding
        frames.append(enc.encode(hu[k]))
    ds.PixelData = np.ascontiguousarray(np.stack(frames)).tobytes()
    if functional_groups:
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                        "SliceThickness", "RescaleSlope", "RescaleIntercept", "RescaleType",
                        "SliceLocation"):
            delattr(ds, keyword)
        shared = _item(
            PlaneOrientationSequence=[_item(ImageOrientationPatient=[
                ds_str(v) for v in recipe.orientation])],
            PixelMeasuresSequence=[_item(PixelSpacing=[ds_str(v) for v in recipe.pixel_spacing],
                                         SliceThickness=ds_str(abs(recipe.step)))],
        )
        if not rescale:
            shared.PixelValueTransformationSequence = [_item(
                RescaleSlope=ds_str(recipe.encoding.slope),
                RescaleIntercept=ds_str(recipe.encoding.intercept), RescaleType="HU")]
        ds.SharedFunctionalGroupsSequence = [shared]
        per_frame = []
        for stored_index, k in enumerate(order):
            group = _item(
                PlanePositionSequence=[_item(ImagePositionPatient=[
                    ds_str(v) for v in positions[k]])],
                FrameContentSequence=[_item(InStackPositionNumber=k + 1)],
            )
            if rescale:
                slope, intercept = rescale[stored_index]
                group.PixelValueTransformationSequence = [_item(
                    RescaleSlope=ds_str(slope), RescaleIntercept=ds_str(intercept),
                    RescaleType="HU")]
            per_frame.append(group)
        ds.PerFrameFunctionalGroupsSequence = per_frame
    path = save(ds, folder / f"{name}.dcm")
    return path, positions, hu
