"""`analyze`: drift and performance per device group over a window of runs, and the alarms.

The rule (docs/monitoring.md has the reasoning, docs/benchmarks.md "Monitoring" the
measured delays):

* **Scores.** Each scored study's ``logit(p)`` is standardized with the device group's
  calibration reference (``logit_mean``, ``logit_std`` from the bundle; at least
  `MIN_REFERENCE` calibration studies), else with the group's first `BASELINE` scores in
  the window (then monitoring starts after them). A two-sided CUSUM (h = 10 reference SDs,
  allowance k = 0.5 + 3 / sqrt(reference size): the reference's own error is allowed for;
  `triage.monitor.detect`) runs over the group's studies in run order;
  crossing h raises ``score-cusum:<group>``. Per run, PSI and a binned KS test against the
  reference histogram are reported (PSI > 0.25: shifted), not alarmed on.
* **Input statistics.** The same CUSUM on the input distance to the training devices,
  standardized with the group's first `BASELINE` distances (SD floored at
  `DISTANCE_SD_FLOOR`): ``input-cusum:<group>``.
* **Labelled performance** ("5 % drop"). Sensitivity (1 - miss rate: positives not routed
  routine) and PPV of the urgent route, with Clopper-Pearson 95 % intervals, per run. An
  alarm ``sensitivity-drop:<group>`` / ``ppv-drop:<group>`` when the one-sided 95 % upper
  bound in the latest `recent_runs` runs is more than 0.05 below the estimate over the
  earlier runs (which need at least `MIN_LABELLED` cases).

An alarm cleared with `triage monitor clear` restarts its detector: only runs finished
after the clear count for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triage.monitor.alarms import Alarm, AlarmState, alarm_id, utc_now
from triage.monitor.detect import (
    CUSUM_H,
    CUSUM_K,
    PERFORMANCE_CONFIDENCE,
    PERFORMANCE_DROP,
    PSI_SHIFT,
    clopper_pearson,
    cusum,
    cusum_allowance,
    ks_binned,
    logit,
    psi,
    upper_bound,
)
from triage.monitor.record import RunRecord, score_histogram

BASELINE = 100
MIN_REFERENCE = 30
MIN_LABELLED = 30
DISTANCE_SD_FLOOR = 0.02


@dataclass(frozen=True)
class Outcome:
    """One labelled study, without its identity: the run it belongs to (index in the
    window), its device group, route and the reader's finding."""

    run: int
    device_group: str
    route: str
    finding: int


@dataclass
class Stream:
    """One statistic of one device group, study by study across the window."""

    values: list[float] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)  # run index of each value


def cusum_path(z: Sequence[float], k: float = CUSUM_K) -> list[float]:
    """max(S+, S-) after each value (for the charts)."""
    upper = lower = 0.0
    out = []
    for value in z:
        upper = max(0.0, upper + value - k)
        lower = max(0.0, lower - value - k)
        out.append(round(max(upper, lower), 4))
    return out


def _standardize(values: np.ndarray, mean: float | None, sd: float | None, *,
                 floor: float = 1e-6, n_ref: int = 0) -> tuple[np.ndarray, int, dict[str, Any]]:
    """(z, first monitored index, the reference moments and size)."""
    if mean is not None and sd is not None and sd > floor:
        return (values - mean) / sd, 0, {"mean": mean, "sd": sd, "n": n_ref}
    if values.size <= BASELINE:
        return np.zeros(0), values.size, {}
    base = values[:BASELINE]
    mean, sd = float(base.mean()), max(float(base.std()), floor)
    return (values[BASELINE:] - mean) / sd, BASELINE, {"mean": round(mean, 6),
                                                       "sd": round(sd, 6), "n": BASELINE}


