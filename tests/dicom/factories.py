"""Seeded factories that write small, real DICOM exports (and bad files) for ingest tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import FileDataset
from pydicom.uid import ExplicitVRLittleEndian

from triage.data.synth.dicom_writer import (
    EquipmentHeader,
    SeriesSpec,
    StudyHeader,
    ct_slice_datasets,
    make_uid,
    save,
    secondary_capture_dataset,
    text_report_dataset,
)
from triage.dicom.scan.index import InstanceRecord

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ACME = EquipmentHeader("ACME Medical", "CT-One", "ACME01")
BOREALIS = EquipmentHeader("Borealis", "X9", "BOR9")
Edit = Callable[[FileDataset, int], None]


def study_header(key: str) -> StudyHeader:
    """A study with synthetic identifiers derived from `key`."""
    return StudyHeader(
        study_uid=make_uid("study", key), patient_name=f"SYNTH^{key.upper()}",
        patient_id=f"PID-{key}", patient_birth_date="19700101", patient_sex="O",
        accession_number=f"ACC-{key}", study_date="20240101",
    )


def ct_datasets(
    study: StudyHeader,
    equipment: EquipmentHeader,
    key: str,
    *,
    slices: int = 20,
    size: int = 32,
    thickness: float = 1.0,
    orientation: Sequence[float] = AXIAL,
    series_number: int = 2,
    description: str = "ABDOMEN 1.0 B30f",
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    transfer_syntax: str = ExplicitVRLittleEndian,
    series_uid: str | None = None,
    seed: int = 0,
) -> list[FileDataset]:
    """One CT series as datasets: `slices` images `size`² spaced `thickness` mm apart."""
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([-16.0, -16.0, 0.0]) + np.outer(np.arange(slices) * thickness, normal)
    spec = SeriesSpec(
        series_uid=series_uid or make_uid(study.study_uid, "series", key),
        frame_of_reference_uid=make_uid(study.study_uid, "for"),
        orientation=tuple(orientation), positions=positions, pixel_spacing=(1.0, 1.0),
        slice_thickness=thickness, series_number=series_number,
        series_description=description, image_type=image_type,
        transfer_syntax=transfer_syntax,
    )
    hu = np.random.default_rng(seed).normal(40.0, 20.0, (slices, size, size))
    return ct_slice_datasets(study, equipment, spec, hu)


def write_datasets(folder: Path, datasets: Sequence[FileDataset], *, prefix: str = "IM",
                   suffix: str = ".dcm", edit: Edit | None = None, start: int = 0) -> list[Path]:
    """Save datasets as ``<prefix><n><suffix>``, after ``edit(ds, index)`` when given."""
    paths = []
    for k, ds in enumerate(datasets):
        if edit is not None:
            edit(ds, k)
        paths.append(save(ds, folder / f"{prefix}{start + k:04d}{suffix}"))
    return paths


def write_ct_series(folder: Path, study: StudyHeader, equipment: EquipmentHeader, key: str,
                    *, suffix: str = ".dcm", edit: Edit | None = None, **options) -> list[Path]:
    """Write one CT series (see `ct_datasets` for the options) into `folder`."""
    datasets = ct_datasets(study, equipment, key, **options)
    return write_datasets(folder, datasets, suffix=suffix, edit=edit)


def write_sr(folder: Path, study: StudyHeader, equipment: EquipmentHeader) -> Path:
    """A Basic Text SR (ContentDate/Time set so a DICOMDIR can index it)."""
    ds = text_report_dataset(study, equipment, make_uid(study.study_uid, "sr"), "No finding.")
    ds.ContentDate, ds.ContentTime = study.study_date, "093000"
    return save(ds, folder / "SR0001.dcm")


def write_sc(folder: Path, study: StudyHeader, equipment: EquipmentHeader,
             modality: str = "OT") -> Path:
    """A Secondary Capture dose screenshot, with the given Modality."""
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    ds = secondary_capture_dataset(study, equipment, make_uid(study.study_uid, "sc", modality),
                                   rgb, series_number=900 if modality == "OT" else 901)
    ds.Modality = modality
    return save(ds, folder / f"SC{modality}.dcm")


def set_raw_ds(ds: FileDataset, keyword_tag: int, values: Sequence[str]) -> None:
    """Store DS strings as given, even when they break the 16-character limit."""
    ds[keyword_tag] = DataElement(keyword_tag, "DS", list(values),
                                  validation_mode=config.IGNORE)


def overlong_positions(ds: FileDataset, _: int) -> None:
    """Rewrite ImagePositionPatient with 20+ character decimals, as some scanners do."""
    values = [float(v) for v in ds.ImagePositionPatient]
    set_raw_ds(ds, 0x00200032, [f"{v:.18f}" for v in values])


def second_at_first_position(ds: FileDataset, index: int) -> None:
    """Put the second slice where the first is: one position holds two images."""
    if index == 1:
        ds.ImagePositionPatient = [-16.0, -16.0, 0.0]  # `ct_datasets`' first position


def short_pixel_data(ds: FileDataset, _: int) -> None:
    """Drop the last 100 bytes of native pixel data (the header still needs them)."""
    ds.PixelData = ds.PixelData[:-100]


def huge_matrix(ds: FileDataset, _: int) -> None:
    """Declare 65535 x 65535 pixels, far more than the pixel data holds."""
    ds.Rows = ds.Columns = 65535


def patch_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` (same length) once in the file: junk a valid value."""
    if len(old) != len(new):
        raise ValueError("patch_bytes keeps offsets: old and new must have the same length.")
    data = path.read_bytes()
    if old not in data:
        raise ValueError(f"{old!r} not found in {path}.")
    path.write_bytes(data.replace(old, new, 1))


