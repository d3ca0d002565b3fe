"""Markdown for the guarantee benchmark's section of docs/benchmarks.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _pct(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else \
        f"{100 * x:.{digits}f} %"


def _check(group: dict[str, Any], mode: str) -> str:
    """The guarantee check of one group: mean miss rate (marginal) or exceedance (pac)."""
    if mode == "marginal":
        return f"{_pct(group['miss_mean'], 2)} ± {_pct(group['miss_se'], 2)}"
    return _pct(group["exceed"])


def redraw_table(cells: Sequence[dict[str, Any]]) -> list[str]:
    """One row per (mode, stratify, calibration positives) cell of `redraw.run_grid`."""
    lines = ["| mode | stratify | calib. positives per device | routine certified | "
             "negatives cleared | review (10 % prevalence) | check, mix | check, worst device |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in cells:
        mix = c["groups"]["mix"]
        devices = {k: v for k, v in c["groups"].items() if k != "mix"}
        key = "miss_mean" if c["mode"] == "marginal" else "exceed"
        worst = max(devices, key=lambda k: devices[k][key])
        lines.append(f"| `{c['mode']}` | `{c['stratify']}` | {c['n']:,} | "
                     f"{_pct(mix['certified'], 0)} | {_pct(mix['cleared'])} | "
                     f"{_pct(mix['review'])} | {_check(mix, c['mode'])} | "
                     f"{_check(devices[worst], c['mode'])} (`{worst}`) |")
    return lines


def days_table(loops: Sequence[dict[str, Any]], devices: Sequence[str]) -> list[str]:
    """Days until each device's routine threshold is certified (median over replicates)."""
    lines = ["| mode | stratify | audit | " + " | ".join(f"`{d}`" for d in devices)
             + " | versions promoted |",
             "| --- | --- | --- | " + " | ".join("---" for _ in devices) + " | --- |"]
    for loop in loops:
        s = loop["settings"]
        cells = []
        for d in devices:
            days = [r["certified_day"][d] for r in loop["replicates"]]
            got = [x for x in days if x is not None]
            text = "never" if not got else f"{int(np.median(got))}"
            if got and len(got) < len(days):
                text += f" ({len(got)} of {len(days)})"
            cells.append(text)
        versions = np.mean([r["versions"] for r in loop["replicates"]])
        lines.append(f"| `{s['mode']}` | `{s['stratify']}` | {s['audit']:g} | "
                     + " | ".join(cells) + f" | {versions:.1f} |")
    return lines


def time_table(loops: Sequence[dict[str, Any]], audit: float) -> list[str]:
    """Review share and realized routine miss rate (all devices) per window, one audit share."""
    chosen = [lp for lp in loops if lp["settings"]["audit"] == audit]
    if not chosen:
        return []
    spans = [w["days"] for w in chosen[0]["replicates"][0]["windows"]]
    lines = ["| mode | stratify | " + " | ".join(f"days {a}–{b}" for a, b in spans) + " |",
             "| --- | --- | " + " | ".join("---" for _ in spans) + " |"]
    for loop in chosen:
        s = loop["settings"]
        cells = []
        for i in range(len(spans)):
            review = np.mean([r["windows"][i]["groups"]["all"]["review"]
                              for r in loop["replicates"]])
            miss = np.mean([r["windows"][i]["groups"]["all"]["miss"]
                            for r in loop["replicates"]])
            cells.append(f"{_pct(review, 0)} / {_pct(miss, 2)}")
        lines.append(f"| `{s['mode']}` | `{s['stratify']}` | " + " | ".join(cells) + " |")
    return lines


