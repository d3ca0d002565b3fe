"""The monitoring-window report: one static HTML page over many runs (no study named).

Per device group: studies per run, route mix, the CUSUM paths of scores and input
distances against the decision interval (alarm positions marked), PSI/KS per run against
the calibration reference, labelled performance with 95 % intervals; then every alarm
raised and the alarm file's active alarms. Built only from run records, so it holds no
study identifier and may go to MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triage.monitor import svg
from triage.monitor.alarms import Alarm
from triage.monitor.html import page, para, section, table
from triage.monitor.record import ROUTES


def _fmt(value: Any, digits: int = 3) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, digits)
    return value


def _ci(pair: Sequence[float]) -> str:
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _group(name: str, entry: dict[str, Any], runs: list[dict[str, Any]], h: float) -> str:
    labels = [r["finished_utc"] for r in runs]
    route_rows = [[labels[i], entry["volume"][i], *[entry["routes"][i].get(r, 0)
                                                    for r in ROUTES]]
                  for i in range(len(runs))]
    parts = [svg.lines({"studies": [float(v) for v in entry["volume"]]},
                       f"{name}: studies per run"),
             table(f"volume-{name}", ["run finished", "studies", *ROUTES], route_rows,
                   row_attrs=[{"device": name} for _ in route_rows])]
    for statistic in ("score", "input"):
        info = entry[statistic]
        marks = [info["alarm_at"]["study"] - info["monitored_from"]] if info["alarm_at"] else []
        if info["cusum_path"]:
            parts.append(svg.lines({"CUSUM": info["cusum_path"]},
                                   f"{name}: CUSUM of {statistic} (reference: "
                                   f"{info['reference']})", threshold=h, marks=marks))
        else:
            parts.append(para(f"{statistic}: not monitored yet ({info['n']} values; the "
                              f"reference needs more).", "muted"))
    psi_rows = [[labels[i], r["n"], _fmt(r["psi"], 4), _fmt(r["ks_d"], 4),
                 "" if r["ks_p"] is None else f"{r['ks_p']:.3g}",
                 "shifted" if r.get("shifted") else ""]
                for i, r in enumerate(entry["score_per_run"])]
    parts.append(table(f"psi-{name}", ["run finished", "scored", "PSI", "KS D", "KS p", ""],
                       psi_rows))
    perf = entry["performance"]
    if perf["labelled"]:
        rows = [[labels[i], p["positives"], _fmt(p["miss_rate"]), _ci(p["miss_rate_ci"]),
                 p["urgent"], _fmt(p["ppv"]), _ci(p["ppv_ci"])]
                for i, p in enumerate(perf["per_run"])]
        parts.append(table(f"performance-{name}", ["run finished", "positives", "miss rate",
                                                   "95 % CI", "urgent", "PPV", "95 % CI"],
                           rows))
    return section(f"Device group {name}", *parts)


def render_monitor_report(result: dict[str, Any], raised: Sequence[Alarm],
                          active: Sequence[Alarm]) -> str:
    """The window report as HTML text (`triage.monitor.window.analyze` output)."""
    rule = result["rule"]
    runs = result["runs"]
    head = section(
        "Window",
        para(f"{len(runs)} runs, {sum(r['studies'] for r in runs)} studies, "
             f"{runs[0]['finished_utc'] if runs else '-'} to "
             f"{runs[-1]['finished_utc'] if runs else '-'}."),
        para(f"Rule: two-sided CUSUM, h={rule['cusum_h']}, k={rule['cusum_k']} + 3/sqrt(reference "
             f"size), on standardized "
             f"logit scores (calibration reference, else the first {rule['baseline_studies']} "
             f"studies) and input distances (first {rule['baseline_studies']} studies); "
             f"PSI > {rule['psi_shift']} reported; labelled sensitivity/PPV: alarm on a drop "
             f"of more than {rule['performance_drop']} at {rule['confidence']} confidence."),
        table("alarms-raised", ["alarm", "device group", "detail"],
              [[a.id, a.device_group, a.detail] for a in raised]) if raised
        else para("No new alarm."),
        table("alarms-active", ["alarm", "device group", "raised", "detail"],
              [[a.id, a.device_group, a.raised_utc, a.detail] for a in active]) if active
        else para("No active alarm."))
    groups = [_group(n, e, runs, rule["cusum_h"])
              for n, e in sorted(result["device_groups"].items())]
    return page("triage monitoring window", [head, *groups])
