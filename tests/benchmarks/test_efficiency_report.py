"""The efficiency benchmark's verdicts and doc section, from known rows (no training)."""

from __future__ import annotations

from typing import Any

from benchmarks.efficiency.run import PEER, goal, run_goal, section


def _variant(name: str, ms: float, held_out: float, certified: str) -> dict[str, Any]:
    return {"variant": name, "params": 1000, "file_mb": 0.1, "forward_ms": ms,
            "temperature": 1.0, "test_auroc": 0.9, "held_out_auroc": held_out,
            "test_ece": 0.1, "held_out_ece": 0.1, "certified": certified}


def _run(name: str, per_min: float, ratio: float) -> dict[str, Any]:
    return {"pipeline": name, "studies": 150, "seconds": 10.0,
            "rounds_per_min": [per_min, per_min / 2], "studies_per_min": per_min,
            "ratio": ratio}


VARIANTS = [_variant("fp32 torch", 100.0, 0.95, "3/4"),
            _variant("fast", 40.0, 0.945, "3/4"),        # meets every criterion
            _variant("too slow", 60.0, 0.95, "3/4"),     # < 2x
            _variant("worse", 20.0, 0.93, "3/4"),        # > 1 point of AUROC lost
            _variant("uncertain", 20.0, 0.95, "2/4")]    # a certified group lost


def test_goal_needs_speed_auroc_and_every_certified_group() -> None:
    assert goal(VARIANTS) == "fast."


def test_goal_says_when_the_parent_certifies_nothing() -> None:
    rows = [dict(r, certified="0/4") for r in VARIANTS]
    assert "cannot be judged" in goal(rows)


def test_run_goal_against_three_times_the_peer() -> None:
    runs = [_run("triage run, fp32 torch", 300.0, 1.0), _run("triage run, ONNX int8", 930.0, 3.1),
            _run(PEER, 300.0, 1.0)]
    assert run_goal(runs) == "met by ONNX int8."
    runs[1] = _run("triage run, ONNX int8", 450.0, 1.5)
    assert run_goal(runs) == "missed: the best, ONNX int8, reaches 1.5x."


def test_section_lists_rules_rounds_and_ratios() -> None:
    runs = [_run("triage run, fp32 torch", 450.0, 1.4), _run(PEER, 321.4, 1.0)]
    meta = {"when": "2026-12-07", "minutes": 20.0, "machine": "x86_64", "versions": "v",
            "studies": 300, "incoming": 150, "epochs": 8, "holdout": "cygnus", "in_shape":
            "96x72x20", "n_test": 25, "n_held_out": 60, "n_calib": 70, "n_train": 108,
            "rounds": 2, "load": "6.8"}
    text = section(VARIANTS, runs, meta)
    assert "triage/configs/rules/demo.yaml" in text and "Load average" in text
    assert "| triage run, fp32 torch | 150 | 10.0 | 450.0 | 450, 225 | 1.4 |" in text
    assert "Goal (`triage run` >= 3x the peer's throughput): missed" in text
