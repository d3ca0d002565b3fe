"""The stopwatch behind `stage_seconds` in `run_summary.json`."""

from __future__ import annotations

import time

import pytest

from triage.engines.stopwatch import Stopwatch


def test_stages_accumulate_in_the_order_first_timed():
    clock = Stopwatch()
    for stage in ("scan", "inference", "scan"):
        with clock(stage):
            time.sleep(0.01)
    assert list(clock.rounded()) == ["scan", "inference"]
    assert clock.seconds["scan"] >= 0.02 > clock.seconds["inference"] >= 0.01


def test_an_exception_is_timed_and_passes_through():
    clock = Stopwatch()
    with pytest.raises(KeyError), clock("read"):
        raise KeyError("x")
    assert clock.seconds["read"] >= 0


def test_timed_counts_the_waits_and_closes_the_source():
    closed = []

    def slow():
        try:
            for i in range(3):
                time.sleep(0.01)
                yield i
        finally:
            closed.append(True)

    clock = Stopwatch()
    items = clock.timed(slow(), "wait")
    assert next(items) == 0
    items.close()  # the consumer stops early (an exception, Ctrl-C)
    assert closed == [True] and clock.seconds["wait"] >= 0.01
    assert list(clock.timed(slow(), "all")) == [0, 1, 2] and clock.seconds["all"] >= 0.03