def loop_guarantee_table(loops: Sequence[dict[str, Any]], devices: Sequence[str]
                         ) -> list[str]:
    """Per device, over its certified days and all replicates: mean exact miss rate of the
    champion and share of days above alpha."""
    lines = ["| mode | stratify | audit | " + " | ".join(
        f"`{d}`: mean miss / days > α" for d in devices) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in devices) + " |"]
    for loop in loops:
        s = loop["settings"]
        cells = []
        for d in devices:
            rows = [r["guarantee"][d] for r in loop["replicates"] if r["guarantee"][d]["days"]]
            n = sum(r["days"] for r in rows)
            if not n:
                cells.append("never certified")
                continue
            mean = sum(r["mean"] * r["days"] for r in rows) / n
            exceed = sum(r["exceed"] * r["days"] for r in rows) / n
            cells.append(f"{_pct(mean, 2)} / {_pct(exceed, 0)}")
        lines.append(f"| `{s['mode']}` | `{s['stratify']}` | {s['audit']:g} | "
                     + " | ".join(cells) + " |")
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole section from `run.collect`'s results."""
    meta, cells, loops = results["meta"], results["redraw"], results["loop"]
    devices = list(results["devices"])
    alpha, delta = meta["alpha"], meta["delta"]
    pool = ", ".join(f"`{d}` d = {v['d']:.2f}, b = {v['b']:g}"
                     for d, v in results["devices"].items())
    steady = max(lp["settings"]["audit"] for lp in loops) if loops else None
    s0 = loops[0]["settings"] if loops else {}
    out = [
        "## Guarantee modes and the feedback loop",
        "",
        f"`python -m benchmarks.guarantee.run` (`make bench-guarantee`), {meta['when']}, "
        f"{meta['seconds']:.0f} s wall, {meta['cpu_seconds']:.0f} CPU s on {meta['machine']} "
        f"(1-min load average {meta['load'][0]:.1f} at the start, {meta['load'][1]:.1f} at "
        f"the end).",
        "",
        f"**Scores.** Simulated, not the triage benchmark's pool (which needs ~2 h of "
        f"generation and training cold): a binormal model fitted to that benchmark's "
        f"published figures (`benchmarks/guarantee/pool.py`): per device a latent score "
        f"N(0, 1) for negatives and N(d, 1) for positives, d set so that a certified "
        f"routine threshold at ~600 calibration positives clears the measured share of "
        f"negatives (acme 57.8 %, borealis 54.6 %, cygnus 67.9 %), and probabilities "
        f"sigmoid(d z − d²/2 + b), borealis b = −2.8 logits lower as its measured threshold "
        f"(0.0019 against 0.02–0.04): {pool}. Every rate below is the thresholds' exact "
        f"rate under this model (no test-set noise). Thresholds: `triage.route.fit_thresholds`"
        f" with the default rules' settings (α = {alpha:g}, δ = {delta:g}, PPV target 0.9, "
        f"`urgent_fpr` 0.05, shift check at 0.05 with ≥ 5 studies).",
        "",
        f"### Calibration redraws ({meta['draws']} per cell)",
        "",
        "Each draw: n calibration positives and n negatives per device (the pool's ~50 % "
        "prevalence), thresholds fitted, rates measured. *Routine certified*: share of "
        "devices × draws with a routine threshold; *negatives cleared* and *review* (at 10 % "
        "prevalence, audit excluded): device mean; *check*: `marginal` — mean miss rate over "
        f"draws ± s.e. (promise: ≤ α = {alpha:g}); `pac` — share of draws whose miss rate "
        f"exceeds α (promise: ≤ δ = {delta:g}). *Mix* is the three devices equally weighted "
        "(the calibration mix: what `pooled` promises); *worst device* the device with the "
        "highest figure (what `device` promises for every device).",
        "",
        *redraw_table(cells),
        "",
        "### Feedback loop",
        "",
        f"Each of {len(devices)} devices triages {s0.get('per_day')} studies a day at "
        f"{_pct(s0.get('prevalence', 0), 0)} prevalence for {s0.get('days')} days; before "
        "a device is certified its studies go to review. The random audit labels a share "
        "of the scored studies (the calibration sample, docs/feedback.md). Weekly, the "
        "labels no version has used are fitted; the new version is promoted when it "
        "certifies every device the champion certifies (the routing-guarantee gate). As "
        "`triage recalibrate` does, each weekly version consumes the labels of the devices "
        "whose routine threshold it certified, promoted or not; a device it did not certify "
        "keeps its labels for the next week, and the champion's thresholds where it had "
        "them (`carry_over`). "
        f"{len(loops[0]['replicates']) if loops else 0} replicate deployments per row "
        "(seeds 0, 1, …); medians and means over them.",
        "",
        "Days until each device's routine threshold is certified (a device never certified "
        f"within {s0.get('days')} days: *never*; “(k of r)”: certified in k replicates):",
        "",
        *days_table(loops, devices),
        "",
        f"Review share / realized miss rate (positives routed routine ÷ all positives) of "
        f"all devices over time, audit {steady:g}:",
        "",
        *time_table(loops, steady),
        "",
        "The guarantee over the days each device was certified: the champion's exact miss "
        f"rate averaged over those days (`marginal` promises ≤ α = {alpha:g} in expectation) "
        f"and the share of those days with an exact miss rate above α (`pac` promises ≤ "
        f"δ = {delta:g} per version):",
        "",
        *loop_guarantee_table(loops, devices),
        "",
        *results.get("findings", []),
    ]
    return "\n".join(out).rstrip() + "\n"
