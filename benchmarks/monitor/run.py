"""`make bench-monitor`: detection delay and false-alarm rate of the monitoring alarm rule.

Two parts, both with the product's rule (`triage.monitor.window.analyze`, the settings of
docs/monitoring.md):

* **Through the pipeline** (`benchmarks.monitor.stream`; run first): a tiny model is
  trained, then synthetic acme exports of 25 studies a run (each run its own seed, so no
  study repeats) go through `triage run`. A stable stream of `--pipeline-stable` studies
  (default 2,000; about 3-4 s a run on 2 cores): `triage monitor` over its run folders,
  every alarm cleared at the run that raised it and the monitor rerun until it raises
  nothing, gives the false alarms and their rate per 10,000 with an exact (Garwood)
  Poisson 95 % interval. Per shift type, the first 8 stable runs then 8 runs rendered with
  the generator's knobs give the delay. The per-study (score, input distance, label) of
  the stable stream and of each shifted stream are written to
  `triage/monitor/pipeline_pools.json`.
* **Simulated** (`triage.monitor.scenarios`, resampling those pools; cheap, so many
  streams): for each shift type, `--streams` streams of 25 studies per run that shift after
  200 stable studies: the detection delay in studies of the shifted device. And
  `--stable-streams` stable streams of 2,000 studies, each with its own calibration
  reference draw: false alarms per 10,000 stable studies with the same interval.

The section goes between the ``monitor`` markers of docs/benchmarks.md::

    python -m benchmarks.monitor.run [--streams 200 --stable-streams 500]
        [--pipeline-stable 2000 | --pipeline-results OLD/results.json | --no-pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.common import write_marked_section

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench_output" / "monitor"
DOC = REPO / "docs" / "benchmarks.md"
PER_RUN, STABLE_RUNS, AFTER_RUNS = 25, 8, 12
STABLE_STUDIES = 2000
GOAL_DELAY, GOAL_RATE = 200, 1.0  # studies; false alarms per 10,000 stable studies
PIPE_PER_RUN, PIPE_PREFIX_RUNS, PIPE_SHIFTED_RUNS = 25, 8, 8
def poisson_interval(k: int, exposure: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson rate: `k` events in `exposure` units.

    Example:
        >>> [round(v, 3) for v in poisson_interval(0, 1.0)]
        [0.0, 3.689]
    """
    a = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(stats.chi2.ppf(a, 2 * k)) / 2
    high = float(stats.chi2.ppf(1 - a, 2 * k + 2)) / 2
    return low / exposure, high / exposure


def _first(entry: dict[str, Any], statistics: tuple[str, ...]) -> int | None:
    found = [entry[s]["alarm_at"]["study"] for s in statistics if entry[s]["alarm_at"]]
    return min(found) if found else None


def simulated_delays(streams: int) -> dict[str, dict[str, list[int | None]]]:
    """Per shift: delays (studies of the shifted device up to and including the one that
    crossed; None: not within `AFTER_RUNS` runs; negative: before the shift) of any
    detector, of the score and of the input CUSUM."""
    from triage.monitor.scenarios import SHIFTS, Scenario, stream
    from triage.monitor.window import analyze

    shift_study = STABLE_RUNS * PER_RUN
    out: dict[str, dict[str, list[int | None]]] = {}
    for shift in SHIFTS:
        delays: dict[str, list[int | None]] = {"any": [], "score": [], "input": []}
        for seed in range(streams):
            records, _ = stream(Scenario(runs=STABLE_RUNS + AFTER_RUNS, per_run=PER_RUN,
                                         shift_at=STABLE_RUNS, shift=shift, seed=seed,
                                         reference_seed=10_000 + seed))
            entry = analyze(records)["device_groups"]["acme"]
            for name, statistics in (("any", ("score", "input")), ("score", ("score",)),
                                     ("input", ("input",))):
                at = _first(entry, statistics)
                delays[name].append(None if at is None else at - shift_study + 1)
        out[shift] = delays
    return out


