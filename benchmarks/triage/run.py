"""`make bench-triage`: triage quality of routes and probabilities on a held-out export.

One model (the quality benchmark's focal+dp recipe, trained on all five devices of its
export) scores every study of a separate, larger synthetic export (the **pool**: another
seed, the same difficulty). The pool is then redrawn many times into a calibration part
and a test part (stratified by device and label); each draw fits the temperature and the
certified per-device thresholds on the calibration part and routes the test part through
the real rule layer (`benchmarks.triage.redraw`). The report gives, overall and per
device, before and after temperature scaling: negatives auto-cleared, realized miss rate
against α and how often it exceeds α, PPV of urgent, review fraction, ECE / adaptive ECE /
NLL, and checks the issue's targets. Results go to ``bench_output/triage/`` and, between
the ``triage`` markers, to ``docs/benchmarks.md``. Not part of CI::

    python -m benchmarks.triage.run                    # ~1 h cold (pool + model cached)
    python -m benchmarks.triage.run --quick            # smoke run, nothing certifies
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.triage import data, report
from benchmarks.triage.redraw import ALL, Pool, calibrate_draw, qc_flagged, run_draws, summarize
from triage.configs import config_path

REPO = data.REPO
RULES = config_path("rules", "default")
QUALITY_RESULTS = REPO / "bench_output" / "quality" / "results.json"


def held_out_ece(path: Path = QUALITY_RESULTS) -> dict[str, Any] | None:
    """Held-out-device ECE after temperature scaling of the quality benchmark's focal+dp
    runs (its results.json), or None when it holds none."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    results = saved["results"] if isinstance(saved, dict) else saved  # older: a bare list
    rows = [r["rows"]["True"] for r in results
            if r.get("variant") == data.VARIANT and "True" in r.get("rows", {})]
    if not rows:
        return None
    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {"device": rows[0]["held_out_device"], "ece": [r["held_out_ece"] for r in rows],
            "in_domain_ece": [r["in_domain_ece"] for r in rows],
            "temperature": [r["temperature"] for r in rows], "written": modified}


QUALITY_RUNS = REPO / "bench_output" / "quality" / "runs"


def held_out_pool(pools: list[dict[str, Any]], runs: Path = QUALITY_RUNS
                  ) -> dict[str, Any] | None:
    """Calibration on a device the model never saw, measured on the pool.

    The quality benchmark's leave-one-device-out focal+dp models (one per seed, under
    `runs`/<held-out device>/) score the pool. Their temperature is fitted on the pool's
    studies of the devices they were trained on, as a site would calibrate on the scanners
    it has; ECE (bootstrap interval, floor) is then measured on every pool study of the
    held-out device, ~2000 studies instead of the ~100 of the quality benchmark's own
    held-out set. `pools` are the pool exports (`data.prepare_pool` results), scored
    together. None when no such model or no held-out device is in the pool.
    """
    from triage.calibrate import auroc, fit_temperature, probabilities

    if not runs.is_dir():
        return None
    out: dict[str, Any] = {"runs": []}
    for holdout in sorted(d for d in runs.iterdir() if d.is_dir()):
        for bundle in sorted(holdout.glob(f"{data.VARIANT}-seed*/bundle")):
            if not (bundle / "bundle.json").is_file():
                continue
            frame, _ = data.score_pools(bundle, pools)
            held = (frame["device_group"] == holdout.name).to_numpy()
            if not held.any() or held.all():
                continue
            logits = frame[["z0", "z1"]].to_numpy(np.float64)
            labels = frame["label"].astype(int).to_numpy()
            temperature = fit_temperature(logits[~held], labels[~held])
            p_raw, p_cal = (probabilities(logits[held], t) for t in (1.0, temperature))
            out["device"] = holdout.name
            out["runs"].append({
                "model": data.shown(bundle),
                "seed": bundle.parent.name.rsplit("seed", 1)[-1], "n": int(held.sum()),
                "positives": int(labels[held].sum()), "temperature": temperature,
                "calibrated_on": sorted(set(frame["device_group"][~held])),
                "auroc": auroc(p_cal, labels[held]),
                "before": report.ece_extras(p_raw, labels[held]),
                "after": report.ece_extras(p_cal, labels[held])})
    if not out["runs"]:
        return None
    out["ece"] = [r["after"]["ece"] for r in out["runs"]]
    return out


