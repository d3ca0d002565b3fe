"""Write real DICOM CT series and non-image objects with pydicom.

The generator and the ingest tests both build series here, so everything a reader must cope
with is a parameter: orientation, per-slice positions (any order, tilt, gaps), pixel spacing
(row, column), rescale encoding, signed/unsigned storage and the transfer syntax.

Coordinates are DICOM patient coordinates (LPS, millimetres). Pixel arrays passed in are
indexed ``[slice, row, column]`` and hold Hounsfield units.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
SECONDARY_CAPTURE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
BASIC_TEXT_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")

_UNCOMPRESSED = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}


def make_uid(*parts: object) -> UID:
    """A deterministic DICOM UID (2.25 form) derived from `parts`.

    Example:
        >>> make_uid("study", 7) == make_uid("study", 7)
        True
    """
    # pydicom's generate_uid(prefix=None) ignores entropy_srcs and returns a random UUID
    # UID, so hash the parts ourselves: 128 bits of SHA-256, as a 2.25 UID (<= 44 chars).
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return UID(f"2.25.{int.from_bytes(digest[:16], 'big')}")


def ds_str(value: float) -> str:
    """Format a number as a valid Decimal String (at most 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        text = f"{value:.9g}"
    return text


@dataclass(frozen=True)
class PixelEncoding:
    """How Hounsfield units are stored: ``stored = (hu - intercept) / slope``.

    Attributes:
        slope: RescaleSlope.
        intercept: RescaleIntercept.
        signed: PixelRepresentation 1 (int16) when True, 0 (uint16) otherwise.
        bits_stored: BitsStored (12 or 16); values are clipped to this range.
    """

    slope: float = 1.0
    intercept: float = -1024.0
    signed: bool = False
    bits_stored: int = 12

    def __post_init__(self) -> None:
        if self.slope <= 0:
            raise ValueError(f"PixelEncoding.slope must be positive, got {self.slope}.")
        if not 8 <= self.bits_stored <= 16:
            raise ValueError(f"PixelEncoding.bits_stored must be 8..16, got {self.bits_stored}.")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int16 if self.signed else np.uint16)

    @property
    def stored_range(self) -> tuple[int, int]:
        if self.signed:
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1

    def encode(self, hu: np.ndarray) -> np.ndarray:
        """HU -> stored integer values, rounded and clipped to the stored range."""
        lo, hi = self.stored_range
        stored = np.rint((np.asarray(hu, dtype=np.float64) - self.intercept) / self.slope)
        return np.clip(stored, lo, hi).astype(self.dtype)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Stored values -> HU (float32)."""
        return (stored.astype(np.float32) * np.float32(self.slope)) + np.float32(self.intercept)


@dataclass(frozen=True)
class StudyHeader:
    """Patient and study level attributes. Identifiers here are synthetic."""

    study_uid: str
    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    study_time: str = "093000"
    study_id: str = "1"
    study_description: str = "CT ABDOMEN"
    referring_physician: str = "SYNTH^REFERRER"
    institution_name: str = "Synthetic General Hospital"


@dataclass(frozen=True)
class EquipmentHeader:
    """Scanner identity: the three tags that define a device group."""

    manufacturer: str
    model_name: str
    station_name: str
    software_versions: str = "1.0"
    device_serial_number: str = "0000"


@dataclass(frozen=True)
class SeriesSpec:
    """Series-level attributes and how pixels are written.

    Attributes:
        orientation: ImageOrientationPatient, row direction cosines then column direction.
        positions: ImagePositionPatient per slice, shape (n, 3), in the order of ``hu``.
        pixel_spacing: (row spacing, column spacing) in mm, as DICOM PixelSpacing.
        transfer_syntax: written transfer syntax; compressed syntaxes need an encoder.
        instance_numbers: InstanceNumber per slice; defaults to 1..n in array order.
    """

    series_uid: str
    frame_of_reference_uid: str
    orientation: Sequence[float]
    positions: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_thickness: float
    series_number: int = 2
    series_description: str = "ABDOMEN 1.0 B30f"
    modality: str = "CT"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    body_part: str = "ABDOMEN"
    patient_position: str = "HFS"
    convolution_kernel: str = "B30f"
    kvp: float = 120.0
    gantry_tilt: float = 0.0
    spacing_between_slices: float | None = None
    encoding: PixelEncoding = field(default_factory=PixelEncoding)
    transfer_syntax: str = ExplicitVRLittleEndian
    instance_numbers: Sequence[int] | None = None
    window: tuple[float, float] = (40.0, 400.0)


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "TRIAGE_SYNTH"
    return meta


def _base_dataset(
    study: StudyHeader,
    equipment: EquipmentHeader,
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
) -> FileDataset:
    ds = FileDataset(
        None, {}, file_meta=_file_meta(sop_class, sop_instance, transfer_syntax),
        preamble=b"\0" * 128,
    )
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(sop_instance)
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = UID(study.study_uid)
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StudyID = study.study_id
    ds.StudyDescription = study.study_description
    ds.AccessionNumber = study.accession_number
    ds.ReferringPhysicianName = study.referring_physician
    ds.InstitutionName = study.institution_name
    ds.Manufacturer = equipment.manufacturer
    ds.ManufacturerModelName = equipment.model_name
    ds.StationName = equipment.station_name
    ds.SoftwareVersions = equipment.software_versions
    ds.DeviceSerialNumber = equipment.device_serial_number
    return ds


def ct_slice_datasets(
    study: StudyHeader,
    equipment: EquipmentHeader,
    series: SeriesSpec,
    hu: np.ndarray,
) -> list[FileDataset]:
    """Build one CT Image Storage dataset per slice of `hu` (shape (n, rows, columns)).

    Compressed transfer syntaxes are encoded here, so the datasets are ready to save.

    Raises:
        ValueError: if `hu` and `series.positions` disagree on the number of slices.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"hu must have shape (slices, rows, columns), got {hu.shape}.")
    positions = np.asarray(series.positions, dtype=np.float64)
    n, rows, cols = hu.shape
    if positions.shape != (n, 3):
        raise ValueError(f"series.positions must have shape ({n}, 3), got {positions.shape}.")
    if len(series.orientation) != 6:
        raise ValueError(f"series.orientation needs 6 values, got {len(series.orientation)}.")
    numbers = list(series.instance_numbers or range(1, n + 1))
    if len(numbers) != n:
        raise ValueError(f"series.instance_numbers needs {n} values, got {len(numbers)}.")
    row_dir = np.asarray(series.orientation[:3], dtype=np.float64)
    col_dir = np.asarray(series.orientation[3:], dtype=np.float64)
    normal = np.cross(row_dir, col_dir)
    stored = series.encoding.encode(hu)
    lo, hi = series.encoding.stored_range
    now = _dt.datetime(2024, 1, 1, 9, 30)

    datasets = []
    for k in range(n):
        sop_uid = make_uid(series.series_uid, "slice", k)
        ds = _base_dataset(study, equipment, CT_IMAGE_STORAGE, sop_uid, ExplicitVRLittleEndian)
        ds.ImageType = list(series.image_type)
        ds.Modality = series.modality
        ds.SeriesInstanceUID = UID(series.series_uid)
        ds.SeriesNumber = series.series_number
        ds.SeriesDescription = series.series_description
        ds.SeriesDate = study.study_date
        ds.ContentDate = study.study_date
        ds.ContentTime = (now + _dt.timedelta(seconds=k)).strftime("%H%M%S")
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = int(numbers[k])
        ds.BodyPartExamined = series.body_part
        ds.PatientPosition = series.patient_position
        ds.FrameOfReferenceUID = UID(series.frame_of_reference_uid)
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [ds_str(v) for v in positions[k]]
        ds.ImageOrientationPatient = [ds_str(v) for v in series.orientation]
        ds.SliceLocation = ds_str(float(positions[k] @ normal))
        ds.PixelSpacing = [ds_str(series.pixel_spacing[0]), ds_str(series.pixel_spacing[1])]
        ds.SliceThickness = ds_str(series.slice_thickness)
        if series.spacing_between_slices is not None:
            ds.SpacingBetweenSlices = ds_str(series.spacing_between_slices)
        ds.KVP = ds_str(series.kvp)
        ds.ConvolutionKernel = series.convolution_kernel
        ds.GantryDetectorTilt = ds_str(series.gantry_tilt)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.BitsAllocated = 16
        ds.BitsStored = series.encoding.bits_stored
        ds.HighBit = series.encoding.bits_stored - 1
        ds.PixelRepresentation = 1 if series.encoding.signed else 0
        ds.SmallestImagePixelValue = int(max(lo, int(stored[k].min())))
        ds.LargestImagePixelValue = int(min(hi, int(stored[k].max())))
        ds["SmallestImagePixelValue"].VR = "SS" if series.encoding.signed else "US"
        ds["LargestImagePixelValue"].VR = "SS" if series.encoding.signed else "US"
        ds.RescaleIntercept = ds_str(series.encoding.intercept)
        ds.RescaleSlope = ds_str(series.encoding.slope)
        ds.RescaleType = "HU"
        ds.WindowCenter = ds_str(series.window[0])
        ds.WindowWidth = ds_str(series.window[1])
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        _set_transfer_syntax(ds, series.transfer_syntax, stored[k])
        datasets.append(ds)
    return datasets


