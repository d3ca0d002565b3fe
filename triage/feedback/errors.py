"""The errors of the feedback loop (all `TriageError`s: the CLI prints one line, exit 2)."""

from __future__ import annotations

from pathlib import Path

from triage.errors import TriageError


class ReviewFileError(TriageError, ValueError):
    """A reviewed worklist cannot be imported; the message names file, row and column.

    Attributes:
        path: the CSV file.
        row: the row as a spreadsheet numbers it (the header is row 1); None for the file.
        column: the column concerned; empty when none.
    """

    def __init__(self, path: Path | str, row: int | None, column: str, problem: str) -> None:
        self.path, self.row, self.column = Path(path), row, column
        where = str(self.path)
        if row is not None:
            where += f", row {row}"
        if column:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}")


class LabelStoreError(TriageError):
    """The label store cannot be opened or is not a triage label store."""


class RecalibrationError(TriageError, ValueError):
    """A model cannot be recalibrated from the label store (no valid sample, bad URI)."""
