"""The PACS benchmark's section of docs/benchmarks.md, from measured results (no I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.pacs.measure import ListenResult, RunResult

BEGIN, END = "<!-- pacs:begin -->", "<!-- pacs:end -->"
RATIO_TARGET = 0.8


@dataclass(frozen=True)
class Context:
    """What the section says about how it was measured."""

    command: str
    when: str
    machine: str
    versions: str
    studies: int
    instances_per_study: int
    workers: int


def percentile(values: tuple[float, ...] | list[float], q: float) -> float:
    """The `q`-th percentile (0-100), linear between ranks; NaN for no values.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
        2.5
    """
    data = sorted(values)
    if not data:
        return math.nan
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def throughput_ratio(folder: RunResult, web: RunResult) -> float:
    """DICOMweb studies/min over folder studies/min (NaN when either is unknown)."""
    if not folder.studies_per_minute or math.isnan(folder.studies_per_minute):
        return math.nan
    return web.studies_per_minute / folder.studies_per_minute


def _f(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def section(ctx: Context, listen: ListenResult, folder: RunResult, web: RunResult) -> str:
    """Markdown for docs/benchmarks.md (without the markers)."""
    per_min = 60 * listen.reported / listen.span_s if listen.span_s > 0 else math.nan
    ratio = throughput_ratio(folder, web)
    verdict = ("–" if math.isnan(ratio) else
               "met" if ratio >= RATIO_TARGET else "**missed**")
    lines = [
        "## PACS: `triage listen` latency, and `triage run` from DICOMweb",
        "",
        f"`{ctx.command}`, {ctx.when}; {ctx.studies} synthetic CT studies of "
        f"{ctx.instances_per_study} instances of 64² (devices `acme`, Explicit VR Little "
        f"Endian, and `borealis`, RLE Lossless, alternating), a real "
        f"Orthanc with DICOMweb on loopback, the tiny test model (cnn-small on a 16×16×8 "
        f"grid: the figures are about the PACS paths, not the network).",
        "",
        f"- Machine: {ctx.machine}.",
        f"- Versions: {ctx.versions}.",
        "",
        "### `triage listen` → SR in Orthanc",
        "",
        f"Studies sent back to back by C-STORE (pynetdicom, one association per study) into "
        f"`triage listen --stable-seconds {_f(listen.stable_seconds, 1)} --report-to "
        f"<Orthanc DICOMweb>`. Latency: the SR's arrival in Orthanc (its change feed, polled "
        f"every 50 ms) less the acknowledgement of the study's last instance, less "
        f"`--stable-seconds`.",
        "",
        "| studies sent | SRs stored | instances | sending s | first send → last SR s "
        "| studies/min | latency p50 s | latency p95 s | latency max s | peak RSS MiB "
        "(listener tree) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {listen.studies} | {listen.reported} | {listen.instances} | "
        f"{_f(listen.send_s, 1)} | {_f(listen.span_s, 1)} | {_f(per_min, 1)} | "
        f"{_f(percentile(listen.latencies_s, 50))} | "
        f"{_f(percentile(listen.latencies_s, 95))} | "
        f"{_f(max(listen.latencies_s) if listen.latencies_s else math.nan)} | "
        f"{_f(listen.peak_rss_mib, 0)} |",
        "",
        "### `triage run`: DICOMweb vs folder",
        "",
        f"The same studies, uploaded into a fresh Orthanc, triaged by `triage run` from its "
        f"DICOMweb URL and from the export folder (`--workers {ctx.workers}`), each in a "
        f"fresh process with a fresh `--out`, one after the other. studies/min is what each "
        f"run's summary records (start-up and model loading excluded); wall includes them.",
        "",
        "| source | studies | wall s | in-run s | studies/min | exit |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in (folder, web):
        lines.append(f"| {run.source} | {run.studies} | {_f(run.wall_s, 1)} | "
                     f"{_f(run.seconds, 1)} | {_f(run.studies_per_minute, 1)} | "
                     f"{run.exit_code} |")
    lines += ["", f"- Throughput ratio DICOMweb / folder: {_f(ratio)} (target ≥ "
                  f"{RATIO_TARGET}): {verdict}."]
    if listen.reported < listen.studies:
        lines.append(f"- {listen.studies - listen.reported} of {listen.studies} SRs did not "
                     f"reach Orthanc before the timeout.")
    return "\n".join(lines) + "\n"
