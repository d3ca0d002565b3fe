"""The run journal: one JSON line per finished study, so that a killed run resumes.

``journal.jsonl`` starts with a header line naming what produced the rows (model, rules,
preprocessing); every later line is one `WorklistRow`. Lines are flushed and fsynced as
they are written, so a run killed at any point (SIGKILL, power loss) leaves every line but
possibly a torn last one, which the next run drops. A journal written by another model or
rules version is refused rather than mixed in: its rows would not match a fresh run.

The journal holds the worklist rows, patient identifiers included: keep it beside the
worklist, with the same access rules.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from triage.errors import TriageError, environmental_reason
from triage.io import lock_out_dir, remove_stale_temp
from triage.run.worklist import WorklistRow

LOGGER = logging.getLogger(__name__)
JOURNAL_NAME = "journal.jsonl"
JOURNAL_FORMAT = 1


class JournalError(TriageError):
    """The run journal cannot be resumed (another model or rules, or a damaged line).

    Attributes:
        path: the journal file.
    """

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"Run journal {path}: {message}")


class Journal:
    """Append-only record of finished studies (see the module docstring).

    Args:
        path: the journal file (created with `identity` as header when absent).
        identity: what produced the rows (JSON values); a journal with another identity
            raises `JournalError`.

    Attributes:
        rows: finished studies, by study UID, in the order they were journaled (for a
            study journaled twice, the last row wins).
        torn: a torn last line was found and dropped.
    """

    def __init__(self, path: Path | str, identity: dict[str, Any]) -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps({"journal": JOURNAL_FORMAT, **identity}))
        self.rows: dict[str, WorklistRow] = {}
        self.torn = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One process per run folder: a second would redo every study, and two could both
        # write the header. Held until `close` (or this object goes, or the process dies).
        self._finalizer = weakref.finalize(self, lock_out_dir(self.path.parent))
        removed = remove_stale_temp(self.path.parent)
        if removed:
            LOGGER.info("Removed %d temporary files a killed run left in %s.", removed,
                        self.path.parent)
        if self.path.is_file() and self.path.stat().st_size:
            self._load()
        else:
            self._append_lines([json.dumps(self.identity, sort_keys=True)])

    def close(self) -> None:
        """Release the run folder's lock (`triage.io.lock_out_dir`)."""
        self._finalizer()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete, _, tail = data.rpartition(b"\n")
        lines = complete.split(b"\n") if complete or data.startswith(b"\n") else []
        self.torn = bool(tail)  # bytes after the last line end: a write cut short
        good_end = 0
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError as err:
                if number == len(lines):  # garbage in the last line: also a cut write
                    self.torn = True
                    break
                raise JournalError(self.path, f"line {number} is not valid JSON; the file is "
                                              f"damaged. Delete it to start the run "
                                              f"afresh.") from err
            if number == 1:
                self._check_identity(record)
            else:
                row = _row(record)
                if row is None and number == len(lines):  # a cut write, as above
                    self.torn = True
                    break
                if row is None:
                    raise JournalError(self.path, f"line {number} is not a worklist row; the "
                                                  f"file is damaged. Delete it to start the "
                                                  f"run afresh.")
                self.rows.pop(row.study_uid, None)
                self.rows[row.study_uid] = row
            good_end += len(line) + 1
        self._drop_environmental()
        if self.torn:
            LOGGER.warning("Run journal %s ends with a torn line (the run was killed while "
                           "writing it); dropping it and redoing that study.", self.path)
            os.truncate(self.path, good_end)
        if good_end == 0:  # even the header was cut short
            self._append_lines([json.dumps(self.identity, sort_keys=True)])

    def _drop_environmental(self) -> None:
        # Older versions journaled a failure of the machine (a full disk, a missing GPU)
        # as the study's outcome; it is not one (`triage.errors.is_environmental`): redo it.
        redo = [uid for uid, row in self.rows.items()
                if row.route == "failed" and environmental_reason(row.reasons)]
        for uid in redo:
            del self.rows[uid]
        if redo:
            LOGGER.info("Run journal %s: %d studies failed for a reason of the machine, not "
                        "of their data (disk, device); running them again.", self.path,
                        len(redo))

    def _check_identity(self, record: Any) -> None:
        if not isinstance(record, dict) or "journal" not in record:
            raise JournalError(self.path, "has no header line; it was not written by "
                                          "`triage run`. Use another --out folder.")
        if record != self.identity:
            changed = sorted(k for k in set(record) | set(self.identity)
                             if record.get(k) != self.identity.get(k))
            raise JournalError(self.path, f"was written by another run configuration "
                                          f"({', '.join(changed)} differ); its rows cannot be "
                                          f"resumed. Use a fresh --out folder or delete "
                                          f"{JOURNAL_NAME} to start over.")

    def __contains__(self, study_uid: str) -> bool:
        return study_uid in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, rows: Iterable[WorklistRow]) -> None:
        """Record finished studies durably (one line each, flushed and fsynced together)."""
        rows = list(rows)
        if not rows:
            return
        # ASCII JSON: a file name that is not UTF-8 on disk (lone surrogates) is escaped as
        # \udcXX and read back exactly; raw, it cannot be encoded and every rerun crashed.
        self._append_lines([json.dumps(r.to_dict(), ensure_ascii=True) for r in rows])
        for row in rows:
            self.rows.pop(row.study_uid, None)
            self.rows[row.study_uid] = row

    def _append_lines(self, lines: list[str]) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def order(self) -> dict[str, int]:
        """Study UID -> position in the order the studies finished."""
        return {uid: i for i, uid in enumerate(self.rows)}


def read_journal(path: Path | str) -> tuple[dict[str, Any], dict[str, WorklistRow]]:
    """Read a journal without changing it: its header and its rows by study UID.

    A torn last line (a run killed while writing it) is ignored, as a resumed run would.

    Raises:
        JournalError: the file is missing, has no header, or a line before the last is
            not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise JournalError(path, f"does not exist; pass the --out folder of a `triage run` "
                                 f"(it holds {JOURNAL_NAME}).")
    lines = path.read_bytes().split(b"\n")
    header: Any = None
    rows: dict[str, WorklistRow] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            if number >= len(lines) - 1:  # the torn last line
                break
            raise JournalError(path, f"line {number} is not valid JSON; the file is "
                                     f"damaged.") from err
        if header is None:
            if not isinstance(record, dict) or "journal" not in record:
                raise JournalError(path, "has no header line; it was not written by "
                                         "`triage run`.")
            header = record
            continue
        row = _row(record)
        if row is None:
            if number >= len(lines) - 1:  # the torn last line
                break
            raise JournalError(path, f"line {number} is not a worklist row; the file is "
                                     f"damaged.")
        rows.pop(row.study_uid, None)
        rows[row.study_uid] = row
    if header is None:
        raise JournalError(path, "is empty; the run journaled no study.")
    return header, rows


def _row(record: Any) -> WorklistRow | None:
    """`record` as a worklist row; None when it is valid JSON but not a row (``{}``)."""
    if not isinstance(record, dict):
        return None
    try:
        return WorklistRow.from_dict(record)
    except (TypeError, ValueError, KeyError):
        return None
