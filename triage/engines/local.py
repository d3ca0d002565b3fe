"""The local engine: this machine's bounded process pool ingests, the main process scores.

Workers ingest studies (`triage.ingest.stream.stream_ingest`) and, for `triage run`, send
each new volume back; the main process scores them in batches of ``batch_size`` with the
model while the workers go on (at the lowest CPU priority: `triage.engines.threads`). At most
``2 * workers`` studies are being ingested and ``batch_size`` volumes wait for the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from triage.dicom.scan.grouping import StudyGroup
from triage.engines.base import Engine, Scored, TriageJob
from triage.engines.scoring import score_batch, volume_for
from triage.engines.threads import available_cpus
from triage.ingest.config import IngestConfig
from triage.ingest.report import IngestStatus
from triage.ingest.stream import stream_ingest
from triage.ingest.study import StudyOutcome
from triage.preprocess.cache import VolumeCache


class LocalEngine(Engine):
    """Ingest in `workers` local processes (default: one per available core; 1 = inline)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or available_cpus())

    @property
    def scan_workers(self) -> int:
        return self.workers

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    def ingest(self, studies: Sequence[StudyGroup], config: IngestConfig,
               cache_root: Path) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
        return stream_ingest(studies, config, cache_root, workers=self.workers)

    def triage(self, studies: Sequence[StudyGroup], job: TriageJob) -> Iterator[list[Scored]]:
        cache = VolumeCache(job.cache_root)
        ingested = stream_ingest(studies, job.config, job.cache_root, workers=self.workers,
                                 background=True, keep_arrays=True)
        batch: list[tuple[StudyGroup, StudyOutcome]] = []
        for study, outcome in job.clock.timed(ingested, "ingest_wait"):
            outcome, reason = volume_for(study, outcome, job.config, cache, job.clock)
            if outcome.report.status is not IngestStatus.OK or outcome.array is None:
                yield [Scored(study, replace(outcome, array=None), None, reason)]
                continue
            batch.append((study, outcome))
            if len(batch) >= job.batch_size:
                yield _scored(batch, job)
                batch = []
        if batch:
            yield _scored(batch, job)

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.workers}


def _scored(batch: list[tuple[StudyGroup, StudyOutcome]], job: TriageJob) -> list[Scored]:
    arrays = [o.array for _, o in batch if o.array is not None]  # all have one
    scores = score_batch(job.bundle, arrays, device=job.device,
                         batch_size=job.batch_size, uids=[s.study_uid for s, _ in batch],
                         clock=job.clock, runtime=job.runtime)
    return [Scored(study, replace(outcome, array=None), p, error)
            for (study, outcome), (p, error) in zip(batch, scores, strict=True)]
