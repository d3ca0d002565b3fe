"""The ingest benchmark's tables and verdicts: speed and memory against the issue's targets."""

from __future__ import annotations

from benchmarks.ingest.measure import Measured, Row
from benchmarks.ingest.tools import ToolResult, get_tool

TARGETS = {"triage-load": ("(a)", 1.0), "triage-ingest": ("(b)", 2.0)}
MONAI_FACTOR = 0.5  # "clearly faster than MONAI": at most half its wall time
SCALING_LIMIT = 1.25  # "bounded by a few series": 2N series at most 1.25x the peak of N

def mib(value: float) -> str:
    """MiB for a table cell: no decimals from 10 up, a dash for nothing measured."""
    return "–" if not value else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _times(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"  # NaN: no reference to compare with


def _produced(result: ToolResult, expected: int) -> str:
    parts = [f"{result.series}/{expected} series"]
    if result.failed:
        parts.append(f"{result.failed} failed")
    detail = result.detail
    if detail.get("verdicts"):
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(detail["verdicts"].items())))
    if detail.get("tilt_reslices"):
        parts.append(f"+{detail['tilt_reslices']} tilt reslices")
    for key, label in (("itk_threads", "ITK threads"), ("torch_threads", "torch threads")):
        if key in detail:
            parts.append(f"{label} {detail[key]}")
    return "; ".join(parts)


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def _verdict(ratio: float, limit: float) -> str:
    return f"{'met' if ratio <= limit else '**missed**'} ({ratio:.2f}×)"


def round_ratios(row: Row, reference: Row) -> list[float]:
    """Wall-time ratios of `row` to `reference` round by round (the rounds interleave the
    tools, so each pair shared the machine's conditions); only rounds both finished."""
    pairs = zip(row.runs, reference.runs, strict=False)
    return [mine.wall_s / theirs.wall_s for mine, theirs in pairs
            if mine.result is not None and theirs.result is not None and theirs.wall_s > 0]


def _spread(row: Row, reference: Row, limit: float) -> str:
    """``"; rounds 0.95–1.04×, 1 of 3 above 1×"``: how firm a median verdict is."""
    ratios = round_ratios(row, reference)
    if len(ratios) < 2:
        return ""
    above = sum(r > limit for r in ratios)
    note = f", {above} of {len(ratios)} above {limit:g}×" if above else ""
    return f"; rounds {min(ratios):.2f}–{max(ratios):.2f}×{note}"


def _reference(rows: list[Row], name: str, workers: int) -> Row | None:
    """The peer's row with `workers` workers, else its single-worker row."""
    found = {row.workers: row for row in rows if row.tool.name == name and row.ok}
    return found.get(workers) or found.get(1)


def _targets(row: Row, rows: list[Row]) -> tuple[str, str]:
    """The target and result cells of a triage row (empty for peers)."""
    if row.tool.name not in TARGETS or not row.ok:
        return "", ""
    tag, limit = TARGETS[row.tool.name]
    target, result = [], []
    dcm2niix, monai = _reference(rows, "dcm2niix", row.workers), _reference(rows, "monai", 1)
    if dcm2niix is not None:
        target.append(f"{tag} ≤ {limit:g}× dcm2niix")
        result.append("dcm2niix " + _verdict(row.wall / dcm2niix.wall, limit)[:-1]
                      + _spread(row, dcm2niix, limit) + ")")
    if monai is not None:
        target.append(f"≤ {MONAI_FACTOR:g}× MONAI")
        result.append("MONAI " + _verdict(row.wall / monai.wall, MONAI_FACTOR))
    return "; ".join(target), "; ".join(result)


def main_table(rows: list[Row], skipped: dict[str, str], expected: int) -> list[str]:
    """Markdown lines of the speed and memory table, one row per tool and worker count."""
    lines = ["| tool | workers | wall s, median (min–max) | in-process s | start-up + "
             "imports s | wall s/series | peak RSS MiB, largest process | peak RSS MiB, "
             "process tree | × dcm2niix wall | × dcm2niix in-process | produced | target "
             "| result |", "|" + " --- |" * 13]
    for row in rows:
        ok = row.ok
        if not ok:
            error = next((run.error for run in row.runs if run.error), "not run")
            lines.append(f"| {row.tool.label} | {row.workers} | error: {error} |" + " |" * 10)
            continue
        walls = [run.wall_s for run in ok]
        failed = f", {len(row.runs) - len(ok)} run(s) failed" if len(ok) < len(row.runs) else ""
        reference = _reference(rows, "dcm2niix", row.workers)
        ratio, inner_ratio = ((row.wall / reference.wall, row.in_process / reference.in_process)
                              if reference else (float("nan"), float("nan")))
        target, result = _targets(row, rows)
        lines.append(
            f"| {row.tool.label} | {row.workers} | {row.wall:.2f} ({min(walls):.2f}–"
            f"{max(walls):.2f}){failed} | {row.in_process:.2f} "
            f"| {row.wall - row.in_process:.2f} | {row.wall / expected:.3f} "
            f"| {mib(max(run.maxrss_mib for run in ok))} "
            f"| {mib(max(run.tree_mib for run in ok))} | {_times(ratio)} | {_times(inner_ratio)} "
            f"| {_produced(ok[-1].result, expected) if ok[-1].result else ''} "
            f"| {target} | {result} |")
    for name, reason in skipped.items():
        lines.append(f"| {get_tool(name).label} | | skipped: {reason} |" + " |" * 10)
    return lines