def simulated_false_alarms(streams: int, *, with_reference: bool = True) -> dict[str, Any]:
    """Stable streams of `STABLE_STUDIES` studies: alarms per detector and the rate (the
    score detector against a calibration reference draw, or, without one, against the
    stream's first `BASELINE` scores as for the tiny model of the pipeline part)."""
    from triage.monitor.scenarios import Scenario, stream
    from triage.monitor.window import BASELINE, analyze

    alarms = {"score": 0, "input": 0}
    alarmed, studies = 0, 0
    for seed in range(streams):
        records, _ = stream(Scenario(runs=STABLE_STUDIES // PER_RUN, per_run=PER_RUN,
                                     seed=50_000 + seed, reference_seed=60_000 + seed),
                             with_reference=with_reference)
        entry = analyze(records)["device_groups"]["acme"]
        fired = [s for s in alarms if entry[s]["alarm_at"]]
        for s in fired:
            alarms[s] += 1
        alarmed += bool(fired)
        studies += STABLE_STUDIES
    total = sum(alarms.values())
    low, high = poisson_interval(total, studies / 10_000)
    return {"streams": streams, "studies": studies, "alarms": alarms, "total": total,
            "streams_alarmed": alarmed, "per_10k": total / (studies / 10_000),
            "per_10k_ci": [low, high],
            "input_note": f"the input detector watches each stream after its first "
                          f"{BASELINE} studies"}


