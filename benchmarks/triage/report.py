"""The triage benchmark's report: tables, verdicts against the issue's targets, the doc block.

Everything here reads the plain dicts that `benchmarks.triage.redraw.summarize` and
`benchmarks.triage.run` produce, so tests can feed it simulated results.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_marked_section
from triage.calibrate import bootstrap_ci, ece

BEGIN, END = "<!-- triage:begin -->", "<!-- triage:end -->"
#: The issue's targets.
ECE_IN_DOMAIN, ECE_HELD_OUT = 0.01, 0.02
CLEARED_TARGET = 0.5
REVIEW_GOAL = 0.2
ALL = "all"


def short(group: str) -> str:
    """``acme-tomography-voxa-64`` → ``acme`` (the synthetic profile name)."""
    return group.split("-")[0]


def _num(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pct(value: float, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f} %"


def _interval(stats: dict[str, float], fmt: Any = _pct) -> str:
    """``mean [2.5 %, 97.5 %]`` over draws."""
    if not stats or not stats.get("n_valid"):
        return "–"
    return f"{fmt(stats['mean'])} [{fmt(stats['low'])}, {fmt(stats['high'])}]"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def ece_extras(p: np.ndarray, labels: np.ndarray, *, n_boot: int = 1000, n_sim: int = 200,
               n_bins: int = 15, seed: int = 0) -> dict[str, float]:
    """ECE of one set with its bootstrap 95 % interval (`triage.calibrate.bootstrap_ci`),
    the adaptive ECE's interval, and the **ECE floor**: the mean ECE of labels redrawn as
    Bernoulli(p), i.e. what a perfectly calibrated model scores on a set of this size."""
    rng = np.random.default_rng(seed)
    floor = [ece(p, (rng.uniform(size=p.size) < p).astype(int), n_bins) for _ in range(n_sim)]
    low, high = bootstrap_ci("ece", p, labels, n_boot=n_boot, seed=seed, n_bins=n_bins)
    a_low, a_high = bootstrap_ci("adaptive_ece", p, labels, n_boot=n_boot, seed=seed,
                                 n_bins=n_bins)
    return {"ece": ece(p, labels, n_bins), "ece_low": low, "ece_high": high,
            "aece_low": a_low, "aece_high": a_high, "ece_floor": float(np.mean(floor)),
            "n": float(p.size)}


def routing_table(summary: dict[str, Any], stage: str, min_calib_pos: dict[str, int]) -> str:
    """Per-group routing figures of one stage, mean [2.5 %, 97.5 %] over draws."""
    header = ["group", "test studies (positives)", "min calib. positives", "certified",
              "negatives cleared (routine)", "miss rate", "P(miss > α), test part",
              "… if the true rate were α", "… implied by ranks", "P(pool miss > α)",
              "PPV urgent", "urgent", "review", "t_low", "t_high"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for group, entry in summary["stages"][stage].items():
        calib = min(min_calib_pos.values()) if group == ALL else min_calib_pos.get(group, 0)
        cells = [
            ALL if group == ALL else f"`{short(group)}`",
            f"{entry['n_test']:.0f} ({entry['n_test_pos']:.0f})", str(calib),
            _pct(entry["certified"]["mean"], 0),
            _interval(entry["cleared"]), _interval(entry["miss"], lambda v: _pct(v, 2)),
            _pct(entry["miss_exceed"]), _pct(entry["exceed_if_at_alpha"]),
            _pct(entry.get("exceed_by_ranks", float("nan"))),
            _pct(entry["pool_miss_exceed"]), _interval(entry["ppv_urgent"]),
            _interval(entry["urgent"]), _interval(entry["review"]),
            _interval(entry.get("t_low", {}), lambda v: _num(v, 4)),
            _interval(entry.get("t_high", {}), lambda v: _num(v, 4))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration_table(summary: dict[str, Any], extras: dict[str, dict[str, Any]]) -> str:
    """ECE / adaptive ECE / NLL / Brier before and after temperature scaling, per group."""
    header = ["group", "ECE before", "ECE after T", "adaptive ECE before",
              "adaptive ECE after T", "NLL before", "NLL after T", "Brier after T",
              "draw 0: ECE after T [bootstrap 95 %]", "draw 0: adaptive ECE [95 %]",
              "draw 0: ECE floor (perfect calibration, same n)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    before, after = summary["stages"]["before"], summary["stages"]["after"]

    def num(value: float) -> str:
        return _num(value, 4)

    for group in after:
        x = extras.get("after", {}).get(group, {})
        cells = [ALL if group == ALL else f"`{short(group)}`",
                 _interval(before[group]["ece"], num), _interval(after[group]["ece"], num),
                 _interval(before[group]["adaptive_ece"], num),
                 _interval(after[group]["adaptive_ece"], num),
                 _interval(before[group]["nll"], num), _interval(after[group]["nll"], num),
                 _interval(after[group]["brier"], num),
                 f"{num(x.get('ece'))} [{num(x.get('ece_low'))}, {num(x.get('ece_high'))}]"
                 if x else "–",
                 f"[{num(x.get('aece_low'))}, {num(x.get('aece_high'))}]" if x else "–",
                 num(x.get("ece_floor")) if x else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _lodo_source(source: str, device: str) -> str:
    if source == "quality":
        return (f"The quality benchmark's leave-one-device-out focal+dp models (trained "
                f"without `{device}`)")
    return (f"Leave-one-device-out models (`{source}`: the model's recipe and training "
            f"export, trained without `{device}`, one per seed)")


def held_out_table(held: dict[str, Any]) -> list[str]:
    """Lines of the held-out-device calibration table (`run.held_out_pool`)."""
    device = short(held["device"])
    calibrated_on = ", ".join(f"`{short(g)}`" for g in held["runs"][0]["calibrated_on"])
    lines = [f"### Calibration on a device the model never saw (`{device}`)", "",
             f"{_lodo_source(held.get('source', 'quality'), device)} score the pool; the "
             f"temperature is fitted on the pool's studies of "
             f"{calibrated_on} (devices the model was trained on) and the ECE measured on all "
             f"of `{device}`'s pool studies. The rules send every study of a device absent "
             f"from training to review, so these figures describe the probabilities, not "
             f"routes.", "",
             "| model | studies (positives) | T | AUROC | ECE before | ECE after T "
             "[bootstrap 95 %] | adaptive ECE after T [95 %] | ECE floor (same n) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in held["runs"]:
        a = run["after"]
        lines.append(
            f"| seed {run['seed']} | {run['n']} ({run['positives']}) | "
            f"{run['temperature']:.3f} | {run['auroc']:.4f} | {run['before']['ece']:.4f} | "
            f"{a['ece']:.4f} [{a['ece_low']:.4f}, {a['ece_high']:.4f}] | "
            f"[{a['aece_low']:.4f}, {a['aece_high']:.4f}] | {a['ece_floor']:.4f} |")
    return lines + [""]


def verdicts(summary: dict[str, Any], held_out: dict[str, Any] | None, *, alpha: float,
             delta: float, need_pos: int, min_calib_pos: dict[str, int]) -> list[str]:
    """One line per target of the issue, each ending in met / **missed** (or not measured)."""
    after = summary["stages"]["after"]
    overall = after[ALL]
    devices = [g for g in after if g != ALL]
    out = []
    value = overall["ece"]["mean"]
    out.append(f"ECE in-domain after temperature scaling {value:.4f} (mean over draws, "
               f"test part of the pool; target ≤ {ECE_IN_DOMAIN}): "
               f"{_met(value <= ECE_IN_DOMAIN)}.")
    if held_out and held_out.get("ece"):
        values = held_out["ece"]
        mean = float(np.mean(values))
        where = ("leave-one-device-out focal+dp models on the pool" if "runs" in held_out
                 else "quality benchmark, focal+dp+T")
        out.append(f"ECE on the held-out device `{short(held_out['device'])}` after "
                   f"temperature scaling {mean:.4f} ({where}, "
                   f"{len(values)} seed(s): {', '.join(f'{v:.4f}' for v in values)}; "
                   f"target ≤ {ECE_HELD_OUT}): {_met(mean <= ECE_HELD_OUT)}.")
    else:
        out.append(f"ECE on a held-out device after temperature scaling (target ≤ "
                   f"{ECE_HELD_OUT}): not measured (no focal+dp result in "
                   f"bench_output/quality/results.json).")
    cleared = overall["cleared"]["mean"]
    per_device = ", ".join(f"{short(g)} {_pct(after[g]['cleared']['mean'])}" for g in devices)
    out.append(f"Negatives auto-cleared at a certified miss rate ≤ {alpha:g} (sensitivity ≥ "
               f"{100 * (1 - alpha):g} %) with δ = {delta:g}: {_pct(cleared)} overall "
               f"({per_device}; target ≥ {_pct(CLEARED_TARGET, 0)}): "
               f"{_met(cleared >= CLEARED_TARGET)}.")
    exceed = {g: after[g]["miss_exceed"] for g in after}
    worst = max(exceed.values())
    listed = ", ".join(f"{'overall' if g == ALL else short(g)} {_pct(v)}"
                       for g, v in exceed.items())
    allowance = ", ".join(f"{'overall' if g == ALL else short(g)} "
                          f"{_pct(after[g]['exceed_if_at_alpha'])}" for g in after)
    by_ranks = ", ".join(f"{short(g)} {_pct(after[g]['exceed_by_ranks'])}" for g in devices
                         if np.isfinite(after[g].get("exceed_by_ranks", float("nan"))))
    ranks = (f"; the certificate itself implies {by_ranks} by rank symmetry (any model: "
             f"test positives below the threshold's calibration rank)" if by_ranks else "")
    out.append(f"Realized miss rate on the test part > α in {listed} of "
               f"{summary['draws']} draws (target ≤ δ = {_pct(delta, 0)}): "
               f"{_met(worst <= delta)}. Test-sampling noise alone would give {allowance} "
               f"if the true miss rate were exactly α{ranks}.")
    pool = {g: after[g]["pool_miss_exceed"] for g in after}
    listed = ", ".join(f"{'overall' if g == ALL else short(g)} {_pct(v)}" for g, v in pool.items())
    out.append(f"Pool miss rate (the certified quantity, without test-sampling noise) > α in "
               f"{listed} of the draws (target ≤ {_pct(delta, 0)}): "
               f"{_met(max(pool.values()) <= delta)}.")
    fewest = min(min_calib_pos.values()) if min_calib_pos else 0
    out.append(f"Calibration positives per certified group ≥ {need_pos}: fewest in any draw "
               f"and group {fewest}: {_met(fewest >= need_pos)}.")
    review = overall["review"]["mean"]
    out.append(f"Review fraction {_pct(review)} of the routed studies (goal ≤ "
               f"{_pct(REVIEW_GOAL, 0)}): {_met(review <= REVIEW_GOAL)}.")
    return out


def write_doc(text: str, path: Path) -> None:
    """Replace the block between the triage markers of `path` (append it when absent)."""
    write_marked_section(path, BEGIN, END, text)