def _growth(small: Measured, large: Measured) -> float:
    """Peak-memory growth from N to 2N series: the larger of the two RSS measures' ratios."""
    tree = large.tree_mib / small.tree_mib if small.tree_mib else 0.0
    return max(large.maxrss_mib / small.maxrss_mib, tree)


def summary(rows: list[Row], pairs: list[tuple[int, Measured, Measured]]) -> list[str]:
    """One plain sentence per target and triage row: met or missed, by how much."""
    lines = []
    for row in rows:
        if row.tool.name not in TARGETS or not row.ok:
            continue
        tag, limit = TARGETS[row.tool.name]
        dcm2niix, monai = _reference(rows, "dcm2niix", row.workers), _reference(rows, "monai", 1)
        parts = []
        if dcm2niix is not None:
            single = _reference(rows, "dcm2niix", 1)
            also = (f" ({row.wall / single.wall:.2f}× single-process dcm2niix)"
                    if single is not None and single is not dcm2niix else "")
            ratios = round_ratios(row, dcm2niix)
            firm = ""
            if row.wall / dcm2niix.wall <= limit and any(r > limit for r in ratios):
                firm = (f", by the medians only: round by round {min(ratios):.2f}–"
                        f"{max(ratios):.2f}×, {sum(r > limit for r in ratios)} of "
                        f"{len(ratios)} rounds above {limit:g}×")
            parts.append(f"{row.wall / dcm2niix.wall:.2f}× dcm2niix's wall time with "
                         f"{_workers(dcm2niix.workers)} (target ≤ {limit:g}×): "
                         f"{'met' if row.wall / dcm2niix.wall <= limit else '**missed**'}"
                         f"{firm}{also}")
        if monai is not None:
            ratio = row.wall / monai.wall
            parts.append(f"{ratio:.2f}× MONAI's (target ≤ {MONAI_FACTOR:g}×): "
                         f"{'met' if ratio <= MONAI_FACTOR else '**missed**'}")
        lines.append(f"- {tag} {row.tool.label}, {_workers(row.workers)}: {'; '.join(parts)}. "
                     f"Start-up and imports are {row.wall - row.in_process:.1f} s of its "
                     f"{row.wall:.1f} s.")
    for workers, small, large in pairs:
        if not (small.error or large.error):
            ratio = _growth(small, large)
            lines.append(f"- Memory, full ingest with {_workers(workers)}: peak RSS "
                         f"{ratio:.2f}× on twice the series (target ≤ {SCALING_LIMIT:g}×): "
                         f"{'met' if ratio <= SCALING_LIMIT else '**missed**'}.")
    return lines


def scaling_table(pairs: list[tuple[int, Measured, Measured]], series: int) -> list[str]:
    """Markdown lines of full ingest's peak memory on N and 2N series."""
    lines = ["| tool | workers | series | wall s | peak RSS MiB, largest process | ratio "
             "| peak RSS MiB, process tree | ratio | target | result |", "|" + " --- |" * 10]
    for workers, small, large in pairs:
        if small.error or large.error:
            lines.append(f"| triage full ingest | {workers} | error: "
                         f"{small.error or large.error} |" + " |" * 7)
            continue
        ratio = large.maxrss_mib / small.maxrss_mib
        tree = large.tree_mib / small.tree_mib if small.tree_mib else float("nan")
        lines.append(
            f"| triage full ingest | {workers} | {series} → {2 * series} "
            f"| {small.wall_s:.1f} → {large.wall_s:.1f} "
            f"| {mib(small.maxrss_mib)} → {mib(large.maxrss_mib)} | {ratio:.2f}× "
            f"| {mib(small.tree_mib)} → {mib(large.tree_mib)} | {tree:.2f}× "
            f"| ≤ {SCALING_LIMIT:g}× | {_verdict(_growth(small, large), SCALING_LIMIT)} |")
    return lines