def _detect(stream: Stream, records: list[RunRecord], group: str, statistic: str,
            transform, mean: float | None, sd: float | None, floor: float,
            source: str, n_ref: int) -> tuple[dict[str, Any], Alarm | None]:
    values = transform(np.asarray(stream.values, dtype=np.float64))
    z, start, ref = _standardize(values, mean, sd, floor=floor, n_ref=n_ref)
    k = cusum_allowance(ref.get("n", BASELINE))
    result = cusum(z.tolist(), k=k)
    info: dict[str, Any] = {
        "n": int(values.size), "reference": source if ref and start == 0 else (
            "baseline" if ref else "none"), "reference_moments": ref,
        "monitored_from": start, "cusum_peak": round(result.peak, 4),
        "cusum_k": round(k, 4), "cusum_path": cusum_path(z.tolist(), k),
        "alarm_at": None}
    if result.index is None:
        return info, None
    at = start + result.index
    run = records[stream.runs[at]]
    info["alarm_at"] = {"study": at, "run": stream.runs[at], "run_finished": run.finished_utc,
                        "direction": result.direction}
    word = "rose" if result.direction == "up" else "fell"
    detail = (f"the {statistic} {word}: CUSUM of standardized values crossed h={CUSUM_H:g} "
              f"(k={k:.2f}) at study {at + 1} of the group in the window, in the run "
              f"finished {run.finished_utc}")
    return info, Alarm(id=alarm_id(statistic, "cusum", group), device_group=group,
                       statistic=statistic, rule="cusum", detail=detail,
                       raised_utc=utc_now(), evidence_utc=run.finished_utc)


def _performance(outcomes: list[Outcome], group: str, n_runs: int, recent_runs: int,
                 records: list[RunRecord]) -> tuple[dict[str, Any], list[Alarm]]:
    mine = [o for o in outcomes if o.device_group == group]
    info: dict[str, Any] = {"labelled": len(mine), "per_run": []}
    alarms: list[Alarm] = []
    if not mine:
        return info, alarms

    def rates(items: list[Outcome]) -> dict[str, Any]:
        pos = [o for o in items if o.finding == 1]
        missed = sum(o.route == "routine" for o in pos)
        urgent = [o for o in items if o.route == "urgent"]
        true_urgent = sum(o.finding == 1 for o in urgent)
        return {"positives": len(pos), "missed": missed,
                "miss_rate": missed / len(pos) if pos else None,
                "miss_rate_ci": clopper_pearson(missed, len(pos)),
                "urgent": len(urgent), "true_urgent": true_urgent,
                "ppv": true_urgent / len(urgent) if urgent else None,
                "ppv_ci": clopper_pearson(true_urgent, len(urgent))}

    for run in range(n_runs):
        info["per_run"].append(rates([o for o in mine if o.run == run]))
    cut = n_runs - recent_runs
    before = rates([o for o in mine if o.run < cut])
    recent = rates([o for o in mine if o.run >= cut])
    info["baseline"], info["recent"] = before, recent
    checks = (("sensitivity", before["positives"], before["positives"] - before["missed"],
               recent["positives"], recent["positives"] - recent["missed"]),
              ("ppv", before["urgent"], before["true_urgent"], recent["urgent"],
               recent["true_urgent"]))
    for name, n0, k0, n1, k1 in checks:
        if n0 < MIN_LABELLED or n1 == 0:
            continue
        base = k0 / n0
        bound = upper_bound(k1, n1, PERFORMANCE_CONFIDENCE)
        info[f"{name}_drop"] = {"baseline": base, "recent": k1 / n1, "recent_upper": bound}
        if bound < base - PERFORMANCE_DROP:
            finished = records[-1].finished_utc if records else ""
            alarms.append(Alarm(
                id=alarm_id(name, "drop", group), device_group=group, statistic=name,
                rule="drop", raised_utc=utc_now(), evidence_utc=finished,
                detail=(f"{name} {k1}/{n1} in the latest {recent_runs} run(s): its 95 % "
                        f"upper bound {bound:.3f} is more than {PERFORMANCE_DROP:g} below "
                        f"{base:.3f} before")))
    return info, alarms