def _set_transfer_syntax(ds: FileDataset, transfer_syntax: str, pixels: np.ndarray) -> None:
    """Switch `ds` to `transfer_syntax`, compressing pixel data when needed."""
    tsyntax = UID(transfer_syntax)
    if tsyntax in _UNCOMPRESSED:
        ds.file_meta.TransferSyntaxUID = tsyntax
        return
    # pydicom picks the encoder plugin (numpy RLE, pylibjpeg-openjpeg, pyjpegls).
    ds.compress(tsyntax, np.ascontiguousarray(pixels), generate_instance_uid=False)


def secondary_capture_dataset(
    study: StudyHeader,
    equipment: EquipmentHeader,
    series_uid: str,
    rgb: np.ndarray,
    series_number: int = 900,
) -> FileDataset:
    """A Secondary Capture image (e.g. a dose-report screenshot): RGB, DERIVED/SECONDARY."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (rows, columns, 3), got {rgb.shape}.")
    sop_uid = make_uid(series_uid, "sc")
    ds = _base_dataset(study, equipment, SECONDARY_CAPTURE_STORAGE, sop_uid, ExplicitVRLittleEndian)
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SeriesInstanceUID = UID(series_uid)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Dose Report"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rgb.tobytes()
    return ds


def text_report_dataset(
    study: StudyHeader,
    equipment: EquipmentHeader,
    series_uid: str,
    text: str,
    series_number: int = 999,
) -> FileDataset:
    """A Basic Text Structured Report: a non-image object that series selection must reject."""
    sop_uid = make_uid(series_uid, "sr")
    ds = _base_dataset(study, equipment, BASIC_TEXT_SR_STORAGE, sop_uid, ExplicitVRLittleEndian)
    ds.Modality = "SR"
    ds.SeriesInstanceUID = UID(series_uid)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Preliminary report"
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "PARTIAL"
    ds.VerificationFlag = "UNVERIFIED"
    concept = Dataset()
    concept.CodeValue = "18782-3"
    concept.CodingSchemeDesignator = "LN"
    concept.CodeMeaning = "Radiology Study observation"
    ds.ConceptNameCodeSequence = [concept]
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item_concept = Dataset()
    item_concept.CodeValue = "121071"
    item_concept.CodingSchemeDesignator = "DCM"
    item_concept.CodeMeaning = "Finding"
    item.ConceptNameCodeSequence = [item_concept]
    item.TextValue = text
    ds.ContentSequence = [item]
    return ds


def save(ds: FileDataset, path: Path) -> Path:
    """Write `ds` as a DICOM Part 10 file (with preamble and file meta), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