def draw_zero_extras(pool: Pool, qc: np.ndarray, fraction: float, seed: int
                     ) -> dict[str, dict[str, Any]]:
    """ECE with bootstrap intervals and the ECE floor on draw 0's test part, per group."""
    from triage.calibrate import probabilities

    _, test_idx, temperature = calibrate_draw(pool, 0, qc=qc, fraction=fraction, seed=seed)
    out: dict[str, dict[str, Any]] = {}
    for stage, temp in (("before", 1.0), ("after", temperature)):
        p, y, g = (probabilities(pool.logits[test_idx], temp), pool.label[test_idx],
                   pool.group[test_idx])
        out[stage] = {group: report.ece_extras(p[sel], y[sel])
                      for group, sel in [(ALL, np.ones(y.size, bool))]
                      + [(name, g == name) for name in pool.groups]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="acme,borealis,cygnus",
                        help="pool device profiles (`triage synth --devices`)")
    parser.add_argument("--studies-per-device", type=int, default=1000,
                        help="studies per device in each pool export")
    parser.add_argument("--pool-seeds", default="1,2",
                        help="one pool export per seed, pooled (default 1,2: ~1000 "
                             "positives per device)")
    parser.add_argument("--model-seed", type=int, default=0)
    parser.add_argument("--lodo-seeds", default="0,1,2",
                        help="seeds of the models trained without cygnus for the held-out "
                             "calibration table ('' uses the quality benchmark's, if any)")
    parser.add_argument("--draws", type=int, default=1000,
                        help="calibration/test redraws (default 1000: ~1 min once scored)")
    parser.add_argument("--calib-fraction", type=float, default=0.6)
    parser.add_argument("--rules", type=Path, default=RULES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.studies_per_device, args.draws = "acme,cygnus", 20, 5
        args.pool_seeds, args.lodo_seeds = "1", ""
    from triage.route import load_rules

    started, load_start = time.perf_counter(), os.getloadavg()
    data.OUT.mkdir(parents=True, exist_ok=True)
    devices = args.devices.split(",")
    model = data.prepare_model(args.model_seed)
    seeds = [int(seed) for seed in args.pool_seeds.split(",")]
    pools = [data.prepare_pool(devices, args.studies_per_device * len(devices), seed,
                               workers=args.workers) for seed in seeds]
    frame, score_info = data.score_pools(model["bundle"], pools)
    bundle_meta = json.loads((model["bundle"] / "bundle.json").read_text())
    train_devices = bundle_meta["train_devices"]
    ruleset = load_rules(args.rules)
    pool = Pool.from_frame(frame)
    redraw_start = time.perf_counter()
    draws = run_draws(pool, args.draws, ruleset=ruleset, train_devices=train_devices,
                      fraction=args.calib_fraction, seed=0)
    redraw_s = time.perf_counter() - redraw_start
    summary = summarize(draws, ruleset.thresholds.alpha, ruleset.thresholds.delta)
    qc = qc_flagged(pool, ruleset, train_devices)
    extras = draw_zero_extras(pool, qc, args.calib_fraction, 0)
    lodo_seeds = [int(seed) for seed in args.lodo_seeds.split(",") if seed.strip()]
    # The quality benchmark's own held-out ECE (its ~100-study sets) only stands in when
    # this benchmark trains no leave-one-device-out models of its own.
    held_out = None if lodo_seeds else held_out_ece()
    lodo_runs = data.prepare_lodo_models(lodo_seeds) if lodo_seeds else QUALITY_RUNS
    held_out_big = held_out_pool(pools, lodo_runs)
    if held_out_big:
        held_out_big["source"] = ("quality" if lodo_runs == QUALITY_RUNS
                                  else data.shown(lodo_runs))
    min_calib = {g: min(d["n_calib_pos"][g] for d in draws) for g in pool.groups}
    meta = {
        "command": "python -m benchmarks.triage.run " + " ".join(argv or sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.perf_counter() - started, "load_start": load_start,
        "load_end": os.getloadavg(), "cpus": os.cpu_count(), "nice": os.nice(0),
        "cpu": platform.processor() or platform.machine(),
        "devices": devices, "studies_per_device": args.studies_per_device,
        "pool_seeds": seeds,
        "pool_roots": [str(p["root"].relative_to(REPO)) for p in pools],
        "synth_s": sum(p["synth_s"] for p in pools),
        "ingest_s": sum(p["ingest_s"] for p in pools),
        "score_s": score_info["score_s"], "excluded": score_info["excluded"],
        "train_s": model["train_s"], "model": str(model["bundle"].relative_to(REPO)),
        "model_data": model["data"], "model_temperature": bundle_meta["temperature"],
        "train_devices": train_devices, "redraw_s": redraw_s, "draws": args.draws,
        "calib_fraction": args.calib_fraction, "rules": ruleset.full_version,
        "thresholds": dataclasses.asdict(ruleset.thresholds), "qc_flagged": int(qc.sum()),
        "model_calib_pos": {g: v["n_pos"] for g, v in
                            (bundle_meta.get("routing") or {}).get("groups", {}).items()},
        "per_device": {g: {"n": int((pool.group == g).sum()),
                           "positives": int(pool.label[pool.group == g].sum())}
                       for g in pool.groups},
        "min_calib_pos": min_calib, "qc_required": ruleset.thresholds.required_positives}
    results = {"meta": meta, "summary": summary, "draw0": extras, "held_out": held_out,
               "held_out_pool": held_out_big, "draws": draws}
    (data.OUT / "results.json").write_text(json.dumps(results, indent=1, default=float))
    text = render(meta, summary, extras, held_out, ruleset.thresholds, held_out_big)
    print(text)
    report.write_doc(text, args.doc)
    return 0


def render(meta: dict[str, Any], summary: dict[str, Any], extras: dict[str, Any],
           held_out: dict[str, Any] | None, cfg: Any,
           held_out_big: dict[str, Any] | None = None) -> str:
    """The docs/benchmarks.md section."""
    alpha, delta = cfg.alpha, cfg.delta
    per_device = ", ".join(f"`{report.short(g)}` {v['n']} ({v['positives']} positive)"
                           for g, v in meta["per_device"].items())
    excluded = sum(meta["excluded"].values())
    lines = [
        "## Triage quality: routes and calibration on a held-out export", "",
        f"`{meta['command'].strip()}`, {meta['date']}, {meta['seconds'] / 60:.1f} min in all "
        f"on {meta['cpus']} shared CPU cores ({meta['cpu']}; 1-min load average "
        f"{meta['load_start'][0]:.1f} at the start, {meta['load_end'][0]:.1f} at the end; "
        f"niceness {meta.get('nice', 0)}).", "",
        f"- **Model**: `triage/configs/train/quality.yaml` with the quality benchmark's focal+dp "
        f"overrides and blob-fcn `tissue_floor: {data.TISSUE_FLOOR}`, "
        f"`tissue_mask: {data.TISSUE_MASK}` (docs/training.md, "
        f"\"Lesions at an organ's edge\"), seed 0, trained by `train_model` on all five "
        f"devices of "
        f"`{meta['model_data']}` (no held-out device) in {meta['train_s'] / 60:.1f} min. "
        f"Its own calibration split (at most "
        f"{max(meta['model_calib_pos'].values(), default=0)} positives per device) cannot "
        f"certify a threshold (< {meta['qc_required']}), so temperature and thresholds are "
        f"refitted on the pool below.",
        f"- **Pool** ({', '.join(f'`{r}`' for r in meta['pool_roots'])}): one export per "
        f"seed {', '.join(str(s) for s in meta['pool_seeds'])}, each `triage synth --seed "
        f"SEED --studies {meta['studies_per_device'] * len(meta['devices'])} --devices "
        f"{','.join(meta['devices'])} --matrix 128 --no-extras --thick-fraction 0 "
        f"{data.SYNTH_ARGS}` ({meta['synth_s'] / 60:.1f} min in all), ingested with "
        f"`triage/configs/ingest/synthetic.yaml` ({meta['ingest_s'] / 60:.1f} min; {excluded} "
        f"rejected), scored in {meta['score_s']:.0f} s: {per_device}. "
        f"{meta['qc_flagged']} studies flagged by the QC rules.",
        f"- **Redraws**: {meta['draws']} seeded draws, each split per device and label "
        f"{meta['calib_fraction']:.0%} calibration / {1 - meta['calib_fraction']:.0%} test; "
        f"temperature fitted on the calibration part, thresholds certified per device by "
        f"`fit_thresholds` under `{meta['rules']}` (α = {alpha:g}, δ = {delta:g}, PPV target "
        f"{cfg.ppv_target:g}), and every test study routed by `triage.route.Router` "
        f"({meta['redraw_s']:.0f} s for all draws). Figures: mean [2.5 %, 97.5 %] over draws. "
        f"Temperature {report._interval(summary['temperature'], lambda v: f'{v:.3f}')} "
        f"(the bundle's own: {meta['model_temperature']:.3f}).", "",
        "Columns: *negatives cleared* = negatives routed routine / negatives; *miss rate* = "
        "positives routed routine / positives; *P(miss > α), test part* = fraction of draws "
        "whose test part shows a miss rate above α (the issue's criterion); *… if the true "
        "rate were α* = the same probability from test-sampling noise alone for a threshold "
        "whose true miss rate is exactly α; *… implied by ranks* = the same probability for a "
        "sound certificate, from the calibration and test positives' exchangeable ranks "
        "alone (`redraw.exceed_by_ranks`; it holds for any model); *P(pool miss > α)* = "
        "fraction of draws whose thresholds route more than α of **all** the group's pool "
        "positives routine (the finite-population miss rate the certificate bounds, without "
        "test noise); *review* includes QC-flagged and uncertified studies.", "",
        "### Routes after temperature scaling", "",
        report.routing_table(summary, "after", meta["min_calib_pos"]), "",
        "### Routes before calibration (thresholds certified on the raw probabilities)", "",
        report.routing_table(summary, "before", meta["min_calib_pos"]), "",
        f"Test studies routed differently before and after calibration: "
        f"{report._interval(summary['changed'], lambda v: report._pct(v, 2))}. Temperature "
        f"scaling is monotone (it keeps the order of the scores), and both certificate scans "
        f"depend only on how many calibration studies lie below or above each fixed "
        f"candidate threshold: the same studies are certified routine or urgent on either "
        f"scale, and routes differ only where the fixed candidate grid falls differently "
        f"between two scores. What calibration changes is the meaning of the thresholds "
        f"(t_low, t_high as probabilities) and the calibration metrics below.", "",
        "### Calibration of the test part", "",
        report.calibration_table(summary, extras), "",
    ]
    if held_out:
        lines += [f"Held-out device (quality benchmark, `{report.short(held_out['device'])}` "
                  f"held out, focal+dp+T, `bench_output/quality/results.json` written "
                  f"{held_out['written']}): held-out ECE "
                  f"{', '.join(f'{v:.4f}' for v in held_out['ece'])}, in-domain ECE "
                  f"{', '.join(f'{v:.4f}' for v in held_out['in_domain_ece'])}, T "
                  f"{', '.join(f'{v:.3f}' for v in held_out['temperature'])} (per seed). "
                  f"Those sets hold ~100 and ~50 studies: the ECE floor column above shows "
                  f"how much sampling noise alone adds to an ECE at a few hundred.", ""]
    if held_out_big:
        lines += report.held_out_table(held_out_big)
    lines += ["### Targets", ""]
    lines += [f"- {v}" for v in report.verdicts(summary, held_out_big or held_out,
                                               alpha=alpha, delta=delta,
                                               need_pos=cfg.required_positives,
                                               min_calib_pos=meta["min_calib_pos"])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
