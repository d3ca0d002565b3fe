"""The one exception hierarchy of triage: the CLI catches `TriageError` and prints one line.

Messages are full sentences that name the file, study or argument, the bad value, and what
would fix it. They never contain patient identifiers (name, ID, birth date, accession):
refer to studies by their Study Instance UID and to files by path.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class TriageError(Exception):
    """Base class of every error triage raises on purpose.

    Every subclass pickles as its class, message and attributes, whatever its constructor
    takes, so that it crosses process boundaries intact (the local pool's workers, Ray's
    tasks and actors; pickle's default would call the constructor with the message alone).
    """

    def __reduce__(self) -> tuple:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def _rebuild(cls: type[TriageError], args: tuple, state: dict) -> TriageError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


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
        verdict: the geometry verdict (a `triage.dicom.verdict.GeometryVerdict`, a string
            enum) so that reports record why a series failed; None when not geometric.
    """

    def __init__(
        self, message: str, path: Path | str | None = None, *, verdict: str | None = None
    ) -> None:
        super().__init__(message, path)
        self.verdict = verdict


class EnvironmentalError(TriageError):
    """The machine failed, not the study: a full or read-only disk, a missing or exhausted
    device, an unreachable tracking server. The run stops (or the study stays to do); it is
    never a study's final outcome. See `is_environmental`."""


# What is final and what is retried. A study's row is final only when its own data decided
# it: a decode or geometry error, a selection or size cap, a non-finite score. A failure of
# the machine around it (below) is retried by the next run and never journaled.
ENVIRONMENTAL_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ENOSPC", "EDQUOT", "EIO", "EROFS", "EACCES", "EPERM", "ENOMEM", "EMFILE", "ENFILE",
        "ESTALE", "ENODEV", "ENXIO", "ENOTDIR", "EISDIR", "ETIMEDOUT", "ECONNREFUSED",
        "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH")
    if hasattr(errno, name))
# Accelerator failures torch raises as RuntimeError or AssertionError, by message (also
# matched in the reasons of rows journaled before this rule existed).
_DEVICE_MESSAGES = ("cuda out of memory", "out of memory", "cuda error", "cudnn_status",
                    "cublas_status", "no cuda gpus", "not compiled with cuda",
                    "device-side assert", "mps backend", "hip error")
_DEVICE_ERRORS = ("OutOfMemoryError", "AcceleratorError")  # torch's own classes
# SQLite's own words for a full or failing disk (sqlite3.OperationalError, also as wrapped
# by SQLAlchemy and MLflow): the label store's or the tracking database's disk, not a bug.
_STORE_MESSAGES = ("database or disk is full", "disk i/o error")
_OS_MESSAGES = tuple(os.strerror(code).lower() for code in sorted(ENVIRONMENTAL_ERRNOS))


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and all(exc is not e for e in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _one(err: BaseException) -> bool:
    if isinstance(err, EnvironmentalError | ConnectionError | TimeoutError):
        return True
    if isinstance(err, OSError):
        # requests and urllib3 errors are OSErrors without an errno: the network failed
        return err.errno in ENVIRONMENTAL_ERRNOS or (
            err.errno is None and type(err).__module__.split(".")[0] in ("requests",
                                                                         "urllib3"))
    if type(err).__name__ in _DEVICE_ERRORS and type(err).__module__.startswith("torch"):
        return True
    if any(m in str(err).lower() for m in _STORE_MESSAGES):
        return True
    return isinstance(err, RuntimeError | AssertionError) and _device_message(str(err))


def is_environmental(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, is the machine's fault, not the study's.

    Environmental: `EnvironmentalError`; an `OSError` with an errno of
    `ENVIRONMENTAL_ERRNOS` (full, read-only or failing disk, permissions, file limits,
    network); connection errors and timeouts (the tracking server); accelerator failures
    (out of memory, no CUDA device, a build without CUDA); SQLite's full or failing disk
    (the label store, a SQLite tracking store). Anything else a study raises is that
    study's own outcome.

    Example:
        >>> is_environmental(OSError(errno.ENOSPC, "No space left on device"))
        True
        >>> is_environmental(ValueError("bad pixel data"))
        False
    """
    return any(_one(err) for err in _chain(exc))


def _device_message(text: str) -> bool:
    text = text.lower()
    return any(m in text for m in _DEVICE_MESSAGES)


def environmental_reason(reason: str) -> bool:
    """Whether a journaled failure reason names an environmental error: such rows, written
    before a failure of the machine stopped the run, are redone rather than kept."""
    text = reason.lower()
    return (_device_message(text) or any(m in text for m in _OS_MESSAGES)
            or any(m in text for m in _STORE_MESSAGES))


def describe_environmental(exc: BaseException) -> str:
    """`exc` in one line without file paths (a path may name a patient): the OS message
    and errno name, or the exception's type and first line."""
    if isinstance(exc, EnvironmentalError):
        return str(exc)
    chain = _chain(exc)
    for err in chain:
        if isinstance(err, OSError) and err.errno in errno.errorcode:
            return f"{os.strerror(err.errno)} ({errno.errorcode[err.errno]})"
    err = next((e for e in chain if _one(e)), exc)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


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
