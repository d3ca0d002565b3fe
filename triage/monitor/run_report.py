"""``report.html``: the static report of one run, beside its worklists.

Route counts per device group, score histograms per device group against the calibration
reference the bundle carries, input distances, a reliability diagram where labels are
given, stage times and the active alarms; the full report also lists the review and failed
studies with their reasons and, where the selected series' cached volume exists, a
thumbnail of its middle slice. One self-contained file: inline CSS and SVG, PNG thumbnails
as data URIs, no script, no network.

The full report names studies as the worklist does and stays beside it: it is **never**
uploaded. `render_run_report(..., public=True)` is the summary MLflow receives: charts and
counts only, no study table, no thumbnail (docs/monitoring.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from triage.io import atomic_write_text
from triage.monitor import svg
from triage.monitor.detect import ks_binned, psi
from triage.monitor.html import Raw, page, para, section, table
from triage.monitor.record import ROUTES, SCORE_BINS, RunRecord
from triage.monitor.reference import reference_for

LOGGER = logging.getLogger(__name__)
REPORT_NAME = "report.html"
#: Modalities never shown as thumbnails (secondary captures, "other"): they can carry
#: burned-in text.
NO_THUMBNAIL_MODALITIES = frozenset({"SC", "OT", "SR", "DOC"})
REVIEW_ROUTES = ("review", "failed")


def _route_order(record: RunRecord) -> list[str]:
    seen = {r for g in record.groups.values() for r in g.routes}
    return list(ROUTES) + sorted(seen - set(ROUTES))


def route_table(record: RunRecord) -> str:
    """``table#route-counts``: one row per device group (``data-device``), one cell per
    route (``data-col``), and a ``total`` row."""
    order = _route_order(record)
    rows, attrs = [], []
    for name, group in sorted(record.groups.items()):
        rows.append([name, *[group.routes.get(r, 0) for r in order], group.n])
        attrs.append({"device": name})
    totals = record.route_counts()
    rows.append(["total", *[totals.get(r, 0) for r in order], record.studies])
    attrs.append({"device": "__total__"})
    return table("route-counts", ["device group", *order, "studies"], rows, row_attrs=attrs,
                 cell_attrs=[None, *order, "studies"])


def _score_section(record: RunRecord, reference: Mapping[str, Any] | None) -> str:
    charts, stats_rows = [], []
    for name, group in sorted(record.groups.items()):
        if not group.scores:
            continue
        ref = (reference_for(dict(reference), name) if reference
               else record.reference.get(name))
        counts = group.to_dict()["score_hist"]
        ref_hist = ref["hist"] if ref else None
        charts.append(svg.histogram(SCORE_BINS, counts, ref_hist,
                                    f"{name} (n={len(group.scores)})"))
        if ref and ref_hist:
            d, p_value = ks_binned(ref_hist, counts)
            stats_rows.append([name, len(group.scores), ref["n"], round(psi(ref_hist, counts), 4),
                               round(d, 4), f"{p_value:.3g}"])
        else:
            stats_rows.append([name, len(group.scores), 0, "", "", "no calibration reference"])
    if not charts:
        return section("Scores", para("No study was scored."))
    return section(
        "Scores per device group against the calibration reference",
        para("Bars: this run's calibrated probabilities (fraction per bin); orange line: the "
             "calibration split's (bundle score_reference). PSI > 0.25 is a major shift."),
        f'<div class="charts">{"".join(charts)}</div>',
        table("score-drift", ["device group", "scored", "calibration n", "PSI", "KS D",
                              "KS p"], stats_rows))


def _distance_section(record: RunRecord) -> str:
    rows = []
    for name, group in sorted(record.groups.items()):
        s = group.to_dict()["distance_summary"]
        if s["n"]:
            rows.append([name, s["n"], s["mean"], s["p50"], s["p95"]])
    if not rows:
        return ""
    return section("Input statistics (distance to the nearest training device)",
                   para("0 looks like a training device; about 0.3 is a 100 HU shift "
                        "(docs/worklist.md, input distance)."),
                   table("input-distance", ["device group", "n", "mean", "median", "p95"], rows))


def reliability_bins(p: Iterable[float], y: Iterable[int], bins: int = 10
                     ) -> tuple[list[float], list[float], list[int]]:
    """Mean predicted probability, observed frequency and count per equal-width bin."""
    p_arr = np.asarray(list(p), dtype=float)
    y_arr = np.asarray(list(y), dtype=float)
    which = np.minimum((p_arr * bins).astype(int), bins - 1)
    pred, obs, counts = [], [], []
    for b in range(bins):
        mask = which == b
        counts.append(int(mask.sum()))
        pred.append(float(p_arr[mask].mean()) if mask.any() else (b + 0.5) / bins)
        obs.append(float(y_arr[mask].mean()) if mask.any() else 0.0)
    return pred, obs, counts


def _reliability_section(rows: list[Any], labels: Mapping[str, int] | None) -> str:
    if not labels:
        return ""
    pairs = [(float(r.p_calibrated), labels[r.study_uid]) for r in rows
             if r.p_calibrated and r.study_uid in labels]
    if not pairs:
        return section("Reliability", para("No labelled study was scored."))
    pred, obs, counts = reliability_bins([p for p, _ in pairs], [y for _, y in pairs])
    return section("Reliability", para(f"{len(pairs)} labelled, scored studies."),
                   svg.reliability(pred, obs, counts, "reliability (all devices)"))


def thumbnails(out_dir: Path, rows: Iterable[Any]) -> dict[str, str]:
    """Study UID -> PNG data URI of the middle slice of its cached volume, for review and
    failed rows whose selected series has a cached volume and is not a secondary capture."""
    from triage.preprocess.cache import VolumeCache

    wanted = {r.series_uid: r.study_uid for r in rows
              if r.route in REVIEW_ROUTES and r.series_uid
              and r.modality.upper() not in NO_THUMBNAIL_MODALITIES}
    cache_dir = Path(out_dir) / "cache"
    if not wanted or not cache_dir.is_dir():
        return {}
    cache = VolumeCache(cache_dir)
    out: dict[str, str] = {}
    for entry in cache.entries():
        study = wanted.get(entry.series_uid or "")
        if study is None or study in out:
            continue
        try:
            prepared = cache.get(entry.key)
        except Exception as err:  # noqa: BLE001 - a thumbnail is optional
            LOGGER.warning("No thumbnail for study %s (%s).", study, type(err).__name__)
            continue
        if prepared is None or prepared.modality.upper() in NO_THUMBNAIL_MODALITIES:
            continue
        array = np.asarray(prepared.array)
        volume: np.ndarray = array.reshape(array.shape[-3:])
        out[study] = svg.png_data_uri(np.rot90(volume[:, :, volume.shape[2] // 2]))
    return out


def _studies_section(rows: list[Any], thumbs: Mapping[str, str]) -> str:
    from triage.run.worklist import review_order

    listed = review_order([r for r in rows if r.route in REVIEW_ROUTES])
    body = []
    for r in listed:
        thumb = Raw(f'<img class="thumb" alt="middle slice" src="{thumbs[r.study_uid]}">'
                    if r.study_uid in thumbs else "")
        body.append([r.study_uid, r.accession_number, r.device_group, r.route, r.priority,
                     r.p_calibrated, r.reasons, thumb])
    return section(f"Review and failed studies ({len(listed)})",
                   table("review-studies", ["study UID", "accession", "device group", "route",
                                            "priority", "p", "reasons", "middle slice"], body,
                         cell_attrs=["study_uid", "accession", "device", "route", "priority",
                                     "p", "reasons", "thumbnail"]))


def render_run_report(record: RunRecord, rows: list[Any] | None = None, *,
                      reference: Mapping[str, Any] | None = None,
                      thumbs: Mapping[str, str] | None = None,
                      labels: Mapping[str, int] | None = None, public: bool = False) -> str:
    """The report as HTML text.

    Args:
        record: the run's de-identified record.
        rows: the worklist rows (needed for the study list and the reliability diagram).
        reference: the bundle's ``score_reference``.
        thumbs: study UID -> thumbnail data URI (`thumbnails`).
        labels: study UID -> finding (0/1), for the reliability diagram.
        public: the summary for MLflow: no study list, no thumbnail, no reliability
            diagram (it would need study-level labels), nothing but charts and counts.
    """
    alarms = (para("Active drift alarms (their device groups were sent to review): "
                   + "; ".join(record.alarms), "alarm") if record.alarms else "")
    head = section(
        "Run", para(f"Finished {record.finished_utc or 'unknown'}; {record.studies} studies; "
                    f"model {record.model_name} {record.model_version}; rules "
                    f"{record.rules_version}; {record.seconds:.1f} s."), alarms,
        route_table(record),
        svg.stacked_bars({g: r.routes for g, r in sorted(record.groups.items())},
                         _route_order(record), "routes per device group"))
    parts = [head, _score_section(record, reference), _distance_section(record)]
    if not public and rows is not None:
        parts.append(_reliability_section(rows, labels))
        parts.append(_studies_section(rows, thumbs or {}))
    if record.stage_seconds:
        parts.append(section("Where the time went", table(
            "stage-seconds", ["stage", "seconds"],
            [[k, v] for k, v in record.stage_seconds.items()])))
    title = "triage run summary" if public else "triage run report"
    return page(title, parts)


def write_run_report(out_dir: Path | str, record: RunRecord, rows: list[Any], *,
                     reference: Mapping[str, Any] | None = None,
                     labels: Mapping[str, int] | None = None) -> Path:
    """Write the full ``report.html`` into the run folder `out_dir`; return its path."""
    out_dir = Path(out_dir)
    html = render_run_report(record, rows, reference=reference,
                             thumbs=thumbnails(out_dir, rows), labels=labels)
    path = out_dir / REPORT_NAME
    atomic_write_text(path, html)
    return path
