"""`RunRecord`: what one `triage run` tells monitoring, without a single study identifier.

Built from the worklist rows and ``run_summary.json`` after the worklists are written, and
written beside them as ``run_record.json`` (and logged to MLflow). Per device group it holds
the route counts, every calibrated score and input distance in processing order (numbers
only, rounded), a score histogram on fixed bins (`SCORE_BINS`) and summaries. No study UID,
accession number, patient ID, date of a study or path reaches it: the monitoring window and
MLflow read only this.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from triage.io import atomic_write_text

RECORD_NAME = "run_record.json"
RECORD_FORMAT = 1
#: Score histogram bins: 20 equal bins of the calibrated probability on [0, 1].
SCORE_BINS: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(21))
ROUTES = ("urgent", "routine", "review", "failed")


def score_histogram(scores: Iterable[float]) -> list[int]:
    """Counts of `scores` in the `SCORE_BINS` (the last bin includes 1.0).

    Example:
        >>> score_histogram([0.0, 0.04, 0.5, 1.0])[:2], sum(score_histogram([0.5, 1.0]))
        ([2, 0], 2)
    """
    values = np.clip(np.asarray(list(scores), dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(values, bins=np.asarray(SCORE_BINS))
    return [int(c) for c in counts]


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "std": None, "p50": None, "p95": None}
    array = np.asarray(values, dtype=np.float64)
    return {"n": int(array.size), "mean": round(float(array.mean()), 6),
            "std": round(float(array.std()), 6),
            "p50": round(float(np.percentile(array, 50)), 6),
            "p95": round(float(np.percentile(array, 95)), 6)}


@dataclass
class GroupRecord:
    """One device group of a run.

    Attributes:
        routes: studies per route.
        scores: calibrated probabilities of the scored studies, in processing order.
        distances: input distances (`triage.run.distance`) of the measured studies.
    """

    routes: dict[str, int] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(self.routes.values())

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "routes": dict(sorted(self.routes.items())),
                "scores": self.scores, "distances": self.distances,
                "score_hist": score_histogram(self.scores),
                "score_summary": _summary(self.scores),
                "distance_summary": _summary(self.distances)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupRecord:
        return cls(routes={str(k): int(v) for k, v in data.get("routes", {}).items()},
                   scores=[float(s) for s in data.get("scores", [])],
                   distances=[float(d) for d in data.get("distances", [])])


@dataclass
class RunRecord:
    """The de-identified record of one run (see the module docstring).

    Attributes:
        finished_utc: when the worklists were written (ISO 8601, UTC).
        model_name, model_version, rules_version, temperature: provenance of the rows.
        groups: device group -> `GroupRecord`.
        stage_seconds: where the run's wall time went (``run_summary.json``).
        alarms: the alarms that were active for this run (the stop-rule; names only).
        run_id: the MLflow run id, once logged.
        reference: the bundle's calibration score reference for the run's device groups
            (`triage.monitor.reference`; empty for a bundle without one).
    """

    finished_utc: str
    model_name: str = ""
    model_version: str = ""
    rules_version: str = ""
    temperature: str = ""
    groups: dict[str, GroupRecord] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    alarms: list[str] = field(default_factory=list)
    run_id: str = ""
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def studies(self) -> int:
        return sum(g.n for g in self.groups.values())

    def route_counts(self) -> dict[str, int]:
        total: Counter = Counter()
        for group in self.groups.values():
            total.update(group.routes)
        return dict(sorted(total.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "finished_utc": self.finished_utc,
                "model_name": self.model_name, "model_version": self.model_version,
                "rules_version": self.rules_version, "temperature": self.temperature,
                "studies": self.studies, "route": self.route_counts(),
                "score_bins": list(SCORE_BINS),
                "device_group": {g: r.to_dict() for g, r in sorted(self.groups.items())},
                "stage_seconds": self.stage_seconds, "seconds": self.seconds,
                "alarms": self.alarms, "run_id": self.run_id, "reference": self.reference}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(finished_utc=str(data.get("finished_utc", "")),
                   model_name=str(data.get("model_name", "")),
                   model_version=str(data.get("model_version", "")),
                   rules_version=str(data.get("rules_version", "")),
                   temperature=str(data.get("temperature", "")),
                   groups={g: GroupRecord.from_dict(r)
                           for g, r in data.get("device_group", {}).items()},
                   stage_seconds=dict(data.get("stage_seconds", {})),
                   seconds=float(data.get("seconds") or 0.0),
                   alarms=list(data.get("alarms", [])), run_id=str(data.get("run_id", "")),
                   reference=dict(data.get("reference", {})))

    def write(self, out_dir: Path | str) -> Path:
        """Write ``run_record.json`` into `out_dir` (atomically); return its path."""
        path = Path(out_dir) / RECORD_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def build_record(rows: Iterable[Any], summary: dict[str, Any], *,
                 alarms: Iterable[str] = (), reference: dict[str, Any] | None = None
                 ) -> RunRecord:
    """The record of a run from its worklist rows and ``run_summary.json`` dict.

    Rows are taken in processing order (``processed_at``, then UID: the UID only breaks
    ties and is not kept).
    """
    from triage.dicom.device import UNKNOWN_DEVICE

    ordered = sorted(rows, key=lambda r: (r.processed_at, r.study_uid))
    groups: dict[str, GroupRecord] = {}
    for row in ordered:
        group = groups.setdefault(row.device_group or UNKNOWN_DEVICE, GroupRecord())
        group.routes[row.route] = group.routes.get(row.route, 0) + 1
        if (p := _number(row.p_calibrated)) is not None:
            group.scores.append(round(p, 4))
        if (d := _number(row.input_distance)) is not None:
            group.distances.append(round(d, 4))
    finished = max((r.processed_at for r in ordered), default="")
    from triage.monitor.reference import reference_for

    kept = {g: e for g in [*groups, "all"] if (e := reference_for(reference, g)) is not None}
    return RunRecord(reference=kept, finished_utc=finished,
                     model_name=str(summary.get("model_name", "")),
                     model_version=str(summary.get("model_version", "")),
                     rules_version=str(summary.get("rules_version", "")),
                     temperature=str(summary.get("temperature", "")), groups=groups,
                     stage_seconds=dict(summary.get("stage_seconds", {})),
                     seconds=float(summary.get("seconds") or 0.0), alarms=sorted(alarms))


def read_record(run_dir: Path | str) -> RunRecord:
    """The record of a run folder: its ``run_record.json``, else one rebuilt from
    ``worklist.csv`` and ``run_summary.json`` (a run from before monitoring existed).

    Raises:
        ConfigError: the folder holds neither.
    """
    from triage.errors import ConfigError
    from triage.run.pipeline import SUMMARY_NAME
    from triage.run.worklist import WORKLIST_NAME, read_worklist

    run_dir = Path(run_dir)
    path = run_dir / RECORD_NAME
    if path.is_file():
        return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    if not (run_dir / WORKLIST_NAME).is_file():
        raise ConfigError(f"{run_dir} is not a triage run folder: it has neither "
                          f"{RECORD_NAME} nor {WORKLIST_NAME}. Pass the --out folder of a "
                          f"`triage run`.")
    summary_path = run_dir / SUMMARY_NAME
    summary = (json.loads(summary_path.read_text(encoding="utf-8"))
               if summary_path.is_file() else {})
    return build_record(read_worklist(run_dir / WORKLIST_NAME), summary)
