"""Inference gets the cores the ingest workers leave free, and torch is restored after."""

from __future__ import annotations

import pytest

from triage.run.threads import inference_threads, limit_inference_threads


@pytest.mark.parametrize(("workers", "current", "cpus", "expected"), [
    (2, 2, 2, 1),    # 2 cores, 2 workers: one thread, never zero
    (4, 16, 16, 12),
    (3, 4, 16, 4),   # never more than torch would use (OMP_NUM_THREADS=4)
    (1, 8, 8, 8),    # ingest inline, in turn with inference: all of them
    (8, 8, 4, 1),
])
def test_inference_threads(workers, current, cpus, expected):
    assert inference_threads(workers, current, cpus) == expected


def test_the_limit_is_undone_after_the_block():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with limit_inference_threads(workers=10_000) as threads:
        assert threads == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
