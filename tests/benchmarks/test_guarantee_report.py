"""The guarantee benchmark's report on a tiny seeded run, and its tables on hand-made results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.guarantee import loop, redraw, report, run
from benchmarks.guarantee.pool import DEVICES


@pytest.fixture(scope="module")
def results():
    return run._jsonable(run.collect(draws=3, sizes=(20, 120), days=14, per_day=60,
                                     replicates=1, audits=(0.1,)))


def test_render_has_every_cell_and_is_json_ready(results):
    text = report.render(results)
    json.dumps(results)  # what run.main writes
    assert text.startswith("## Guarantee modes and the feedback loop")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    # 2 modes x 3 stratify x 2 sizes redraw rows, then 6 loops in each of three tables
    assert len(rows) == 12 + 3 * 6
    assert "| `pac` | `device` | 20 | 0 % | 0.0 % | 100.0 % | 0.0 % |" in text
    assert "| `marginal` | `pooled` | 120 | 100 % |" in text
    assert "Simulated, not the triage benchmark's pool" in text


def test_tables_on_hand_made_results():
    group = {"cleared": 0.5, "review": 0.25, "certified": 1.0, "urgent_certified": 1.0,
             "miss_mean": 0.0123, "miss_se": 0.001, "exceed": 0.04}
    cell = {"mode": "marginal", "stratify": "auto", "n": 1000,
            "groups": {"a": group, "b": {**group, "miss_mean": 0.02}, "mix": group}}
    assert report.redraw_table([cell])[2] == (
        "| `marginal` | `auto` | 1,000 | 100 % | 50.0 % | 25.0 % | 1.23 % ± 0.10 % | "
        "2.00 % ± 0.10 % (`b`) |")
    assert report.redraw_table([{**cell, "mode": "pac"}])[2].endswith("| 4.0 % | 4.0 % (`a`) |")
    reps = [{"certified_day": {"a": 10, "b": None}, "versions": 2},
            {"certified_day": {"a": 20, "b": 30}, "versions": 1}]
    lp = {"settings": {"mode": "pac", "stratify": "device", "audit": 0.05}, "replicates": reps}
    assert report.days_table([lp], ["a", "b"])[2] == (
        "| `pac` | `device` | 0.05 | 15 | 30 (1 of 2) | 1.5 |")


def test_marginal_device_keeps_its_promise_on_average():
    cell = redraw.run_cell("marginal", "device", 99, draws=200, seed=1)
    for name in [d.name for d in DEVICES]:
        g = cell["groups"][name]
        assert g["certified"] == 1.0
        assert g["miss_mean"] <= 0.01 + 3 * g["miss_se"]


def test_loop_certifies_pooled_before_device_and_never_before_enough_labels():
    pooled = loop.simulate(loop.LoopSettings("marginal", "pooled", 0.1, days=70, per_day=100))
    device = loop.simulate(loop.LoopSettings("marginal", "device", 0.1, days=70, per_day=100))
    days = pooled["certified_day"]["acme"]
    # 99 pooled positives need ~33 days at 3 x 100 x 0.1 x 0.1 audited positives a day
    assert days is not None and 21 <= days <= 56
    assert all(v is None for v in device["certified_day"].values())  # 99 each: ~99 days
    first = days - 1
    assert np.all(pooled["daily"]["acme"]["review"][:first] == 100)


def test_loop_keeps_the_labels_of_a_device_it_does_not_certify():
    # borealis scores 2.8 logits lower: `auto` refuses it the pooled threshold, so it needs
    # its own 99 positives (~1 audited a day); the weekly versions that certify the other
    # two devices from day ~35 on must not consume borealis's labels on the way
    auto = loop.simulate(loop.LoopSettings("marginal", "auto", 0.1, days=200, per_day=100))
    days = auto["certified_day"]
    assert days["acme"] is not None and days["acme"] <= 56
    assert days["borealis"] is not None and 63 <= days["borealis"] <= 160
    assert days["borealis"] > days["acme"]
