"""Scan a PACS export: walk every folder, read every header (in parallel when there are
many), index the instances.

The walk is the source of truth: every file is looked at, with or without a ``.dcm``
suffix, whether or not a DICOMDIR lists it. Symlinked files and folders inside the export
are followed; a folder reached again through a link to one of its ancestors is a ``symlink
loop``, one reached again elsewhere is ignored as a duplicate. A link whose target lies
outside the export is never followed (``outside-export``): an export must not make the scan
read host files. Headers are read with
``stop_before_pixels=True`` and raw element access (no pixel decoding, no value conversion
through pydicom), then the pixel data's element header is checked against the file size so
that truncated files are caught without reading the pixels.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from triage.dicom.limits import ResourceLimits
from triage.dicom.scan.dicomdir import missing_files, read_dicomdir
from triage.dicom.scan.header import MEDIA_STORAGE_DIRECTORY, os_error_record, read_instance
from triage.dicom.scan.index import (
    IgnoredPath,
    IgnoreReason,
    InstanceRecord,
    ScanErrorCode,
    ScanResult,
    failed_record,
    relative_path,
)
from triage.errors import DicomError


@dataclass
class _Walk:
    files: list[Path] = field(default_factory=list)
    problems: list[InstanceRecord] = field(default_factory=list)
    ignored: list[IgnoredPath] = field(default_factory=list)
    dicomdirs: list[Path] = field(default_factory=list)


def _walk_export(root: Path) -> _Walk:
    """Every regular file under `root`, following symlinks, each real file and folder once."""
    walk = _Walk()
    real_root = os.path.realpath(root)
    root_key = _key(os.stat(root))
    seen_dirs: dict[tuple[int, int], Path] = {root_key: root}
    seen_files: dict[tuple[int, int], Path] = {}
    stack: list[tuple[Path, tuple[tuple[int, int], ...]]] = [(root, (root_key,))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            why = "permission denied" if isinstance(err, PermissionError) else err.strerror
            walk.problems.append(failed_record(
                folder, ScanErrorCode.UNREADABLE_DIRECTORY, f"{why}: cannot list folder"))
            continue
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink() and not _inside(os.path.realpath(path), real_root):
                walk.ignored.append(IgnoredPath(path, IgnoreReason.OUTSIDE_EXPORT,
                                                "symlink to a target outside the export"))
                continue
            try:
                info = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                walk.problems.append(failed_record(
                    path, ScanErrorCode.BROKEN_SYMLINK, "broken symlink: target does not exist"))
                continue
            except OSError as err:
                walk.problems.append(os_error_record(path, err))
                continue
            key = _key(info)
            if stat.S_ISDIR(info.st_mode):
                if key in ancestors:
                    walk.problems.append(failed_record(
                        path, ScanErrorCode.SYMLINK_LOOP,
                        f"symlink loop: points back to ancestor folder "
                        f"'{relative_path(seen_dirs[key], root)}'"))
                elif key in seen_dirs:
                    walk.ignored.append(IgnoredPath(path, IgnoreReason.DUPLICATE,
                                                    f"same folder as {seen_dirs[key]}"))
                else:
                    seen_dirs[key] = path
                    subfolders.append((path, (*ancestors, key)))
            elif not stat.S_ISREG(info.st_mode):
                walk.ignored.append(IgnoredPath(path, IgnoreReason.SPECIAL_FILE))
            elif key in seen_files:
                walk.ignored.append(IgnoredPath(
                    path, IgnoreReason.DUPLICATE, f"same file as {seen_files[key]}"))
            else:
                seen_files[key] = path
                is_dicomdir = entry.name.upper() == "DICOMDIR"
                (walk.dicomdirs if is_dicomdir else walk.files).append(path)
        stack.extend(reversed(subfolders))
    return walk


def _inside(target: str, real_root: str) -> bool:
    return target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)


def _key(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


#: Files per scan worker below which a worker is not worth starting. Measured on 2 cores:
#: the pool costs about 70 % more CPU than reading inline (forking, the records pickled
#: back at ~40 us per file, unpickled by the driver) and was no faster at 1,536 files
#: (the ingest benchmark), slower at 3,932 (0.70 s against 0.58 s inline; a 150-study
#: `triage run` 0.3 s faster inline) and as fast at 14,116 (1.87 s against 1.89 s).
MIN_FILES_PER_WORKER = 4096


def _read_chunk(paths: list[str], limits: ResourceLimits | None = None
                ) -> list[InstanceRecord | None]:
    return [read_instance(p, limits) for p in paths]


def scan_export(
    root: Path | str,
    *,
    workers: int | None = None,
    chunk_size: int = 64,
    use_dicomdir: bool = True,
    min_files_per_worker: int = MIN_FILES_PER_WORKER,
    limits: ResourceLimits | None = None,
) -> ScanResult:
    """Index every file of an export folder.

    Args:
        root: the export folder.
        workers: processes reading headers at most; 1 reads inline; None uses
            ``os.cpu_count()``.
        chunk_size: files per task sent to a worker.
        use_dicomdir: read DICOMDIR files to report the files they list that are missing.
        min_files_per_worker: the pool has at most one worker per this many files, and
            fewer than two workers means reading inline (see `MIN_FILES_PER_WORKER`).
        limits: caps on what one file may cost to read (``max_inflated_bytes``), and
            that native pixel data too short for its header is checked against
            (``over-limit`` rather than ``corrupt``); default `ResourceLimits()`.

    Returns:
        The `ScanResult`, records sorted by path; identical for any `workers`.

    Raises:
        DicomError: if `root` is not a folder.
        ValueError: if `workers` or `chunk_size` is below 1.
    """
    root = Path(root)
    if not root.is_dir():
        raise DicomError("the export folder does not exist or is not a folder; pass the "
                         "folder that holds the exported files", root)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1 or chunk_size < 1:
        raise ValueError(f"workers and chunk_size must be >= 1, got {workers} and {chunk_size}.")
    limits = limits or ResourceLimits()
    walk = _walk_export(root)
    chunks = -(-len(walk.files) // chunk_size)
    workers = min(workers, chunks, len(walk.files) // max(min_files_per_worker, 1))
    if workers <= 1:
        read = [read_instance(path, limits) for path in walk.files]
    else:
        from concurrent.futures import ProcessPoolExecutor  # not needed inline

        names = [str(p) for p in walk.files]  # strings pickle faster than paths
        chunks = [names[i:i + chunk_size] for i in range(0, len(names), chunk_size)]
        from triage.processes import worker_context

        # From a forkserver: a reader forked from the caller would hold a copy-on-write
        # view of everything the caller holds (a loaded network, in `triage run`).
        with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context()) as pool:
            reader = functools.partial(_read_chunk, limits=limits)
            read = [r for result in pool.map(reader, chunks) for r in result]
    records, ignored, dicomdirs = list(walk.problems), list(walk.ignored), list(walk.dicomdirs)
    for path, record in zip(walk.files, read, strict=True):
        if record is None:
            ignored.append(IgnoredPath(path, IgnoreReason.NOT_DICOM))
        elif record.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
            dicomdirs.append(path)
        else:
            records.append(record)
    notes: list[str] = []
    if use_dicomdir:
        for dicomdir in sorted(dicomdirs):
            missing, note = _dicomdir_missing(dicomdir, root, walk.files)
            records.extend(missing)
            if note:
                notes.append(note)
    return ScanResult(
        root=root,
        records=tuple(sorted(records, key=lambda r: str(r.path))),
        ignored=tuple(sorted(ignored, key=lambda i: str(i.path))),
        dicomdirs=tuple(sorted(dicomdirs)),
        notes=tuple(notes),
    )


def _dicomdir_missing(dicomdir: Path, root: Path, found: list[Path]
                      ) -> tuple[list[InstanceRecord], str | None]:
    """The DICOMDIR's references missing on disk, and a note; never raises.

    A DICOMDIR is advice: whatever goes wrong reading it (hostile offsets, corrupt
    records, references leaving the export) becomes a note naming it by its path inside
    the export, and the folder walk is used alone.
    """
    name = relative_path(dicomdir, root)
    try:
        entries = read_dicomdir(dicomdir)
        inside = [e for e in entries if e.path.is_relative_to(dicomdir.parent)
                  and ".." not in e.path.relative_to(dicomdir.parent).parts]
        missing = missing_files(inside, found)
    except DicomError as err:
        detail = str(err).removeprefix(f"{err.path}: ") if err.path else str(err)
        return [], f"{name}: {detail}"
    except Exception as err:  # noqa: BLE001 - hostile DICOMDIRs raise anything
        return [], (f"{name}: not a readable DICOMDIR ({type(err).__name__}); the folder "
                    "walk is used alone")
    parts = []
    if len(inside) < len(entries):
        parts.append(f"references {len(entries) - len(inside)} file(s) outside the export "
                     "(ignored)")
    if missing:
        parts.append(f"lists {len(missing)} file(s) missing on disk")
    return missing, f"{name}: {'; '.join(parts)}" if parts else None
