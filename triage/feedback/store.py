"""The label store: readers' decisions joined with what the run said, in one SQLite file.

Append-only (SQLite triggers refuse UPDATE and DELETE on its tables). A label is keyed by
study UID and the model (name, version) whose run triaged the study; importing the same
decision again changes nothing, a *different* decision for a stored key is kept in
``conflicts`` and never replaces the stored one. No patient name, patient ID, accession
number or study date is stored: studies are named by UID, readers by a pseudonym.

Tables (docs/feedback.md):

- ``labels``: one row per (study, model); the finding, the reader pseudonym and read date,
  and the run's device group, route, rule ids, calibrated probability, temperature, rules
  version, whether the label came from a random audit and whether the study belongs to
  its run's calibration sample (``sampled``).
- ``sample``: every study of an imported run that belongs to the run's calibration sample
  (labelled or not), so that a run with unlabelled sampled studies can be recognised.
- ``runs``: each imported run's audit design.
- ``conflicts``: decisions that disagree with a stored label.
- ``consumed``: which labelled studies calibrated which model version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from triage.errors import EnvironmentalError, is_environmental
from triage.feedback.errors import LabelStoreError

STORE_FORMAT = "1"
_SQLITE_HEADER = b"SQLite format 3\x00"
_TABLES = ("labels", "sample", "runs", "conflicts", "consumed")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY, rules_version TEXT NOT NULL, audit_fraction REAL NOT NULL,
    audit_seed INTEGER NOT NULL, imported_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sample (
    run_key TEXT NOT NULL, study_uid TEXT NOT NULL, model_name TEXT NOT NULL,
    model_version TEXT NOT NULL, rule_ids TEXT NOT NULL, PRIMARY KEY (run_key, study_uid));
CREATE TABLE IF NOT EXISTS labels (
    study_uid TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    finding INTEGER NOT NULL CHECK (finding IN (0, 1)), reader TEXT NOT NULL,
    read_date TEXT NOT NULL, device_group TEXT NOT NULL, route TEXT NOT NULL,
    rule_ids TEXT NOT NULL, p_calibrated REAL, temperature REAL, rules_version TEXT NOT NULL,
    audit INTEGER NOT NULL, sampled INTEGER NOT NULL, run_key TEXT NOT NULL,
    processed_at TEXT NOT NULL, imported_at TEXT NOT NULL, source_sha256 TEXT NOT NULL,
    PRIMARY KEY (study_uid, model_name, model_version));
CREATE TABLE IF NOT EXISTS conflicts (
    study_uid TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    stored_finding INTEGER NOT NULL, new_finding INTEGER NOT NULL, reader TEXT NOT NULL,
    read_date TEXT NOT NULL, source_sha256 TEXT NOT NULL, source_row INTEGER NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (study_uid, model_name, model_version, new_finding, reader, read_date,
            source_sha256, source_row));
CREATE TABLE IF NOT EXISTS consumed (
    study_uid TEXT NOT NULL, model_name TEXT NOT NULL, label_version TEXT NOT NULL,
    by_version TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (study_uid, model_name, label_version));
"""


@dataclass(frozen=True)
class Label:
    """One stored label (a row of ``labels``); see the module docstring."""

    study_uid: str
    model_name: str
    model_version: str
    finding: int
    reader: str
    read_date: str
    device_group: str
    route: str
    rule_ids: str
    p_calibrated: float | None
    temperature: float | None
    rules_version: str
    audit: bool
    sampled: bool
    run_key: str
    processed_at: str
    imported_at: str
    source_sha256: str

    @property
    def key(self) -> tuple[str, str, str]:
        """(study UID, model name, model version)."""
        return self.study_uid, self.model_name, self.model_version


@dataclass(frozen=True)
class Conflict:
    """A decision that disagrees with the stored label of the same study and model."""

    study_uid: str
    model_name: str
    model_version: str
    stored_finding: int
    new_finding: int
    reader: str
    read_date: str
    source_sha256: str
    source_row: int
    at: str


@dataclass(frozen=True)
class SampledStudy:
    """A study of an imported run that belongs to the run's calibration sample."""

    run_key: str
    study_uid: str
    model_name: str
    model_version: str
    rule_ids: str