def truncate(path: Path, drop: int) -> int:
    """Cut the last `drop` bytes off the file; returns the new size."""
    size = path.stat().st_size - drop
    os.truncate(path, size)
    return size


def corrupt_file(path: Path, seed: int = 0) -> Path:
    """A 'DICM' prefix followed by random bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = np.random.default_rng(seed).bytes(3000)
    path.write_bytes(b"\0" * 128 + b"DICM" + payload)
    return path


def make_record(**values) -> InstanceRecord:
    """An in-memory record of a readable 32² CT slice; override any field."""
    base = dict(
        path=Path("/export/IM0001.dcm"), file_size=2600,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.4.1",
        study_uid="1.2.3", series_uid="1.2.3.4", modality="CT", device_group="acme-ct-one",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"), rows=32, columns=32,
        image_position=(0.0, 0.0, 0.0), image_orientation=AXIAL, pixel_spacing=(1.0, 1.0),
        slice_thickness=1.0, instance_number=1, has_pixel_data=True, series_number=2,
        series_description="ABDOMEN",
    )
    base.update(values)
    return InstanceRecord(**base)


def make_series(n: int, *, series_uid: str = "1.2.3.4", thickness: float = 1.0,
                orientation: Sequence[float] = AXIAL, start: int = 0, **values
                ) -> list[InstanceRecord]:
    """`n` in-memory records of one series, stacked along the orientation's normal."""
    normal = np.cross(orientation[:3], orientation[3:])
    return [make_record(
        path=Path(f"/export/{series_uid}/IM{start + k:04d}.dcm"), series_uid=series_uid,
        sop_instance_uid=f"{series_uid}.{start + k + 1}", instance_number=start + k + 1,
        image_position=tuple(float(v) for v in normal * (start + k) * thickness),
        image_orientation=tuple(orientation), slice_thickness=thickness, **values,
    ) for k in range(n)]


@dataclass
class Export:
    """A written test export: its root and the files and UIDs tests assert on."""

    root: Path
    paths: dict[str, Path] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)


def _rename_instance(ds: FileDataset, *parts: object) -> None:
    uid = make_uid(ds.SeriesInstanceUID, *parts)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid


