"""A worker process that dies: the study that killed it is failed, unless workers die on
any task at all, which is the machine failing and stops the ingest (nothing written down).

The deaths are real (``os._exit`` in the worker, as a crashing decoder takes it); the
functions the pool runs are replaced in the test process and reach the forkserver's
workers by reference to this module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dicom.loader_factory import SeriesRecipe, own_study, write_series
from triage.engines.runner import ingest_export
from triage.errors import EnvironmentalError
from triage.ingest import stream
from triage.ingest.config import IngestConfig
from triage.ingest.study import ingest_study

CONFIG = {"selection": {"min_slices": 4},
          "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [16, 16, 8]}}
POISON_SLICES = 7  # the study whose ingest kills its worker: told apart by its size


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    for name, slices in (("a", 10), ("poison", POISON_SLICES), ("b", 9)):
        write_series(root, SeriesRecipe(n_slices=slices), name=name,
                     mutate=own_study("worker-death", name))
    return root


def _die_on_poison(study, config, cache_root, decoded=None, **kwargs):
    if study.file_count == POISON_SLICES:
        os._exit(3)
    return ingest_study(study, config, cache_root, decoded, **kwargs)


def _die(*_: object, **__: object) -> None:
    os._exit(3)


def test_a_study_that_kills_every_worker_it_runs_in_is_failed(export, tmp_path,
                                                                monkeypatch):
    monkeypatch.setattr(stream, "ingest_study", _die_on_poison)
    result = ingest_export(export, tmp_path / "out", IngestConfig.from_dict(CONFIG),
                           workers=2)
    by_files = {r.n_files: r for r in result.reports}
    assert sorted(by_files) == [POISON_SLICES, 9, 10]
    assert by_files[POISON_SLICES].status == "failed"
    assert "worker process died" in by_files[POISON_SLICES].reasons
    assert by_files[9].status == by_files[10].status == "ok"


def test_workers_that_die_on_any_task_stop_the_ingest_instead(export, tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "ingest_study", _die_on_poison)
    monkeypatch.setattr(stream, "_alive", _die)  # not even a task without a study runs
    with pytest.raises(EnvironmentalError, match="die or hang even on a task that reads no study"):
        ingest_export(export, tmp_path / "out", IngestConfig.from_dict(CONFIG), workers=2)


def test_a_healthy_machine_passes_the_worker_check():
    stream.check_workers(timeout=60)
