"""DICOMDIR: what a media directory says the export holds, to report files missing on disk.

The folder walk, not the DICOMDIR, decides what is scanned: exports often carry a DICOMDIR
that is stale, partial or absent. The DICOMDIR is read only to learn which files it
references, so that references to files that are not on disk can be reported under their
study (the directory records carry the study, series and instance UIDs).

pydicom's `FileSet` drops records whose file is missing (with a warning), so the record
tree is walked here directly, following the offsets as PS3.10 defines them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from triage.dicom.limits import ResourceLimits, check_deflated_file
from triage.dicom.scan.index import InstanceRecord, ScanErrorCode, failed_record
from triage.errors import DicomError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_ROOT_OFFSET = "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity"
_NEXT_OFFSET = "OffsetOfTheNextDirectoryRecord"
_LOWER_OFFSET = "OffsetOfReferencedLowerLevelDirectoryEntity"


@dataclass(frozen=True)
class DicomdirEntry:
    """One file a DICOMDIR references, with the UIDs of its directory records."""

    path: Path
    sop_instance_uid: str | None
    sop_class_uid: str | None
    study_uid: str | None
    series_uid: str | None
    modality: str | None


def read_dicomdir(path: Path | str, max_inflated_bytes: int | None = None
                  ) -> tuple[DicomdirEntry, ...]:
    """Every file a DICOMDIR references, resolved against the DICOMDIR's folder.

    Args:
        path: the DICOMDIR file.
        max_inflated_bytes: a deflated DICOMDIR inflating to more is refused; default
            `ResourceLimits().max_inflated_bytes`.

    Returns:
        The referenced files in record order.

    Raises:
        DicomError: if the file is not a readable DICOMDIR or its record offsets are broken
            (whatever pydicom or the records raise: a DICOMDIR is hostile input too).
    """
    path = Path(path)
    limit = max_inflated_bytes or ResourceLimits().max_inflated_bytes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pydicom  # here: the scan of an export without DICOMDIR never needs it

            with open(path, "rb") as fh:
                check_deflated_file(fh, limit, path)
                ds = pydicom.dcmread(fh, force=True)
            return _walk_records(ds, path)
    except DicomError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - pydicom and broken records raise many types
        raise DicomError(
            f"not a readable DICOMDIR ({type(err).__name__}: {_first_line(err)}); the "
            "folder walk is used alone", path,
        ) from err


def _first_line(err: Exception) -> str:
    # pydicom's messages name tags, VRs and offsets, not values; keep them short anyway.
    return (str(err).splitlines() or [""])[0][:160]


def _walk_records(ds: Dataset, path: Path) -> tuple[DicomdirEntry, ...]:
    """Follow the record offsets from the root; pydicom values may be of any type here."""
    records = list(ds.DirectoryRecordSequence)
    by_offset = {item.seq_item_tell: item for item in records}
    first = _offset(ds[_ROOT_OFFSET].value)
    entries: list[DicomdirEntry] = []
    seen: set[int] = set()
    stack: list[tuple[int, dict[str, str | None]]] = [(first, {})]
    while stack:
        offset, context = stack.pop()
        siblings: list[tuple[int, dict[str, str | None]]] = []
        while offset:
            if offset in seen or offset not in by_offset:
                raise DicomError(
                    f"DICOMDIR record offset {offset} is invalid or repeated; the folder walk "
                    "is used alone", path,
                )
            seen.add(offset)
            record = by_offset[offset]
            scope = _context(record, context)
            if "ReferencedFileID" in record:
                entries.append(_entry(path.parent, record, scope))
            lower = _offset(record.get(_LOWER_OFFSET, 0))
            if lower:
                siblings.append((lower, scope))
            offset = _offset(record.get(_NEXT_OFFSET, 0))
        stack.extend(reversed(siblings))
    return tuple(entries)


def _offset(value: object) -> int:
    """A record offset (UL): a non-negative int, else `ValueError`."""
    value = getattr(value, "value", value)
    if value is None or value == "" or value == b"":
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"a record offset is not an unsigned integer ({type(value).__name__})")
    return value


def _context(record: Dataset, parent: dict[str, str | None]) -> dict[str, str | None]:
    kind = str(record.get("DirectoryRecordType", "")).strip().upper()
    scope = dict(parent)
    if kind == "STUDY":
        scope["study_uid"] = _text(record, "StudyInstanceUID")
    elif kind == "SERIES":
        scope["series_uid"] = _text(record, "SeriesInstanceUID")
        scope["modality"] = _text(record, "Modality")
    return scope


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    return str(value).strip("\0 ") or None


def _entry(folder: Path, record: Dataset, scope: dict[str, str | None]) -> DicomdirEntry:
    file_id = record.ReferencedFileID
    parts = [file_id] if isinstance(file_id, str) else list(file_id)
    return DicomdirEntry(
        path=folder.joinpath(*(str(p).strip() for p in parts)),
        sop_instance_uid=_text(record, "ReferencedSOPInstanceUIDInFile"),
        sop_class_uid=_text(record, "ReferencedSOPClassUIDInFile"),
        study_uid=scope.get("study_uid"),
        series_uid=scope.get("series_uid"),
        modality=scope.get("modality"),
    )


def missing_files(
    entries: Iterable[DicomdirEntry], found: Iterable[Path]
) -> list[InstanceRecord]:
    """A ``missing-file`` record for each referenced file that is not on disk.

    File IDs are compared without regard to case, because media written on one system are
    often copied to another that changes the case of names.

    Args:
        entries: what the DICOMDIR references.
        found: the files the walk found.
    """
    on_disk = {os.path.normpath(str(p)).casefold() for p in found}
    missing = []
    for entry in entries:
        if os.path.normpath(str(entry.path)).casefold() in on_disk or entry.path.exists():
            continue
        missing.append(failed_record(
            entry.path, ScanErrorCode.MISSING_FILE, "listed in DICOMDIR but missing on disk",
            sop_instance_uid=entry.sop_instance_uid, sop_class_uid=entry.sop_class_uid,
            study_uid=entry.study_uid, series_uid=entry.series_uid, modality=entry.modality,
        ))
    return missing
