"""The alarm rule on scripted streams: an alarm at the shift, none on a stable stream; the
labelled-performance rule; clearing restarts a detector; the alarm file."""

from __future__ import annotations

import numpy as np
import pytest

from triage.monitor.alarms import Alarm, AlarmState
from triage.monitor.detect import cusum, ks_binned, psi
from triage.monitor.scenarios import SHIFTS, Scenario, load_pools, stream
from triage.monitor.window import Outcome, analyze


def test_the_scenarios_resample_a_pipeline_stream_of_2000_studies():
    pools = load_pools()
    stable = pools["stable"]
    assert len(stable) >= 2000 and all(len(pools[s]) >= 200 for s in SHIFTS)
    assert set(np.unique(stable[:, 2])) <= {0.0, 1.0}
    assert ((stable[:, 0] >= 0) & (stable[:, 0] <= 1)).all()
    # as measured through `triage run`: every shift moves the input distance beyond the
    # stable stream's 95th percentile for most of its studies
    for shift in SHIFTS:
        assert np.median(pools[shift][:, 1]) > np.percentile(stable[:, 1], 95), shift


def _analyze(scenario: Scenario, **kwargs):
    records, outcomes = stream(scenario)
    return analyze(records, outcomes=[Outcome(*o) for o in outcomes], **kwargs)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shift", SHIFTS)
def test_a_stable_stream_raises_no_alarm(shift, seed):
    result = _analyze(Scenario(shift=shift, shift_at=None, seed=seed))
    assert result["alarms"] == []


@pytest.mark.parametrize("shift", SHIFTS)
def test_a_shift_raises_an_alarm_within_two_runs(shift):
    result = _analyze(Scenario(shift=shift, shift_at=10, seed=3))
    assert result["alarms"], shift
    entry = result["device_groups"]["acme"]
    fired = [entry[s]["alarm_at"] for s in ("score", "input") if entry[s]["alarm_at"]]
    assert min(f["run"] for f in fired) in (10, 11)
    assert all(f["run"] >= 10 for f in fired)  # never before the shift


def test_without_a_calibration_reference_the_first_studies_are_the_baseline():
    # the shift that moves the pipeline's scores (new-device: logit SD doubles); the
    # noise and hu-offset shifts barely move them (docs/benchmarks.md, "Monitoring")
    records, _ = stream(Scenario(shift="new-device", shift_at=10, seed=5),
                        with_reference=False)
    entry = analyze(records)["device_groups"]["acme"]
    assert entry["score"]["reference"] == "baseline"
    assert entry["score"]["monitored_from"] == 100
    assert entry["score"]["alarm_at"]["run"] >= 10


def test_a_five_point_drop_in_sensitivity_raises_an_alarm():
    # 200 positives before (2 % missed), then 60 positives with 20 % missed
    before = [Outcome(r, "acme", "routine" if i % 50 == 0 else "urgent", 1)
              for r in range(4) for i in range(50)]
    recent = [Outcome(4, "acme", "routine" if i % 5 == 0 else "review", 1) for i in range(60)]
    records, _ = stream(Scenario(runs=5, seed=1))
    result = analyze(records, outcomes=before + recent)
    ids = [a.id for a in result["alarms"]]
    assert ids == ["sensitivity-drop:acme"]
    perf = result["device_groups"]["acme"]["performance"]
    assert perf["recent"]["miss_rate"] == pytest.approx(0.2)
    low, high = perf["recent"]["miss_rate_ci"]
    assert low < 0.2 < high
    # the same 2 % misses recently: no alarm
    steady = [Outcome(4, "acme", "routine" if i % 50 == 0 else "urgent", 1)
              for i in range(60)]
    assert analyze(records, outcomes=before + steady)["alarms"] == []


def test_clearing_restarts_the_detector(tmp_path):
    records, _ = stream(Scenario(shift="hu-offset", shift_at=10, seed=3))
    state = AlarmState.load(tmp_path / "alarms.json")
    added = state.raise_alarms(analyze(records, state=state)["alarms"])
    assert "input-cusum:acme" in [a.id for a in added]
    assert state.raise_alarms(analyze(records, state=state)["alarms"]) == []  # still active
    state.save()
    state = AlarmState.load(tmp_path / "alarms.json")
    assert any(a.startswith("input-cusum:acme (") for a in state.active_by_group()["acme"])
    # cleared after the 12th run: the input detector sees only the 8 later (still shifted)
    # runs, re-learns its baseline from them and stays quiet; the score detector compares
    # with the calibration reference, so a persisting score shift is raised again
    cleared = state.clear(device_group="acme", by="physicist", at=records[11].finished_utc)
    assert len(cleared) == len(added) and state.active() == []
    result = analyze(records, state=state)
    assert result["device_groups"]["acme"]["input"]["n"] == 8 * 25
    assert "input-cusum:acme" not in [a.id for a in result["alarms"]]


def test_the_alarm_file_round_trips_and_refuses_garbage(tmp_path):
    path = tmp_path / "alarms.json"
    state = AlarmState.load(path)
    state.raise_alarms([Alarm("score-cusum:a", "a", "score", "cusum", "x", "t0")])
    state.save()
    again = AlarmState.load(path)
    assert again.alarms == state.alarms and again.active()[0].active
    path.write_text("{not json")
    from triage.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be read"):
        AlarmState.load(path)


def test_drift_statistics():
    assert psi([10, 10, 10], [10, 10, 10]) == 0.0
    assert psi([30, 10, 0], [0, 10, 30]) > 1.0
    d, p = ks_binned([50, 50, 0, 0], [0, 0, 50, 50])
    assert d == 1.0 and p < 1e-6
    assert cusum([0.4] * 1000).index is None  # below the allowance k
    assert cusum([-2.0] * 10).direction == "down"
