"""The `triage run` benchmark's summary, tables, verdicts and doc section, from known runs."""

from __future__ import annotations

from benchmarks.run.measure import Measured
from benchmarks.run.report import (
    breakdown,
    section,
    summarize,
    table,
    verdicts,
)

STAGES = {"scan": 10.0, "ingest_wait": 100.0, "inference": 80.0, "read_cache": 5.0,
          "route_and_journal": 3.0, "worklists": 1.0}


def _e2e(studies: int, wall: float, rss: float, tree: float, network: str = "demo",
         cpu: float = 400.0, pss: float | None = None) -> Measured:
    return Measured("e2e", network, studies, wall, rss, tree, studies, cpu,
                    {"seconds": wall - 24, "processed": studies, "route": {"review": studies},
                     "stage_seconds": STAGES, "inference_threads": 1},
                    tree if pss is None else pss)


def _forward(studies: int, forward_s: float, network: str = "demo") -> Measured:
    return Measured("forward", network, studies, forward_s + 5, 900.0, 900.0, studies, 70.0,
                    {"volumes": studies, "forward_s": forward_s, "forward_cpu_s": 40.0,
                     "threads": 1, "by_threads": {
                         "2": {"probe_s_per_batch": 0.2},
                         "1": {"probe_s_per_batch": 0.1, "forward_s": forward_s}}})


RUNS = [
    _e2e(400, 240.0, 1000.0, 1500.0),  # 100 studies/min
    _forward(400, 60.0),               # 400 studies/min
    _e2e(100, 62.0, 950.0, 1400.0),
]
META = {"argv": "--repeats 1", "when": "today", "minutes": 9.0, "rounds": 1, "cpus": 2,
        "machine": "x86_64", "versions": "Python 3", "load_start": (1.0, 1.0, 1.0),
        "load_end": (2.0, 2.0, 2.0), "load_mean": 1.5, "load_peak": 2.0, "matrix": 64,
        "workers": 0, "batch_size": 4, "harness_mib": 20.0,
        "networks": {"demo": {"name": "demo", "title": "the demo's network",
                              "train_config": "triage/configs/train/demo.yaml",
                              "ingest_config": "triage/configs/ingest/synthetic.yaml",
                              "model": "blob-fcn", "in_shape": "96×72×20", "epochs": 1,
                              "model_studies": 80, "train_s": "20.0"}}}


def test_summary_rates_ratio_and_memory_scaling():
    s = summarize(RUNS, 400, (100, 400), cpus=2)
    demo = s["networks"]["demo"]
    assert demo["e2e"]["per_minute"] == 100.0
    assert demo["forward"]["per_minute"] == 400.0  # forward passes only, not the process wall
    assert demo["ratio"] == 0.25
    assert demo["forward"]["threads"] == 1 and demo["forward"]["by_threads"]["2"] == 0.2
    assert s["large"]["maxrss_mib"] == 1000.0 and s["small"]["maxrss_mib"] == 950.0
    assert abs(s["rss_ratio"] - 1000 / 950) < 1e-12


def test_the_cpu_ceiling_bounds_the_ratio():
    # 400 CPU-s on 2 cores: at least 200 s of wall; the passes alone take 60 s
    demo = summarize(RUNS, 400, (100, 400), cpus=2)["networks"]["demo"]
    assert demo["alone_s"] == 60.0 and demo["ceiling"] == 0.3
    assert demo["ratio"] <= demo["ceiling"]


def test_table_has_one_row_per_measured_thing_naming_the_network():
    runs = RUNS + [_e2e(400, 300.0, 1200.0, 1700.0, "default"), _forward(400, 90.0, "default")]
    lines = table(summarize(runs, 400, (100, 400)), {"default": "densenet"}).splitlines()
    assert lines[0].startswith("| network | measured | studies | scored by the model |")
    assert len(lines) == 2 + 6
    e2e = next(line for line in lines if line.startswith("| demo | end to end"))
    assert "| 400 | 400 | 100.0 | 100.0 | 240.0 | 240.0 | 400.0 | 1,000 | 1,500 |" in e2e
    assert any(line.startswith("| demo | forward only") and "1 thread |" in line
               and "| 400.0 | 400.0 | 60.0 |" in line for line in lines)
    assert sum(line.startswith("| densenet |") for line in lines) == 2
    assert sum("small export" in line or "large export" in line for line in lines) == 2


