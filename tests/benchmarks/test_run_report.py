"""The `triage run` benchmark's summary, table, verdicts and doc section, from known runs."""

from __future__ import annotations

from benchmarks.run.run import BEGIN, END, Measured, summarize, table, verdicts, write_doc


def _e2e(studies: int, wall: float, rss: float, tree: float) -> Measured:
    return Measured("e2e", studies, wall, rss, tree, studies,
                    {"seconds": wall - 24, "processed": studies, "route": {"review": studies}})


def _forward(studies: int, forward_s: float) -> Measured:
    return Measured("forward", studies, forward_s + 5, 900.0, 900.0, studies,
                    {"volumes": studies, "forward_s": forward_s})


RUNS = [
    _e2e(400, 240.0, 1000.0, 1500.0),  # 100 studies/min
    _forward(400, 60.0),               # 400 studies/min
    _e2e(100, 62.0, 950.0, 1400.0),
]


def test_summary_rates_ratio_and_memory_scaling():
    s = summarize(RUNS, 400, (100, 400))
    assert s["e2e"]["per_minute"] == 100.0
    assert s["forward"]["per_minute"] == 400.0  # forward passes only, not the process wall
    assert s["ratio"] == 0.25
    assert s["large"]["maxrss_mib"] == 1000.0 and s["small"]["maxrss_mib"] == 950.0
    assert abs(s["rss_ratio"] - 1000 / 950) < 1e-12


def test_table_has_one_row_per_measured_thing():
    lines = table(summarize(RUNS, 400, (100, 400))).splitlines()
    assert lines[0].startswith("| measured | studies | scored by the model | studies/min |")
    assert len(lines) == 2 + 4
    e2e = next(line for line in lines if line.startswith("| end to end"))
    assert "| 400 | 400 | 100.0 | 100.0 | 240.0 |" in e2e and "| 1,000 | 1,500 |" in e2e
    assert any(line.startswith("| forward only") and "| 400.0 | 400.0 | 60.0 |" in line
               for line in lines)


def test_ratio_compares_volumes_through_the_model_not_studies():
    broken = Measured("e2e", 400, 240.0, 1000.0, 1500.0, 300, {"seconds": 230.0})
    s = summarize([broken, _forward(300, 45.0)], 400, (100, 400))
    assert s["e2e"]["per_minute"] == 100.0 and s["e2e"]["scored_per_minute"] == 75.0
    assert s["ratio"] == 0.1875  # 75 scored/min vs 400/min forward only


def test_medians_and_ranges_over_rounds():
    runs = RUNS + [_e2e(400, 120.0, 1100.0, 1500.0), _e2e(400, 200.0, 900.0, 1500.0)]
    s = summarize(runs, 400, (100, 400))
    assert s["e2e"]["per_minute"] == 120.0 and s["e2e"]["maxrss_mib"] == 1100.0
    assert "120.0 (100.0–200.0)" in table(s)


def test_verdicts_say_met_or_missed_with_the_reason():
    missed = verdicts(summarize(RUNS, 400, (100, 400)))
    assert "0.25" in missed[0] and "**missed**" in missed[0] and "ingest" in missed[0]
    assert "1.05×" in missed[1] and missed[1].endswith(": met.")
    fast = [_e2e(400, 66.0, 1000.0, 1000.0), _forward(400, 60.0), _e2e(100, 20.0, 500.0, 500.0)]
    met = verdicts(summarize(fast, 400, (100, 400)))
    assert ": met." in met[0] and "**missed**" in met[1]


def test_write_doc_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- ingest:begin -->\ningest\n<!-- ingest:end -->\n")
    write_doc("first", doc)
    write_doc("second", doc)
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and f"{BEGIN}\nsecond\n{END}" in text
    assert "<!-- ingest:begin -->\ningest\n<!-- ingest:end -->" in text and "first" not in text
