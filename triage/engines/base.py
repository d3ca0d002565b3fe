"""What an engine is: it runs the per-study path of `triage ingest` and `triage run`.

An engine takes the studies the driver listed and gives back, as each finishes, the
study's ingest outcome (`Engine.ingest`) or its outcome and score (`Engine.triage`). The
per-study work is always the same pure functions (`triage.ingest.study.ingest_study`,
`triage.engines.scoring.volume_for` and `score_batch`); an engine only decides where they run.
Routing and the journal stay with the caller, which records each row as it arrives, so a
killed driver resumes from its journal whatever engine ran.

Every study given is yielded exactly once, failed or not; a failure of the machine (a full
disk, a lost device) is raised (`triage.errors.EnvironmentalError`), never yielded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.dicom.scan.grouping import StudyGroup
from triage.engines.stopwatch import Stopwatch
from triage.ingest.config import IngestConfig
from triage.ingest.study import StudyOutcome

if TYPE_CHECKING:
    from triage.registry.bundle import ModelBundle


@dataclass(frozen=True)
class TriageJob:
    """What scoring a run's studies needs, whatever engine runs it.

    Attributes:
        config: the model bundle's ingest config (selection, load, preprocess).
        cache_root: the volume cache folder (on a filesystem every node sees).
        bundle: the model.
        device: torch device of the forward passes (``cpu``, ``cuda``; an engine with
            accelerators of its own may use those instead).
        batch_size: volumes per forward pass.
        clock: where the caller's wall time goes, stage by stage.
        runtime: ``torch`` or ``onnx``; None: the bundle's own.
    """

    config: IngestConfig
    cache_root: Path
    bundle: ModelBundle
    device: str
    batch_size: int
    clock: Stopwatch = field(default_factory=Stopwatch)
    runtime: str | None = None


@dataclass(frozen=True)
class Scored:
    """One study through ingest and the model.

    Attributes:
        study: the study.
        outcome: its ingest outcome, without its volume (dropped once scored).
        p: calibrated probability; None when it was not scored.
        error: why a study that ingested was not scored ("" otherwise).
    """

    study: StudyGroup
    outcome: StudyOutcome
    p: float | None = None
    error: str = ""


class Engine(ABC):
    """Runs the per-study path; a context manager that holds its resources while open."""

    name: str = ""
    #: Whether the model runs in the driver's process. An engine whose workers run it (Ray's
    #: inference actors) lets the driver load the bundle without decoding its weights, so
    #: that the driver never imports torch.
    scores_in_driver: bool = True

    @classmethod
    def is_available(cls) -> bool:
        """Whether the packages this engine needs are installed."""
        return True

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:  # noqa: B027 - an engine without start-up has nothing to do
        """Begin acquiring the engine's resources in the background (optional).

        A caller with other work to do first (loading the model) calls this early; the
        engine finishes starting when it is first used.
        """

    def prepare(self, job: TriageJob) -> None:  # noqa: B027 - optional, as `start`
        """Begin what scoring `job` needs, before the driver lists the studies (optional).

        `triage run` calls this once the model is loaded and before it scans the export,
        so that what the engine starts for the model (the Ray engine's inference actors)
        overlaps the scan; `triage` then scores with it.
        """

    def close(self) -> None:  # noqa: B027 - an engine without resources has nothing to do
        """Release what the engine started (processes, a cluster connection)."""

    @property
    @abstractmethod
    def scan_workers(self) -> int:
        """Processes for the driver's scan of the export."""

    @property
    def parallel(self) -> bool:
        """Whether studies run side by side (then the largest go first)."""
        return True

    @abstractmethod
    def ingest(self, studies: Sequence[StudyGroup], config: IngestConfig,
               cache_root: Path) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
        """Ingest `studies` into the cache, yielding ``(study, outcome)`` as each finishes."""

    @abstractmethod
    def triage(self, studies: Sequence[StudyGroup], job: TriageJob) -> Iterator[list[Scored]]:
        """Ingest and score `studies`, yielding batches of scored studies as they finish."""

    def describe(self) -> dict[str, Any]:
        """What ran the studies, for the run summary (no host names or addresses)."""
        return {"engine": self.name}
