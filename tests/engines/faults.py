"""Faults in Ray's worker processes, armed by the tests with marker files.

`install` runs in every worker of the test session's Ray instance as it starts (Ray's
``worker_process_setup_hook``): it wraps the per-study functions the Ray engine calls so
that a worker exits abruptly (as a crashing decoder or a dying node would take it) when a
marker names the study it is working on. A ``once`` marker is consumed by the first worker
that sees it (an atomic rename), so the retry succeeds; an ``always`` marker kills every
try.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV = "TRIAGE_TEST_FAULTS"
CANARY = "no study"  # the engine's study-free checks (`triage.engines.ray.NO_STUDY`): arm
# ``alive`` (its ingest check) or ``score`` (its inference check) with it: the cluster failing


def _marker(folder: Path, stage: str, times: str, study_uid: str) -> Path:
    key = hashlib.sha1(study_uid.encode()).hexdigest()[:16]
    return folder / f"{stage}-{times}-{key}"


def arm(folder: Path, stage: str, study_uid: str, times: str = "once") -> Path:
    """Make the next (``once``) or every (``always``) `stage` of `study_uid` kill its worker.

    Args:
        folder: the session's fault folder (``$TRIAGE_TEST_FAULTS``).
        stage: ``ingest`` (the ingest task), ``score`` (the inference actor) or ``alive``
            (the task that reads no study, armed with `CANARY`: the cluster failing).
    """
    path = _marker(folder, stage, times, study_uid)
    path.write_text(study_uid, encoding="utf-8")
    return path


def disarm(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


def _maybe_die(stage: str, study_uid: str) -> None:
    folder = Path(os.environ[ENV])
    if _marker(folder, stage, "always", study_uid).exists():
        os._exit(3)
    once = _marker(folder, stage, "once", study_uid)
    try:
        once.rename(once.with_name(once.name + ".fired"))
    except FileNotFoundError:
        return
    os._exit(3)


def install() -> None:
    """Wrap the Ray engine's per-study calls in this worker (no-op without the variable)."""
    if not os.environ.get(ENV):
        return
    import triage.engines.ray as engine

    real_ingest, real_score, real_alive = engine.ingest_study, engine.score_batch, engine._alive

    def ingest_study(study, *args, **kwargs):
        _maybe_die("ingest", study.study_uid)
        return real_ingest(study, *args, **kwargs)

    def score_batch(bundle, arrays, *, uids=(), **kwargs):
        for uid in uids:
            _maybe_die("score", uid)
        return real_score(bundle, arrays, uids=uids, **kwargs)

    def _alive():
        _maybe_die("alive", CANARY)
        return real_alive()

    engine.ingest_study = ingest_study
    engine.score_batch = score_batch
    engine._alive = _alive