def analyze(records: Sequence[RunRecord], *, outcomes: Iterable[Outcome] = (),
            state: AlarmState | None = None, recent_runs: int = 1) -> dict[str, Any]:
    """Per device group: volume and route mix per run, score and input drift, labelled
    performance; and the alarms the rule raises (not yet stored: see `AlarmState`).

    Args:
        records: the runs, in the order they finished.
        outcomes: labelled studies (`Outcome`), for the performance rule.
        state: the alarm file; runs finished before an alarm's last clear are ignored by
            that alarm's detector.
        recent_runs: runs in the "recent" window of the performance rule.
    """
    records = sorted(records, key=lambda r: r.finished_utc)
    outcomes = list(outcomes)
    groups = sorted({g for r in records for g in r.groups})
    result: dict[str, Any] = {
        "runs": [{"finished_utc": r.finished_utc, "run_id": r.run_id, "studies": r.studies,
                  "route": r.route_counts(), "model_version": r.model_version,
                  "rules_version": r.rules_version, "alarms_active": r.alarms}
                 for r in records],
        "rule": {"cusum_k": CUSUM_K, "cusum_h": CUSUM_H, "baseline_studies": BASELINE,
                 "min_reference": MIN_REFERENCE, "psi_shift": PSI_SHIFT,
                 "performance_drop": PERFORMANCE_DROP, "min_labelled": MIN_LABELLED,
                 "confidence": PERFORMANCE_CONFIDENCE, "recent_runs": recent_runs},
        "device_groups": {}, "alarms": []}
    for group in groups:
        entry: dict[str, Any] = {
            "volume": [r.groups[group].n if group in r.groups else 0 for r in records],
            "routes": [dict(r.groups[group].routes) if group in r.groups else {}
                       for r in records]}
        found = next((r.reference[group] for r in reversed(records) if group in r.reference),
                     None)
        ref: dict[str, Any] = found or {}
        ref_ok = (ref.get("n") or 0) >= MIN_REFERENCE
        scores_runs, distances_runs = [], []
        for record in records:
            g = record.groups.get(group)
            scores_runs.append(g.scores if g else [])
            distances_runs.append(g.distances if g else [])
        hist_ref = ref["hist"] if ref_ok else score_histogram(
            [s for run in scores_runs for s in run][:BASELINE])
        per_run: list[dict[str, Any]] = []
        for scores in scores_runs:
            if not scores or not sum(hist_ref):
                per_run.append({"n": len(scores), "psi": None, "ks_d": None, "ks_p": None})
                continue
            hist = score_histogram(scores)
            d, p_value = ks_binned(hist_ref, hist)
            value = psi(hist_ref, hist)
            per_run.append({"n": len(scores), "psi": round(value, 4), "ks_d": round(d, 4),
                            "ks_p": p_value, "shifted": bool(value > PSI_SHIFT)})
        entry["score_per_run"] = per_run
        for statistic, per_runs, transform, mean, sd, floor, source in (
                ("score", scores_runs, logit, ref["logit_mean"] if ref_ok else None,
                 ref["logit_std"] if ref_ok else None, 1e-3, "calibration"),
                ("input", distances_runs, lambda v: v, None, None, DISTANCE_SD_FLOOR,
                 "baseline")):
            since = state.last_cleared(alarm_id(statistic, "cusum", group)) if state else ""
            stream = Stream()
            for i, values in enumerate(per_runs):
                if records[i].finished_utc > since:
                    stream.values += values
                    stream.runs += [i] * len(values)
            info, alarm = _detect(stream, records, group, statistic, transform, mean, sd,
                                  floor, source, int(ref["n"]) if ref_ok else 0)
            info["since_clear"] = since
            entry[statistic] = info
            if alarm:
                result["alarms"].append(alarm)
        since = max((state.last_cleared(alarm_id(s, "drop", group))
                     for s in ("sensitivity", "ppv")), default="") if state else ""
        kept = [o for o in outcomes if records[o.run].finished_utc > since]
        entry["performance"], perf_alarms = _performance(kept, group, len(records),
                                                         recent_runs, records)
        result["alarms"] += perf_alarms
        result["device_groups"][group] = entry
    return result


def outcomes_from_labels(labels: Mapping[str, int], run_rows: Sequence[Sequence[Any]]
                         ) -> list[Outcome]:
    """Labelled outcomes from a labels mapping (study UID -> finding) and each run's
    worklist rows (run folders only: MLflow records hold no study UID)."""
    out = []
    for run, rows in enumerate(run_rows):
        for row in rows:
            if row.study_uid in labels:
                out.append(Outcome(run, row.device_group, row.route,
                                   int(labels[row.study_uid])))
    return out