def _columns(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


def _marks(cls: type) -> str:
    return ", ".join("?" for _ in fields(cls))


def _check_existing(path: Path) -> None:
    """Refuse an existing `path` that is not a label store, without changing it.

    sqlite3 would turn any file it may write (an empty file, a CSV) into a database; a
    SQLite database of something else (``mlflow.db``) would get the store's tables.
    """
    not_store = (f"{path} is not a label store (the SQLite database `triage feedback "
                 f"import` makes)")
    if path.is_dir():
        raise LabelStoreError(f"{not_store}: it is a folder; pass another label store path.")
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
    except OSError as err:
        raise LabelStoreError(f"Label store {path} cannot be read: {err.strerror}.") from err
    if header != _SQLITE_HEADER:
        what = "it is empty" if not header else "it is not a SQLite database"
        raise LabelStoreError(f"{not_store}: {what}; the file was left unchanged. Pass "
                              f"another label store path.")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise LabelStoreError(f"{not_store}: it cannot be read as one ({err}); pass another "
                              f"label store path.") from err
    if tables and "meta" not in tables:
        raise LabelStoreError(f"{not_store}: it is a SQLite database of something else "
                              f"(tables {', '.join(sorted(tables)[:5])}); the file was left "
                              f"unchanged. Pass another label store path.")


class LabelStore:
    """An open label store (a context manager; closes the connection on exit).

    Args:
        path: the SQLite file (created with its tables when missing).

    Raises:
        LabelStoreError: the file is not a SQLite database (left untouched), a SQLite
            database of something else, or another store format.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.exists():
            _check_existing(self.path)  # before sqlite3 writes its header into any file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path)
            with self.db:
                self.db.executescript(_SCHEMA)
                for table in _TABLES:
                    for action in ("UPDATE", "DELETE"):
                        self.db.execute(
                            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} "
                            f"BEFORE {action} ON {table} BEGIN SELECT RAISE(ABORT, "
                            f"'the label store is append-only'); END")
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)",
                                (STORE_FORMAT,))
            fmt = self.db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0]
        except sqlite3.DatabaseError as err:
            if is_environmental(err):  # a full or failing disk: not the store's fault
                raise EnvironmentalError(f"Label store {self.path} cannot be written "
                                         f"({err}); free the disk and rerun.") from err
            raise LabelStoreError(f"Label store {self.path} cannot be opened as a SQLite "
                                  f"database ({err}); pass another label store path.") from err
        if fmt != STORE_FORMAT:
            raise LabelStoreError(f"Label store {self.path} has format {fmt}; this triage "
                                  f"reads format {STORE_FORMAT}.")

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # -- writing (each call one transaction) ---------------------------------------------

    def add_run(self, run_key: str, rules_version: str, fraction: float, seed: int,
                at: str, sample: Iterable[SampledStudy]) -> None:
        """Record a run's audit design and its calibration-sample studies (idempotent)."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?)",
                            (run_key, rules_version, fraction, seed, at))
            self.db.executemany(f"INSERT OR IGNORE INTO sample VALUES ({_marks(SampledStudy)})",
                                [astuple(s) for s in sample])

    def add_labels(self, labels: Iterable[tuple[Label, int]], at: str
                   ) -> tuple[list[Label], int, list[Conflict]]:
        """Add labels (each with its source row) in one transaction.

        Returns:
            The labels added, the number already stored with the same finding, and the
            conflicts found (stored, and also recorded in ``conflicts``).
        """
        added, same, conflicts = [], 0, []
        with self.db:
            for label, row in labels:
                stored = self.db.execute(
                    "SELECT finding FROM labels WHERE study_uid = ? AND model_name = ? AND "
                    "model_version = ?", label.key).fetchone()
                if stored is None:
                    self.db.execute(f"INSERT INTO labels ({_columns(Label)}) VALUES "
                                    f"({_marks(Label)})", astuple(label))
                    added.append(label)
                elif stored[0] == label.finding:
                    same += 1
                else:
                    conflict = Conflict(*label.key, stored[0], label.finding, label.reader,
                                        label.read_date, label.source_sha256, row, at)
                    self.db.execute(f"INSERT OR IGNORE INTO conflicts VALUES "
                                    f"({_marks(Conflict)})", astuple(conflict))
                    conflicts.append(conflict)
        return added, same, conflicts

    def consume(self, labels: Iterable[Label], by_version: str, at: str) -> None:
        """Record that `labels` calibrated model version `by_version`."""
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO consumed VALUES (?, ?, ?, ?, ?)",
                                [(lb.study_uid, lb.model_name, lb.model_version, by_version,
                                  at) for lb in labels])

    # -- reading -------------------------------------------------------------------------

    def labels(self) -> list[Label]:
        """Every stored label, by study UID then model version."""
        rows = self.db.execute(f"SELECT {_columns(Label)} FROM labels "
                               f"ORDER BY study_uid, model_name, model_version")
        return [Label(*r[:12], bool(r[12]), bool(r[13]), *r[14:]) for r in rows]

    def conflicts(self) -> list[Conflict]:
        """Every recorded conflict, oldest first."""
        rows = self.db.execute(f"SELECT {_columns(Conflict)} FROM conflicts ORDER BY rowid")
        return [Conflict(*r) for r in rows]

    def sample(self) -> list[SampledStudy]:
        """Every calibration-sample study of every imported run."""
        rows = self.db.execute(f"SELECT {_columns(SampledStudy)} FROM sample "
                               f"ORDER BY run_key, study_uid")
        return [SampledStudy(*r) for r in rows]

    def runs(self) -> dict[str, tuple[str, float, int]]:
        """run key -> (rules version, audit fraction, audit seed)."""
        return {r[0]: (r[1], r[2], r[3]) for r in self.db.execute(
            "SELECT run_key, rules_version, audit_fraction, audit_seed FROM runs")}

    def consumed(self) -> dict[str, str]:
        """Study UID -> the first model version it calibrated."""
        out: dict[str, str] = {}
        for uid, version in self.db.execute("SELECT study_uid, by_version FROM consumed "
                                            "ORDER BY rowid"):
            out.setdefault(uid, version)
        return out