def test_ratio_compares_volumes_through_the_model_not_studies():
    broken = Measured("e2e", "demo", 400, 240.0, 1000.0, 1500.0, 300, 400.0,
                      {"seconds": 230.0, "stage_seconds": STAGES})
    demo = summarize([broken, _forward(300, 45.0)], 400, (100, 400))["networks"]["demo"]
    assert demo["e2e"]["per_minute"] == 100.0 and demo["e2e"]["scored_per_minute"] == 75.0
    assert demo["ratio"] == 0.1875  # 75 scored/min vs 400/min forward only


def test_medians_and_ranges_over_rounds():
    runs = RUNS + [_e2e(400, 120.0, 1100.0, 1500.0), _e2e(400, 200.0, 900.0, 1500.0)]
    s = summarize(runs, 400, (100, 400))
    assert s["networks"]["demo"]["e2e"]["per_minute"] == 120.0
    assert s["networks"]["demo"]["e2e"]["maxrss_mib"] == 1100.0
    assert "120.0 (100.0–200.0)" in table(s)


def test_breakdown_accounts_for_the_wall_time():
    text = breakdown(summarize(RUNS, 400, (100, 400)))
    assert "| start-up: interpreter, imports, model load | 24.0 s (10%) |" in text
    assert "| waiting for ingest (the model idle) | 100.0 s (42%) |" in text
    assert "| other (journal set-up, summary) | 17.0 s (7%) |" in text  # 216 - 199
    assert "| **wall time** | 240.0 s |" in text
    assert "forward-only rate)* | 60.0 s (25%) |" in text


def test_verdicts_say_met_or_missed_with_the_reason():
    missed = verdicts(summarize(RUNS, 400, (100, 400), cpus=2))
    assert missed[0].startswith("demo: ") and "0.25" in missed[0]
    assert "**missed**" in missed[0] and "cannot exceed 0.30" in missed[0]
    assert "1000 ms per study" in missed[0] and "100 ms per volume" in missed[0]
    assert "1.05×" in missed[1] and missed[1].endswith(": met.")
    fast = [_e2e(400, 66.0, 1000.0, 1000.0), _forward(400, 60.0), _e2e(100, 20.0, 500.0, 500.0)]
    met = verdicts(summarize(fast, 400, (100, 400)))
    assert met[0].endswith(": met.") and "**missed**" in met[1]


def test_memory_verdict_judges_the_tree_by_rss_and_by_pss():
    """The tree's RSS counts the pages forked workers share with the main process once per
    process; its PSS counts them once. The verdict names both, and each must hold."""
    runs = [_e2e(400, 240.0, 1000.0, 1100.0, pss=700.0), _forward(400, 60.0),
            _e2e(100, 62.0, 950.0, 1000.0, pss=500.0)]
    s = summarize(runs, 400, (100, 400), cpus=2)
    assert abs(s["pss_ratio"] - 1.4) < 1e-12
    line = verdicts(s)[1]
    assert "1.10× for the process tree's RSS, 1.40× for its PSS" in line
    assert line.endswith("**missed**.")
    assert "| 1,100 | 700 |" in table(s)


def test_section_names_every_network_and_its_config():
    text = section(summarize(RUNS, 400, (100, 400), cpus=2), META)
    assert "**demo** = the demo's network: `triage/configs/train/demo.yaml`" in text
    assert "network `blob-fcn`" in text and "| demo | end to end" in text
    assert "| end-to-end wall time | demo |" in text
    assert "demo: 2 threads 200 ms, 1 thread 100 ms." in text


def test_verdicts_sum_up_a_met_and_a_missed_network():
    runs = RUNS + [_e2e(400, 70.0, 1200.0, 1700.0, "heavy", cpu=130.0),
                   _forward(400, 60.0, "heavy")]
    lines = verdicts(summarize(runs, 400, (100, 400), cpus=2))
    assert any(line.startswith("heavy:") and line.endswith("met.") for line in lines)
    # demo: ratio 0.25 of a 0.30 ceiling
    summary = next(line for line in lines if line.startswith("In all:"))
    assert "(heavy)" in summary and "(demo)" in summary
    assert "reached 83% of the ratio" in summary
