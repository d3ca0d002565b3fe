"""The demo's stand-ins for a site's files, made from the synthetic generator's ground truth:
a labels CSV keyed by accession number (what a RIS export holds) and SIMULATED reader
decisions for a review worklist (what `triage feedback import` reads)."""

from __future__ import annotations

import contextlib
import csv
from datetime import date
from pathlib import Path

SIM_READER = "sim-reader-1"


def _truth(export: Path) -> dict[str, dict[str, str]]:
    """The generator's ground truth: study UID -> its synth manifest row (label, folder)."""
    with open(export / "manifest.csv", newline="", encoding="utf-8") as fh:
        return {row["study_uid"]: row for row in csv.DictReader(fh)}


def _accession(folder: Path) -> str:
    """AccessionNumber of the first DICOM file under a study folder (headers only).

    Raises:
        ValueError: no file there carries one.
    """
    import pydicom

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with contextlib.suppress(pydicom.errors.InvalidDicomError):
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["AccessionNumber"])
            if ds.get("AccessionNumber"):
                return str(ds.AccessionNumber)
    raise ValueError(f"No DICOM file under {folder} has an AccessionNumber; regenerate the "
                     f"synthetic export with `triage synth`.")


def write_accession_labels(export: Path, path: Path) -> int:
    """Write ``accession_number,label`` for every study of a synthetic export.

    The labels come from the generator's ground truth (keyed by Study Instance UID); the
    accession numbers from the studies' DICOM headers: the file a site's RIS would export.

    Returns:
        The number of rows written.
    """
    rows = [(_accession(export / row["export_path"]), "yes" if row["label"] == "1" else "no")
            for row in _truth(export).values()]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["accession_number", "label"])
        writer.writerows(sorted(rows))
    return len(rows)


def write_simulated_decisions(worklist: Path, export: Path, path: Path) -> int:
    """SIMULATED reader decisions: the review worklist with a ``finding`` from the generator's
    ground truth for every row (a real site imports what its readers decided).

    Returns:
        The number of decisions written.
    """
    truth = _truth(export)
    with open(worklist, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    fields = [*(rows[0].keys() if rows else ["study_uid"]), "finding", "reader", "read_date"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            finding = "positive" if truth[row["study_uid"]]["label"] == "1" else "negative"
            writer.writerow({**row, "finding": finding, "reader": SIM_READER,
                             "read_date": date.today().isoformat()})
    return len(rows)
