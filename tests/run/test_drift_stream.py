"""The drift scenario end to end: synthetic exports of several runs in which acme's HU
calibration shifts at a known run, each through `triage run` with the tiny model; then
`triage monitor` over the run folders alarms at the shift (not before), the next run sends
acme to review (the stop-rule), and `triage monitor clear` lifts it.

The score-level version of the same rule is in tests/monitor (fast); this one is slow
(about 200 studies rendered and triaged).
"""

from __future__ import annotations

import pytest

from benchmarks.monitor.stream import GROUP, first_alarm, make_run, monitor
from triage.run.worklist import read_worklist

PER_RUN, STABLE_RUNS, SHIFTED_RUNS = 24, 5, 2


@pytest.mark.slow
def test_a_shifted_device_is_alarmed_stopped_and_cleared(tiny_model, rules_path, tmp_path):
    from triage.cli import main

    def run(i: int, shift: str | None, alarms=None):
        return make_run(tmp_path, f"run{i:02d}", i, studies=PER_RUN, shift=shift,
                        bundle=tiny_model.bundle_dir, rules=rules_path, alarms=alarms)

    alarms, report = tmp_path / "alarms.json", tmp_path / "window.html"
    folders = [run(i, None) for i in range(STABLE_RUNS)]
    assert monitor(folders, alarms=alarms, report=report)[0] == 0  # stable: quiet
    folders += [run(STABLE_RUNS + i, "hu-offset") for i in range(SHIFTED_RUNS)]
    code, payload = monitor(folders, alarms=alarms, report=report)
    assert code == 1
    fired = first_alarm(payload)
    assert fired is not None and fired["statistic"] == "input"
    shift_study = STABLE_RUNS * PER_RUN
    assert shift_study <= fired["study"] < shift_study + SHIFTED_RUNS * PER_RUN
    assert [a["device_group"] for a in payload["alarms_raised"]] == [GROUP] * len(
        payload["alarms_raised"])

    # the stop-rule: the next run sends every acme study to review, naming the alarm
    stopped = run(10, "hu-offset", alarms)
    rows = [r for r in read_worklist(stopped / "worklist.csv") if r.route != "failed"]
    assert rows and all(r.route == "review" and r.rule_ids.startswith("drift-alarm")
                        and f"input-cusum:{GROUP}" in r.reasons for r in rows)

    assert main(["monitor", "clear", "--alarms", str(alarms), "--device-group", GROUP,
                 "--by", "physicist"]) == 0
    lifted = run(11, None, alarms)
    assert not any("drift-alarm" in r.rule_ids
                   for r in read_worklist(lifted / "worklist.csv"))
