"""Full ingest against dcm2niix on every transfer syntax: one export per syntax, same pixels.

Each export is the `acme` device profile (256², no tilt, no gaps) with only its transfer
syntax replaced, from the same seed: the series hold the same pixel values, so a row's
ratio differs from the next only by what reading that syntax costs. The rows run after the
main table's, with the same rounds (warm-up, then round-robin: dcm2niix, triage's full
ingest, one worker each).

A dcm2niix build that cannot decode a syntax (Debian's has no CharLS, so no JPEG-LS) is
compared with an estimate of what it would take if it could: its own time on the same
pixels in Explicit VR Little Endian plus the time of the decoder alone on the syntax's
frames (``charls-decode``: the CharLS calls dcm2niix would make too), round by round, both
measured in the run. SimpleITK, whose GDCM decodes JPEG-LS with CharLS, runs beside it as
a measured peer, and the row says both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from benchmarks.ingest.measure import Measured, Row
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
#: Syntaxes a dcm2niix build may lack a decoder for -> the decode-only tool that times the
#: decoder dcm2niix would use; SimpleITK runs beside them as a peer that decodes them.
DECODE_ONLY = {"jpegls": "charls-decode"}


@dataclass
class SyntaxRows:
    """The rows of one syntax's export: dcm2niix, triage's full ingest, and for a syntax in
    `DECODE_ONLY`, SimpleITK and the decoder alone."""

    dcm2niix: Row
    triage: Row
    extra: dict[str, Row] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Row]:  # dcm2niix, triage, then the extra rows
        return iter([self.dcm2niix, self.triage, *self.extra.values()])


def run_syntaxes(settings: BenchSettings) -> dict[str, SyntaxRows]:
    """The rows of every syntax of `settings.syntaxes`, each on its own export."""
    out = {}
    for name in settings.syntaxes:
        found = SyntaxRows(Row(get_tool("dcm2niix"), 1), Row(get_tool("triage-ingest"), 1))
        if name in DECODE_ONLY:
            found.extra = {tool: Row(get_tool(tool), 1)
                           for tool in ("sitk", DECODE_ONLY[name])
                           if get_tool(tool).unavailable() is None}
        export = ensure_export(settings, settings.series, devices=(DEVICE,),
                               syntax=(name, SYNTAXES[name][0]))
        run_rounds(settings, export, list(found), prefix=f"syntax-{name}-")
        out[name] = found
    return out


def estimated_dcm2niix(explicit: Row, decode: Row) -> Row:
    """dcm2niix on a syntax it cannot decode here, estimated round by round: its wall time
    on the same pixels in Explicit VR plus the decoder's in-process time on the frames."""
    runs = [Measured(base.wall_s + alone.result.seconds, base.maxrss_mib, base.tree_mib,
                     replace(base.result, tool="dcm2niix (estimate)"))
            for base, alone in zip(explicit.runs, decode.runs, strict=False)
            if base.result is not None and alone.result is not None]
    return Row(explicit.tool, 1, runs)


def syntax_table(results: dict[str, SyntaxRows], series: int,
                 mixed: tuple[Row, Row] | None = None) -> list[str]:
    """One markdown row per syntax: both wall times, the ratio and the target's verdict.

    `mixed` is the main table's (dcm2niix, full ingest) pair with one worker, shown first
    as the mixed export's row.
    """
    lines = ["| transfer syntax | dcm2niix wall s, median (min–max) | triage full ingest wall "
             "s, median (min–max) | triage in-process s | × dcm2niix wall | rounds | "
             "target | result |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    explicit = results["explicit"].dcm2niix if "explicit" in results else None
    rows = ({MIXED: SyntaxRows(*mixed)} if mixed else {}) | results
    for name, found in rows.items():
        d2n, triage = found.dcm2niix, found.triage
        reference, note = d2n, ""
        decode = found.extra.get(DECODE_ONLY.get(name, ""))
        if not _decodes(d2n) and explicit is not None and _decodes(explicit):
            if decode is not None and decode.ok:
                reference = estimated_dcm2niix(explicit, decode)
                note = (f" against an estimate: dcm2niix here cannot decode it, so its time "
                        f"on the same pixels in Explicit VR ({explicit.wall:.2f} s) plus "
                        f"the decoder alone on the frames ({decode.in_process:.2f} s)")
            else:
                reference = explicit
                note = (" (dcm2niix here cannot decode it: compared with its time on the "
                        "same series in Explicit VR)")
        peer = found.extra.get("sitk")
        if peer is not None and peer.ok:
            note += (f"; SimpleITK (GDCM, CharLS) on the same series: {peer.wall:.2f} s "
                     f"wall, triage {triage.wall / peer.wall:.2f}× it")
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
