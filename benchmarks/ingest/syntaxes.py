"""Full ingest against dcm2niix on every transfer syntax: one export per syntax, same pixels.

Each export is the `acme` device profile (256², no tilt, no gaps) with only its transfer
syntax replaced, from the same seed: the series hold the same pixel values, so a row's
ratio differs from the next only by what reading that syntax costs. The rows run after the
main table's, with the same rounds (warm-up, then round-robin: dcm2niix, triage's full
ingest, one worker each). A dcm2niix build that cannot decode a syntax (JPEG-LS without
CharLS) is compared by its time on the same series in Explicit VR Little Endian, which
bounds its decoding time from below, and the row says so.
"""

from __future__ import annotations

from benchmarks.ingest.measure import Row
from benchmarks.ingest.report import round_ratios
from benchmarks.ingest.rounds import ensure_export, run_rounds
from benchmarks.ingest.settings import BenchSettings
from benchmarks.ingest.tools import get_tool

#: Short name -> (transfer syntax UID, label), in table order.
SYNTAXES = {
    "explicit": ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    "implicit": ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    "rle": ("1.2.840.10008.1.2.5", "RLE Lossless"),
    "jpeg2000": ("1.2.840.10008.1.2.4.90", "JPEG 2000 (lossless only)"),
    "jpegls": ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
}
DEVICE = "acme"
MIXED = "mixed (the main table's export)"
TARGET = 2.0  # full ingest within 2x dcm2niix's wall time


def run_syntaxes(settings: BenchSettings) -> dict[str, tuple[Row, Row]]:
    """(dcm2niix row, triage full-ingest row) per syntax of `settings.syntaxes`."""
    out = {}
    for name in settings.syntaxes:
        rows = [Row(get_tool("dcm2niix"), 1), Row(get_tool("triage-ingest"), 1)]
        export = ensure_export(settings, settings.series, devices=(DEVICE,),
                               syntax=(name, SYNTAXES[name][0]))
        run_rounds(settings, export, rows, prefix=f"syntax-{name}-")
        out[name] = (rows[0], rows[1])
    return out


def syntax_table(results: dict[str, tuple[Row, Row]], series: int,
                 mixed: tuple[Row, Row] | None = None) -> list[str]:
    """One markdown row per syntax: both wall times, the ratio and the target's verdict.

    `mixed` is the main table's (dcm2niix, full ingest) pair with one worker, shown first
    as the mixed export's row.
    """
    lines = ["| transfer syntax | dcm2niix wall s, median (min–max) | triage full ingest wall "
             "s, median (min–max) | triage in-process s | × dcm2niix wall | rounds | "
             "target | result |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    explicit = results.get("explicit", (None, None))[0]
    rows = ({MIXED: mixed} if mixed else {}) | results
    for name, (d2n, triage) in rows.items():
        reference, note = d2n, ""
        if not _decodes(d2n) and explicit is not None and _decodes(explicit):
            reference = explicit
            note = (" (dcm2niix here cannot decode it: compared with its time on the same "
                    "series in Explicit VR)")
        ratios = round_ratios(triage, reference) if triage.ok and reference.ok else []
        ratio = triage.wall / reference.wall if ratios else float("nan")
        spread = (f"{min(ratios):.2f}–{max(ratios):.2f}×, "
                  f"{sum(r > TARGET for r in ratios)} of {len(ratios)} above {TARGET:g}×"
                  if ratios else "–")
        result = ("–" if not ratios else
                  f"{'met' if ratio <= TARGET else '**missed**'} ({ratio:.2f}×){note}")
        produced = "" if not triage.ok else (
            f" ({triage.ok[0].result.series}/{series} ok)" if triage.ok[0].result else "")
        label = SYNTAXES[name][1] if name in SYNTAXES else name
        lines.append(f"| {label} | {_cell(d2n)} | {_cell(triage)}{produced} | "
                     f"{triage.in_process:.2f} | {_ratio(ratio)} | {spread} | "
                     f"≤ {TARGET:g}× | {result} |")
    return lines


def _decodes(row: Row) -> bool:
    """Whether every timed run of `row` finished and produced its volumes."""
    return bool(row.ok) and all(run.result is not None and run.result.series > 0
                                for run in row.runs)


def _cell(row: Row) -> str:
    if row.ok and not _decodes(row):
        return "produced no volume"
    walls = [run.wall_s for run in row.ok]
    if not walls:
        errors = {run.error for run in row.runs if run.error}
        return "failed" + (f": {sorted(errors)[0]}" if errors else "")
    return f"{row.wall:.2f} ({min(walls):.2f}–{max(walls):.2f})"


def _ratio(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"
