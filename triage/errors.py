"""The one exception hierarchy of triage: the CLI catches `TriageError` and prints one line.

Messages are full sentences that name the file, study or argument, the bad value, and what
would fix it. They never contain patient identifiers (name, ID, birth date, accession):
refer to studies by their Study Instance UID and to files by path.
"""

from __future__ import annotations

from pathlib import Path


class TriageError(Exception):
    """Base class of every error triage raises on purpose."""


class ConfigError(TriageError, ValueError):
    """A configuration value or file is invalid."""


class ManifestError(TriageError, ValueError):
    """A data manifest failed validation; `issues` lists every bad row."""

    def __init__(self, path: Path | str, issues: list) -> None:
        self.path = Path(path)
        self.issues = list(issues)
        shown = "\n".join(f"  - {issue}" for issue in self.issues[:50])
        more = f"\n  ... and {len(self.issues) - 50} more" if len(self.issues) > 50 else ""
        super().__init__(
            f"Manifest {self.path} has {len(self.issues)} problem(s):\n{shown}{more}"
        )


class DicomError(TriageError):
    """A DICOM file or series cannot be used; `path` names the file or series folder."""

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class UnsupportedTransferSyntaxError(DicomError, NotImplementedError):
    """Pixel data is encoded with a transfer syntax no installed decoder handles."""


class GeometryError(DicomError):
    """A series cannot be made into a trustworthy volume (positions, orientation, spacing).

    Attributes:
        verdict: the geometry verdict (a `triage.dicom.volume.GeometryVerdict`, a string
            enum) so that reports record why a series failed; None when not geometric.
    """

    def __init__(
        self, message: str, path: Path | str | None = None, *, verdict: str | None = None
    ) -> None:
        super().__init__(message, path)
        self.verdict = verdict


class LabelsError(TriageError, ValueError):
    """A labels file cannot be used at all (unreadable, not UTF-8, a column missing).

    Problems of single rows (an unknown label value, a duplicate key) are not errors: they
    become findings of the build report. The message names the file, the line (1 = header)
    and the column, never a key value (accession numbers are identifiers).
    """

    def __init__(self, path: Path | str, message: str, *, line: int | None = None,
                 column: str | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.column = column
        where = f" line {line}" if line is not None else ""
        col = f", column '{column}'" if column else ""
        super().__init__(f"{self.path}{where}{col}: {message}")