def _train_tiny(root: Path) -> Path:
    """The tiny trained bundle of the pipeline tests (`triage.train.tiny`: 14 studies of
    acme and borealis on a 16x16x8 grid, cnn-small for one epoch)."""
    from triage.train.tiny import train_tiny

    outcome, _ = train_tiny(root, experiment="bench-monitor",
                            tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    return Path(outcome.bundle_dir)


def _rules(root: Path) -> Path:
    """The default rules with the slice QC bound of the tiny exports (4, not 16)."""
    import yaml

    from triage.configs import config_path

    rules = yaml.safe_load(config_path("rules").read_text(encoding="utf-8"))
    for rule in rules["rules"]:
        if rule["kind"] == "min-slices":
            rule["min_slices"] = 4
    path = root / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def _studies(folders: list[Path], group: str) -> list[tuple[str, float, float, int]]:
    """(study UID, score, input distance, label) of every scored study of `group` in the
    run folders, in run order (labels from each export's manifest)."""
    import csv

    from triage.run.worklist import read_worklist

    out = []
    for folder in folders:
        with open(folder.parent / "export" / "manifest.csv", encoding="utf-8",
                  newline="") as fh:
            labels = {row["study_uid"]: int(row["label"]) for row in csv.DictReader(fh)}
        for row in read_worklist(folder / "worklist.csv"):
            if row.device_group == group and row.p_calibrated and row.input_distance:
                out.append((row.study_uid, float(row.p_calibrated),
                            float(row.input_distance), labels[row.study_uid]))
    return out


def _moments(studies: list[tuple[str, float, float, int]]) -> dict[str, float]:
    from triage.monitor.detect import logit

    z = logit([s[1] for s in studies])
    d = np.asarray([s[2] for s in studies])
    return {"n": len(studies), "distance_mean": float(d.mean()),
            "distance_sd": float(d.std()), "distance_skew": float(stats.skew(d)),
            "distance_p99": float(np.percentile(d, 99)), "logit_mean": float(z.mean()),
            "logit_sd": float(z.std()), "logit_skew": float(stats.skew(z))}


def _distinct(studies: list[tuple[str, float, float, int]], what: str) -> None:
    uids = [s[0] for s in studies]
    if len(set(uids)) != len(uids):
        raise RuntimeError(f"{what}: {len(uids) - len(set(uids))} studies repeat.")


def false_alarms_through(folders: list[Path], root: Path) -> list[dict[str, Any]]:
    """Every alarm `triage monitor` raises over the stable run folders, as production
    would see them: after each alarm the physicist clears it (`AlarmState.clear`, at the
    run that fired it) and its detector restarts on the later runs; repeated until
    `triage monitor` raises nothing more."""
    from benchmarks.monitor.stream import GROUP, monitor
    from triage.monitor.alarms import AlarmState

    path, found = root / "stable-alarms.json", list[dict[str, Any]]()
    finished = [json.loads((f / "run_record.json").read_text())["finished_utc"]
                for f in folders]
    sizes = [len(json.loads((f / "run_record.json").read_text())["device_group"][GROUP]
                 ["distances"]) for f in folders]
    for _ in range(len(folders) + 1):  # each pass clears at a later run
        _, payload = monitor(folders, alarms=path, report=root / "stable.html")
        raised = payload.get("alarms_raised", [])
        if not raised:
            return found
        state = AlarmState.load(path)
        for alarm in raised:
            entry = payload["device_groups"][alarm["device_group"]][alarm["statistic"]]
            since = entry["since_clear"]
            skipped = sum(n for n, t in zip(sizes, finished, strict=True) if t <= since)
            found.append({"id": alarm["id"], "statistic": alarm["statistic"],
                          "study": skipped + entry["alarm_at"]["study"],
                          "run": entry["alarm_at"]["run"],
                          "direction": entry["alarm_at"]["direction"]})
            state.clear(alarm=alarm["id"], by="bench-monitor", at=alarm["evidence_utc"])
        state.save()
    raise RuntimeError("triage monitor kept raising alarms after every clear.")


def pipeline(root: Path, stable_studies: int = STABLE_STUDIES) -> dict[str, Any]:
    """Through `triage run` and `triage monitor`: a stable stream of `stable_studies`
    distinct studies (false alarms), and per shift a stream of the first
    `PIPE_PREFIX_RUNS` stable runs then `PIPE_SHIFTED_RUNS` shifted runs (the delay). Also
    the per-study pools `triage.monitor.scenarios` resamples."""
    from benchmarks.monitor.stream import GROUP, SHIFTS, first_alarm, make_run, monitor

    root.mkdir(parents=True, exist_ok=True)
    started, load_start = time.perf_counter(), os.getloadavg()
    bundle, rules = _train_tiny(root / "model"), _rules(root)
    trained = time.perf_counter()

    def run(name: str, index: int, shift: str | None) -> Path:
        return make_run(root, name, index, studies=PIPE_PER_RUN, shift=shift,
                        bundle=bundle, rules=rules)

    n_stable = -(-stable_studies // PIPE_PER_RUN)
    stable = [run(f"stable{i:03d}", i, None) for i in range(n_stable)]
    run_seconds = (time.perf_counter() - trained) / n_stable
    studies = _studies(stable, GROUP)
    _distinct(studies, "the stable stream")
    alarms = false_alarms_through(stable, root)
    out: dict[str, Any] = {
        "stable": {"runs": n_stable, "alarms": alarms, **_moments(studies)},
        "shifts": {}, "pools": {"stable": [s[1:] for s in studies]},
        "run_seconds": round(run_seconds, 2)}
    prefix = stable[:PIPE_PREFIX_RUNS]
    shift_study = len(_studies(prefix, GROUP))
    for shift in SHIFTS:
        shifted = [run(f"{shift}{i}", n_stable + i, shift) for i in range(PIPE_SHIFTED_RUNS)]
        after = _studies(shifted, GROUP)
        _distinct(_studies(prefix, GROUP) + after, f"the {shift} stream")
        code, payload = monitor(prefix + shifted, alarms=root / f"{shift}-alarms.json",
                                report=root / f"{shift}.html")
        fired = first_alarm(payload)
        out["shifts"][shift] = {
            "exit": code, "alarm": fired,
            "delay": None if fired is None else fired["study"] - shift_study + 1,
            "alarms": [a["id"] for a in payload.get("alarms_raised", [])],
            **_moments(after)}
        out["pools"][shift] = [s[1:] for s in after]
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    out["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return out


def write_pools(pipe: dict[str, Any], path: Path) -> None:
    """The per-study pools (score, input distance, label) `triage.monitor.scenarios`
    resamples, from this pipeline run."""
    data = {"source": f"benchmarks/monitor/run.py, {pipe['when']}: tiny model (cnn-small, "
                      f"1 epoch), acme exports {stream_knobs()}",
            "columns": ["score", "input_distance", "label"],
            **{name: [[round(p, 6), round(d, 4), int(y)] for p, d, y in rows]
               for name, rows in pipe["pools"].items()}}
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")


def stream_knobs() -> str:
    from benchmarks.monitor.stream import HU_OFFSET, MATRIX, NOISE_HU, SLICES

    return (f"{MATRIX}x{MATRIX}x{SLICES}; noise: device_noise {NOISE_HU:g} HU, hu-offset: "
            f"+{HU_OFFSET:g} HU, new-device: cygnus rendered as acme")


def _stat(values: list[int | None]) -> str:
    hit = [v for v in values if v is not None]
    missed = len(values) - len(hit)
    if not hit:
        return f"missed in {missed} of {len(values)}"
    text = (f"{int(np.median(hit))} / {int(np.percentile(hit, 95))} / {max(hit)}")
    return text + (f"; missed in {missed} of {len(values)}" if missed else "")


def _rate(k: int, studies: int) -> str:
    low, high = poisson_interval(k, studies / 10_000)
    return (f"{k / (studies / 10_000):.2f} per 10,000 stable studies (exact Poisson 95 % CI "
            f"{low:.2f}–{high:.2f})")


def section(sim: dict[str, Any], false: dict[str, Any], pipe: dict[str, Any] | None,
            meta: dict[str, Any]) -> str:
    """The markdown section."""
    from triage.monitor.detect import CUSUM_H, CUSUM_K, REFERENCE_SE
    from triage.monitor.window import BASELINE

    streams = meta["streams"]
    lines = [
        "## Monitoring: detection delay and false alarms",
        "",
        f"`make bench-monitor` ({meta['when']}, {meta['minutes']} min; {meta['machine']}, "
        f"load average {meta['load']:.1f} at its end: a shared machine, a long benchmark "
        f"ran beside it). The alarm rule of docs/monitoring.md as shipped (two-sided CUSUM, "
        f"h = {CUSUM_H:g}, k = {CUSUM_K:g} + {REFERENCE_SE:g}/sqrt(n_ref); input detector "
        f"baseline {BASELINE} studies). Delay: studies of the shifted device up to and "
        "including the one whose CUSUM crossed h; `triage monitor` sees it when it next "
        "runs, i.e. at the end of that study's run (at most one run, 25 studies, later). "
        f"Goal: each shift within {GOAL_DELAY} studies, at most {GOAL_RATE:g} false alarm "
        "per 10,000 stable studies.",
    ]
    if pipe is not None:
        st = pipe["stable"]
        n_alarms = len(st["alarms"])
        where = "; ".join(f"`{a['id'].split(':')[0]}` {a['direction']} at study "
                          f"{a['study'] + 1}" for a in st["alarms"])
        low, high = poisson_interval(n_alarms, st["n"] / 10_000)
        lines += [
            "",
            f"**Through the pipeline** (`benchmarks/monitor/stream.py`, {pipe['when']}, "
            f"{pipe['seconds']:.0f} s, load average {pipe['load'][0]:.1f} -> "
            f"{pipe['load'][1]:.1f}): a tiny model (cnn-small, 1 epoch on 14 synthetic "
            "studies, as the tests' `tiny_model`; its calibration split is too small for a "
            "score reference, so both detectors learn their baseline from the first "
            f"{BASELINE} studies) triages a **stable stream of {st['n']:,} distinct acme "
            f"studies** ({st['runs']} `triage synth` exports of {PIPE_PER_RUN} studies, "
            "32x32x8, each with its own seed; "
            f"{pipe['run_seconds']:.1f} s a run), then `triage monitor` over the "
            f"{st['runs']} run folders; each alarm is cleared at the run that raised it "
            "(its detector restarts, as in production) and the monitor rerun until it "
            f"raises nothing. **False alarms: {n_alarms}"
            + (f" ({where})" if where else "")
            + f", {n_alarms / (st['n'] / 10_000):.2f} per 10,000 stable studies (exact "
            f"Poisson 95 % CI {low:.2f}–{high:.2f})**. 2,000 studies cannot show a rate "
            "below 1 per 10,000 on their own (with no alarm the upper bound is 18 per "
            "10,000; it takes about 37,000 quiet studies to bring it to 1); the simulated "
            "rate below resamples these very studies "
            f"({meta['stable_streams'] * STABLE_STUDIES:,} draws).",
            "",
            f"Per shift: the first {PIPE_PREFIX_RUNS} stable runs, then "
            f"{PIPE_SHIFTED_RUNS} runs ({PIPE_SHIFTED_RUNS * PIPE_PER_RUN} studies) "
            "rendered with the generator's knobs (`noise`: device_noise acme=40 HU "
            "instead of 12; `hu-offset`: +100 HU calibration offset; `new-device`: "
            "cygnus's kernel, noise, HU calibration and encoding under acme's manufacturer "
            "and model, so the `unseen-device` rule cannot see it). The per-study values "
            "of these streams are the pools the simulation resamples "
            "(`triage/monitor/pipeline_pools.json`).",
            "",
            "| stream | first alarm | delay (studies) | input distance mean ± SD "
            "(skew; 99th pct) | logit(p) mean ± SD (skew) |",
            "|---|---|---:|---|---|",
            f"| stable ({st['n']:,} studies) | "
            f"{f'{n_alarms} false' if n_alarms else 'none'} | – | "
            f"{st['distance_mean']:.3f} ± {st['distance_sd']:.3f} "
            f"({st['distance_skew']:+.2f}; {st['distance_p99']:.2f}) | "
            f"{st['logit_mean']:.2f} ± {st['logit_sd']:.2f} ({st['logit_skew']:+.2f}) |",
        ]
        for shift, r in pipe["shifts"].items():
            fired = r["alarm"]
            lines.append(
                f"| `{shift}` ({r['n']}) | "
                f"{fired['statistic'] + '-cusum' if fired else 'none'} | "
                f"{r['delay'] if r['delay'] is not None else 'missed'} | "
                f"{r['distance_mean']:.3f} ± {r['distance_sd']:.3f} "
                f"({r['distance_skew']:+.2f}; {r['distance_p99']:.2f}) | "
                f"{r['logit_mean']:.2f} ± {r['logit_sd']:.2f} ({r['logit_skew']:+.2f}) |")
        missed = [s for s, r in pipe["shifts"].items() if r["delay"] is None]
        early = [s for s, r in pipe["shifts"].items()
                 if r["delay"] is not None and r["delay"] <= 0]
        if missed or early:
            lines += ["", (f"**Missed through the pipeline: {', '.join(missed)}.** "
                           if missed else "")
                      + (f"**Alarm before the shift: {', '.join(early)}.**" if early else "")]
    lines += [
        "",
        f"**Simulated** (`triage.monitor.scenarios`: each study's score, input distance "
        "and label resampled from the pipeline's pools above, stable or shifted; "
        f"independent draws), {PER_RUN} studies a run, shift after "
        f"{STABLE_RUNS * PER_RUN} stable studies, {streams} streams per shift, each with "
        "its own calibration reference draw (1,000 studies of the stable pool); "
        "median / 95th percentile / max:",
        "",
        "| shift | delay, any alarm | score CUSUM alone | input CUSUM alone | "
        f"within {GOAL_DELAY} |",
        "|---|---|---|---|---:|",
    ]
    for shift, d in sim.items():
        within = sum(v is not None and 0 < v <= GOAL_DELAY for v in d["any"])
        lines.append(f"| `{shift}` | {_stat(d['any'])} | {_stat(d['score'])} | "
                     f"{_stat(d['input'])} | {within} / {len(d['any'])} |")
    base = false["baseline_only"]
    lines += [
        "",
        f"False alarms on {false['streams']} stable streams of {STABLE_STUDIES:,} studies "
        f"({false['studies']:,} studies, each stream with its own reference draw): "
        f"{false['total']} alarms (score CUSUM {false['alarms']['score']}, input CUSUM "
        f"{false['alarms']['input']}), in {false['streams_alarmed']} streams: "
        f"**{_rate(false['total'], false['studies'])}**; "
        f"{false['streams_alarmed'] / false['streams']:.1%} of 2,000-study "
        "streams see one. (A CUSUM stops at its first crossing: at most one alarm per "
        "detector per stream, as in production until someone clears it.) The same "
        "streams with no calibration reference (the score detector, like the input "
        "detector, learns its baseline from the first 100 studies, as for the pipeline's "
        f"tiny model): {base['total']} alarms (score {base['alarms']['score']}, input "
        f"{base['alarms']['input']}), {_rate(base['total'], base['studies'])}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200, help="shifted streams per shift")
    parser.add_argument("--stable-streams", type=int, default=500,
                        help="stable streams of 2,000 studies")
    parser.add_argument("--pipeline-stable", type=int, default=STABLE_STUDIES,
                        help="studies of the stable stream through triage run (default "
                             "2000; about 4 s a run of 25 on 2 cores)")
    parser.add_argument("--pipeline-results", type=Path,
                        help="reuse the pipeline part of an earlier results.json (its date "
                             "and load are stated) instead of running it")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="simulated part only, from the pools in the repository")
    parser.add_argument("--no-doc", action="store_true",
                        help="print, do not edit the doc nor rewrite the pools")
    args = parser.parse_args(argv)
    if args.pipeline_stable < PIPE_PREFIX_RUNS * PIPE_PER_RUN:
        parser.error(f"--pipeline-stable must be at least {PIPE_PREFIX_RUNS * PIPE_PER_RUN} "
                     "(the shifted streams start with the first 8 stable runs)")
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
    pipe = None
    if args.pipeline_results is not None:
        pipe = json.loads(args.pipeline_results.read_text())["pipeline"]
    elif not args.no_pipeline:
        import shutil

        shutil.rmtree(OUT / "pipeline", ignore_errors=True)
        pipe = pipeline(OUT / "pipeline", args.pipeline_stable)
        (OUT / "pipeline.json").write_text(json.dumps({"pipeline": pipe}, default=str))
    if pipe is not None and not args.no_doc:
        from triage.monitor.scenarios import POOLS

        write_pools(pipe, POOLS)
    from triage.monitor import scenarios

    scenarios.load_pools.cache_clear()
    sim = simulated_delays(args.streams)
    false = simulated_false_alarms(args.stable_streams)
    false["baseline_only"] = simulated_false_alarms(args.stable_streams,
                                                    with_reference=False)
    meta = {"when": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
            f"{os.cpu_count()} CPUs", "minutes": round((time.perf_counter() - started) / 60, 1),
            "streams": args.streams, "stable_streams": args.stable_streams,
            "load": round(os.getloadavg()[0], 2)}
    text = section(sim, false, pipe, meta)
    print(text)
    (OUT / "results.json").write_text(json.dumps(
        {"simulated": sim, "false_alarms": false, "pipeline": pipe, "meta": meta},
        indent=1, default=str))
    if not args.no_doc:
        write_marked_section(DOC, "<!-- monitor:begin -->", "<!-- monitor:end -->", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
