"""Scoring ingested studies: each study's volume, and one forward pass per batch.

Both functions are the same for every engine (`triage.engines`): the local engine calls
them in the main process, the Ray engine in its ingest tasks (`volume_for`) and its
inference actors (`score_batch`). A study whose cached volume no longer reads back is
ingested again; a batch that fails is scored one study at a time, so that one study's bad
volume fails that study alone; a failure of the device stops the run
(`triage.errors.EnvironmentalError`) and is never a study's outcome.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from triage.dicom.scan.grouping import StudyGroup
from triage.errors import EnvironmentalError, describe_environmental, is_environmental
from triage.ingest.config import IngestConfig
from triage.ingest.report import IngestStatus
from triage.ingest.study import StudyOutcome, ingest_study
from triage.preprocess.cache import VolumeCache

if TYPE_CHECKING:
    from triage.registry.bundle import ModelBundle

LOGGER = logging.getLogger(__name__)
NOT_READ_BACK = "the cached volume could not be read back, nor made again"

Clock = Callable[[str], contextlib.AbstractContextManager]


def _no_clock(_stage: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def volume_for(study: StudyGroup, outcome: StudyOutcome, config: IngestConfig,
               cache: VolumeCache, clock: Clock = _no_clock) -> tuple[StudyOutcome, str]:
    """`outcome` with its volume (``array``), and the reason it has none ("" if it has one).

    A worker that found the volume cached sends no array: it is read back from `cache`,
    and a study whose entry no longer reads back (damaged since) is ingested again here.
    A study whose ingest failed keeps its outcome and an empty reason (its report says why).
    """
    if outcome.report.status is not IngestStatus.OK or outcome.array is not None:
        return outcome, ""
    key = outcome.report.cache_key
    try:
        with clock("read_cache"):
            prepared = cache.get(key) if key else None
    except Exception as err:  # noqa: BLE001 - a damaged entry is remade below
        if is_environmental(err):
            raise
        LOGGER.error("Reading the cached volume of study %s raised %s.", study.study_uid,
                     type(err).__name__)
        prepared = None
    if prepared is not None:
        return replace(outcome, array=prepared.array), ""
    LOGGER.warning("The cached volume of study %s is missing or damaged; ingesting the "
                   "study again.", study.study_uid)
    if key:
        cache.discard(key)
    with clock("ingest_again"):
        outcome = ingest_study(study, config, cache.root, keep_array=True)
    if outcome.array is None:
        return outcome, "" if outcome.report.status is not IngestStatus.OK else NOT_READ_BACK
    return outcome, ""


def _predict(bundle: ModelBundle, arrays: Sequence[np.ndarray], device: str, batch_size: int,
             clock: Clock, runtime: str | None) -> np.ndarray:
    # Every forward pass has the same shape (a short batch is padded with copies of its
    # last volume): a study's score then does not depend on which batch it fell in, and a
    # resumed run, or another engine, reproduces an uninterrupted run's scores bit for bit
    # (a batch of one gave scores 2e-7 apart from a batch of two on CPU).
    n = len(arrays)
    arrays = list(arrays) + [arrays[-1]] * (batch_size - n)
    with clock("inference"):
        probs = bundle.predict_proba(np.stack(arrays), device=device,
                                     batch_size=batch_size, runtime=runtime)[:n]
    if not np.all(np.isfinite(probs)):
        raise FloatingPointError("the model returned a non-finite probability")
    return probs


def score_batch(bundle: ModelBundle, arrays: Sequence[np.ndarray], *, device: str,
                batch_size: int, uids: Sequence[str] = (), clock: Clock = _no_clock,
                runtime: str | None = None) -> list[tuple[float | None, str]]:
    """Score `arrays` in one forward pass: ``(probability, "")`` or ``(None, reason)`` each.

    Args:
        bundle: the model.
        arrays: at most `batch_size` prepared volumes.
        device: the torch device of the forward pass.
        batch_size: the shape of every forward pass (short batches are padded).
        uids: the studies' UIDs, for log lines.
        clock: times the forward passes as ``inference``.
        runtime: ``torch`` or ``onnx``; None: the bundle's own.

    Raises:
        EnvironmentalError: the device failed (out of memory, lost): no study's fault.
    """
    if not arrays:
        return []
    try:
        return [(float(p), "") for p in _predict(bundle, arrays, device, batch_size, clock,
                                                           runtime)]
    except Exception as err:  # noqa: BLE001 - find the study that breaks the batch
        LOGGER.warning("Inference failed on a batch of %d (%s); scoring one at a time.",
                       len(arrays), type(err).__name__)
    scored: list[tuple[float | None, str]] = []
    for i, array in enumerate(arrays):
        try:
            scored.append((float(_predict(bundle, [array], device, batch_size, clock,
                                                runtime)[0]), ""))
        except Exception as one:  # noqa: BLE001
            if is_environmental(one):  # the device failed, not the study
                raise EnvironmentalError(f"Inference on {device} failed: "
                                         f"{describe_environmental(one)}.") from one
            LOGGER.error("Inference failed for study %s (%s).",
                         uids[i] if i < len(uids) else "?", type(one).__name__)
            scored.append((None, f"inference error ({type(one).__name__}): {one}"))
    return scored
