"""The noise shift end to end: acme's exports turn noisier (12 -> 40 HU) at a known run;
the input distance (its noise term) moves and `triage monitor` alarms at the shift."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.monitor.stream import first_alarm, make_run, monitor
from triage.run.worklist import read_worklist

PER_RUN, STABLE_RUNS, SHIFTED_RUNS = 24, 5, 2


@pytest.mark.slow
def test_a_noisier_device_moves_the_input_distance_and_is_alarmed(tiny_model, rules_path,
                                                                   tmp_path):
    def run(i: int, shift: str | None):
        return make_run(tmp_path, f"run{i:02d}", i, studies=PER_RUN, shift=shift,
                        bundle=tiny_model.bundle_dir, rules=rules_path)

    def distances(folders):
        return [float(r.input_distance) for f in folders
                for r in read_worklist(f / "worklist.csv") if r.input_distance]

    alarms, report = tmp_path / "alarms.json", tmp_path / "window.html"
    stable = [run(i, None) for i in range(STABLE_RUNS)]
    shifted = [run(STABLE_RUNS + i, "noise") for i in range(SHIFTED_RUNS)]
    before, after = distances(stable), distances(shifted)
    print(f"input distance: stable median {statistics.median(before):.3f} "
          f"(max {max(before):.3f}), noise 40 HU median {statistics.median(after):.3f} "
          f"(min {min(after):.3f})")
    assert statistics.median(after) > statistics.median(before) + 0.3
    code, payload = monitor(stable + shifted, alarms=alarms, report=report)
    fired = first_alarm(payload)
    print("alarm:", fired)
    assert code == 1 and fired is not None and fired["statistic"] == "input"
    shift_study = STABLE_RUNS * PER_RUN
    assert shift_study <= fired["study"] < shift_study + SHIFTED_RUNS * PER_RUN