def build_export(root: Path) -> Export:
    """The standard messy export of the ingest tests (about 110 files of 32², < 1 s).

    ::

        README.txt, preview.jpg          not DICOM: ignored and counted
        empty.dcm, garbage.dcm           zero-length; 'DICM' + random bytes
        study_a/ (ACME)  thin/   21 x 1 mm, series 2; the last file truncated in its pixels
                         thick/  18 x 5 mm, series 3
                         topo/   2 coronal LOCALIZER images, 'Topogram 0.6 T20f', series 1
                         sr/, sc/ (OT), sc_ct/ (Secondary Capture with Modality CT)
        study_b/ (Borealis, files without suffix)
                         axial/  20 axial + 1 coronal LOCALIZER image in the same series
                         short/  3 slices, series 4;  nopix/  1 CT without PixelData, series 5
                         derived/ 16 DERIVED\\SECONDARY slices, series 6
                         loop -> ..  (symlink to an ancestor)
        study_c/ (ACME)  17 slices, over-long ImagePositionPatient strings; slice 0 has a junk
                         PixelSpacing, slice 1 no ImagePositionPatient/ImageOrientationPatient
        study_d/ (Borealis) topo/ 'SCOUT' x2, few/ 5 slices, mixed/ 10 axial + 8 coronal
    """
    export = Export(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.txt").write_text("Exported by PACS.\n")
    (root / "preview.jpg").write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(900))
    (root / "empty.dcm").write_bytes(b"")
    export.paths["empty"] = root / "empty.dcm"
    export.paths["garbage"] = corrupt_file(root / "garbage.dcm")

    a, b, c, d = (study_header(k) for k in "abcd")
    for key, header in zip("abcd", (a, b, c, d), strict=True):
        export.uids[f"study_{key}"] = header.study_uid
    folder = root / "study_a"
    thin = write_ct_series(folder / "thin", a, ACME, "thin", slices=21, thickness=1.0)
    export.paths["truncated"] = thin[-1]
    truncate(thin[-1], 500)
    write_ct_series(folder / "thick", a, ACME, "thick", slices=18, thickness=5.0,
                    series_number=3, description="ABDOMEN 5.0 B30f")
    write_ct_series(folder / "topo", a, ACME, "topo", slices=2, orientation=CORONAL,
                    series_number=1, description="Topogram 0.6 T20f",
                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    export.paths["sr"] = write_sr(folder / "sr", a, ACME)
    export.paths["sc"] = write_sc(folder / "sc", a, ACME)
    export.paths["sc_ct"] = write_sc(folder / "sc_ct", a, ACME, modality="CT")

    folder = root / "study_b"
    axial = ct_datasets(b, BOREALIS, "axial", slices=20)
    stray = ct_datasets(b, BOREALIS, "stray", slices=1, orientation=CORONAL,
                        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                        series_uid=axial[0].SeriesInstanceUID)
    _rename_instance(stray[0], "stray")
    write_datasets(folder / "axial", axial + stray, suffix="")
    write_ct_series(folder / "short", b, BOREALIS, "short", slices=3, series_number=4,
                    suffix="")
    export.paths["nopix"] = write_ct_series(
        folder / "nopix", b, BOREALIS, "nopix", slices=1, series_number=5, suffix="",
        edit=lambda ds, _: delattr(ds, "PixelData"))[0]
    write_ct_series(folder / "derived", b, BOREALIS, "derived", slices=16, series_number=6,
                    image_type=("DERIVED", "SECONDARY", "MPR"), suffix="")
    (folder / "loop").symlink_to("..", target_is_directory=True)
    export.paths["loop"] = folder / "loop"

    def malformed(ds: FileDataset, k: int) -> None:
        overlong_positions(ds, k)
        if k == 0:
            ds.PixelSpacing = ["0.977", "0.977"]
        if k == 1:
            del ds.ImagePositionPatient, ds.ImageOrientationPatient

    paths = write_ct_series(root / "study_c", c, ACME, "malformed", slices=17, edit=malformed)
    patch_bytes(paths[0], b"0.977\\0.977", b"abcde\\0.977")
    export.paths["junk_spacing"], export.paths["no_geometry"] = paths[0], paths[1]
    export.paths["overlong"] = paths[2]

    folder = root / "study_d"
    write_ct_series(folder / "topo", d, BOREALIS, "topo", slices=2, series_number=1,
                    description="SCOUT")
    write_ct_series(folder / "few", d, BOREALIS, "few", slices=5, series_number=2)
    mixed = ct_datasets(d, BOREALIS, "mixed", slices=10, series_number=3)
    coronal = ct_datasets(d, BOREALIS, "mixed-cor", slices=8, series_number=3,
                          orientation=CORONAL, series_uid=mixed[0].SeriesInstanceUID)
    for k, ds in enumerate(coronal):
        _rename_instance(ds, "coronal", k)
    write_datasets(folder / "mixed", mixed + coronal)
    for name, series in (("axial", axial), ("mixed", mixed)):
        export.uids[name] = str(series[0].SeriesInstanceUID)
    for name, header in (("thin", a), ("thick", a), ("malformed", c)):
        export.uids[name] = str(make_uid(header.study_uid, "series", name))
    return export


def build_dicomdir_export(root: Path) -> Export:
    """A small export written through a pydicom `FileSet`: DICOMDIR + PT*/ST*/SE*/IM* files."""
    from pydicom.fileset import FileSet

    header = study_header("dicomdir")
    file_set = FileSet()
    for ds in ct_datasets(header, ACME, "dd", slices=4):
        file_set.add(ds)
    report = text_report_dataset(header, ACME, make_uid(header.study_uid, "sr"), "No finding.")
    report.ContentDate, report.ContentTime = header.study_date, "093000"
    file_set.add(report)
    file_set.write(root)
    export = Export(root, uids={"study": header.study_uid,
                                "series": str(make_uid(header.study_uid, "series", "dd"))})
    export.paths["dicomdir"] = root / "DICOMDIR"
    return export


def enhanced_ct_dataset(study: StudyHeader, frames: int = 4, size: int = 32) -> FileDataset:
    """An Enhanced CT multi-frame instance: geometry only in the functional groups."""
    from pydicom.dataset import Dataset

    ds = ct_datasets(study, ACME, "enhanced", slices=1, size=size)[0]
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                    "SliceThickness"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.NumberOfFrames = frames
    orientation, measures, shared = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = list(AXIAL)
    measures.PixelSpacing, measures.SliceThickness = ["0.5", "0.5"], "2"
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for k in range(frames):
        position, item = Dataset(), Dataset()
        position.ImagePositionPatient = ["0", "0", str(2 * k)]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.zeros((frames, size, size), dtype=np.uint16).tobytes()
    return ds


def scramble_last_fragment(path: Path, skip: int = 64) -> Path:
    """Scramble the encapsulated frame's data after its first `skip` bytes, lengths kept.

    For RLE (whose 64-byte header `skip` keeps) this makes run lengths that overrun the
    frame, on which pylibjpeg-rle's Rust decoder panics rather than raising.
    """
    data = bytearray(path.read_bytes())
    start = data.rfind(b"\xfe\xff\x00\xe0") + 8 + skip
    end = data.rfind(b"\xfe\xff\xdd\xe0")
    for k in range(start, end if end > start else len(data)):
        data[k] = (data[k] * 7 + 13) & 0xFF
    path.write_bytes(bytes(data))
    return path


def j2k_declaring(path: Path, columns: int, rows: int) -> Path:
    """Rewrite the JPEG 2000 codestream's SIZ image size (Xsiz, Ysiz), nothing else."""
    data = bytearray(path.read_bytes())
    soc = data.find(b"\xff\x4f\xff\x51")
    data[soc + 8:soc + 16] = columns.to_bytes(4, "big") + rows.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path
