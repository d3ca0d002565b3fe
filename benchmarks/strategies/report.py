"""Markdown sections of the strategies benchmarks (Table 1, leave-one-device-out over every
device and shift, site adaptation): pure functions of the result rows, unit-tested.

A result row is a mapping with ``variant``, ``seed`` and the figures named in the column
lists below (NaN or absent: not measured).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The seed study's Table 1: accuracy / cross-domain (held-out device) accuracy. None: not
# reported there.
SEED_STUDY: dict[str, tuple[float | None, float | None]] = {
    "baseline": (0.812, 0.701),
    "layered": (None, None),
    "transfer": (0.846, 0.752),
    "consistency": (None, None),
    "combined": (0.867, 0.781),
}
TABLE1_COLUMNS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("nll", "NLL"),
                  ("ece", "ECE"), ("held_out_accuracy", "held-out acc"),
                  ("held_out_auroc", "held-out AUROC"))
# The same figures on the large test export (`benchmarks.quality.pool`): in-domain = its
# studies of the training devices, held-out = those of the held-out device.
TABLE1_POOL_COLUMNS = tuple((f"pool_in_domain_{key}" if not key.startswith("held_out")
                             else f"pool_{key}", label) for key, label in TABLE1_COLUMNS)
SHIFTS = ("clean", "noise", "gain_offset", "blur")
SITE_ARMS = ("zero-shot", "fine-tuned", "from scratch")


def mean_sd(values: Iterable[float]) -> str:
    """``mean ± sd`` of the finite values (3 decimals), one value as is, none as ``–``.

    Example:
        >>> mean_sd([0.8, 0.9]), mean_sd([0.8]), mean_sd([float("nan")])
        ('0.850 ± 0.071', '0.800', '–')
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return "–"
    if len(finite) == 1:
        return f"{finite[0]:.3f}"
    return f"{statistics.mean(finite):.3f} ± {statistics.stdev(finite):.3f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(cells: Sequence[str]) -> list[str]:
    return [_row(cells), "|" + " --- |" * len(cells)]


def _seed_cell(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def table1(rows: Sequence[Mapping[str, Any]], variants: Sequence[str],
           columns: Sequence[tuple[str, str]] = TABLE1_COLUMNS) -> str:
    """Table 1: one line per variant, mean ± sd over seeds, and the seed study's accuracy /
    cross-domain accuracy beside ours (`columns`: the run's own test sets, or
    `TABLE1_POOL_COLUMNS` for the large test export)."""
    lines = _header(["strategy", "seeds", *[label for _, label in columns],
                     "seed study acc", "seed study cross-domain acc"])
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        paper = SEED_STUDY.get(variant, (None, None))
        cells = [variant, str(len({r["seed"] for r in mine}))]
        cells += [mean_sd(r.get(key, math.nan) for r in mine) for key, _ in columns]
        cells += [_seed_cell(paper[0]), _seed_cell(paper[1])]
        lines.append(_row(cells))
    return "\n".join(lines)


def _relative(value: float, base: float) -> str:
    if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return "–"
    gain = round(100.0 * (value - base) / base, 1)
    return f"{gain + 0.0:+.1f} %"  # + 0.0: no "-0.0"


def relative_gains(rows: Sequence[Mapping[str, Any]], variants: Sequence[str],
                   columns: Sequence[tuple[str, str]] = TABLE1_COLUMNS,
                   baseline: str = "baseline") -> str:
    """Each strategy's gain over `baseline`, relative to the baseline's figure (means over
    seeds), on accuracy, cross-domain (held-out) accuracy and held-out AUROC, with the seed
    study's relative gains on the first two beside ours (`columns`: as `table1`'s).

    Example:
        >>> rows = [{"variant": "baseline", "seed": 0, "accuracy": 0.8,
        ...          "held_out_accuracy": 0.7, "held_out_auroc": 0.9},
        ...         {"variant": "transfer", "seed": 0, "accuracy": 0.84,
        ...          "held_out_accuracy": 0.77, "held_out_auroc": 0.9}]
        >>> relative_gains(rows, ["baseline", "transfer"]).splitlines()[2]
        '| transfer | +5.0 % | +4.2 % | +10.0 % | +7.3 % | +0.0 % |'
    """
    keys = dict((label, key) for key, label in columns)
    accuracy, cross, auroc = keys["accuracy"], keys["held-out acc"], keys["held-out AUROC"]

    def mean(variant: str, key: str) -> float:
        values = [float(r[key]) for r in rows if r["variant"] == variant
                  and math.isfinite(float(r.get(key, math.nan)))]
        return statistics.mean(values) if values else math.nan

    base_paper = SEED_STUDY.get(baseline, (None, None))
    lines = _header(["strategy", "accuracy", "seed study accuracy", "cross-domain acc",
                     "seed study cross-domain acc", "held-out AUROC"])
    for variant in variants:
        if variant == baseline:
            continue
        paper = SEED_STUDY.get(variant, (None, None))
        cells = [variant, _relative(mean(variant, accuracy), mean(baseline, accuracy))]
        cells.append("?" if paper[0] is None or base_paper[0] is None
                     else _relative(paper[0], base_paper[0]))
        cells.append(_relative(mean(variant, cross), mean(baseline, cross)))
        cells.append("?" if paper[1] is None or base_paper[1] is None
                     else _relative(paper[1], base_paper[1]))
        cells.append(_relative(mean(variant, auroc), mean(baseline, auroc)))
        lines.append(_row(cells))
    return "\n".join(lines)


def lodo_table(rows: Sequence[Mapping[str, Any]], devices: Sequence[str],
               shifts: Sequence[str] = SHIFTS, prefix: str = "") -> str:
    """Held-out accuracy / AUROC per held-out device (rows) and shift of its studies
    (columns), mean ± sd over seeds, with a mean over folds (`prefix`: ``pool.`` for the
    figures on lodo's pool)."""
    lines = _header(["held-out device", "variant", *[f"{s} acc / AUROC" for s in shifts]])
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for variant in variants:
        for device in [*devices, "mean over folds"]:
            mine = [r for r in rows if r["variant"] == variant
                    and (r["device"] == device or device == "mean over folds")]
            if not mine:
                continue
            cells = [device if device == "mean over folds" else f"`{device}`", variant]
            for shift in shifts:
                acc = mean_sd(r.get(f"{prefix}{shift}.accuracy", math.nan) for r in mine)
                auc = mean_sd(r.get(f"{prefix}{shift}.auroc", math.nan) for r in mine)
                cells.append(f"{acc} / {auc}")
            lines.append(_row(cells))
    return "\n".join(lines)


def lodo_targets(rows: Sequence[Mapping[str, Any]], devices: Sequence[str], method: str,
                 baseline: str = "baseline", margin: float = 0.03,
                 prefix: str = "") -> list[dict[str, Any]]:
    """The issue's targets, fold by fold (the folds where `method` has both figures):
    `method`'s clean held-out AUROC (``held``) within `margin` of its in-domain AUROC
    (``inside``; ``gap_met``), and above `baseline`'s (``base``) by more than the seed-to-seed
    spread (the larger of the two variants' sd over seeds; ``gain_met``, None with one seed
    or no baseline). Means over seeds; `prefix` as `lodo_table`'s."""
    def figures(variant: str, device: str, key: str) -> list[float]:
        return [float(r[f"{prefix}{key}"]) for r in rows if r["variant"] == variant
                and r["device"] == device
                and math.isfinite(float(r.get(f"{prefix}{key}", math.nan)))]

    def sd(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else math.nan

    folds = []
    for device in devices:
        held, inside = figures(method, device, "clean.auroc"), figures(method, device,
                                                                       "in_domain_auroc")
        base = figures(baseline, device, "clean.auroc")
        base_inside = figures(baseline, device, "in_domain_auroc")
        if not held or not inside:
            continue
        fold: dict[str, Any] = {
            "device": device, "seeds": len(held), "held": statistics.mean(held),
            "held_sd": sd(held), "inside": statistics.mean(inside), "inside_sd": sd(inside),
            "base": math.nan, "base_sd": math.nan, "base_inside": math.nan,
            "base_inside_sd": math.nan, "gain": math.nan, "spread": math.nan,
            "gain_met": None}
        fold["gap"] = fold["inside"] - fold["held"]
        fold["gap_met"] = fold["gap"] <= margin
        if base_inside:
            fold["base_inside"], fold["base_inside_sd"] = (statistics.mean(base_inside),
                                                           sd(base_inside))
        if base:
            fold["base"], fold["base_sd"] = statistics.mean(base), sd(base)
            fold["gain"] = fold["held"] - fold["base"]
            fold["spread"] = max(sd(held), sd(base))
            if not math.isnan(fold["spread"]):
                fold["gain_met"] = fold["gain"] > fold["spread"]
                # the same question against the standard error of the difference of means
                fold["gain_se"] = math.sqrt(sd(held) ** 2 / len(held)
                                            + sd(base) ** 2 / len(base))
        folds.append(fold)
    return folds


def lodo_verdict(rows: Sequence[Mapping[str, Any]], devices: Sequence[str],
                 method: str, baseline: str = "baseline", margin: float = 0.03,
                 prefix: str = "") -> list[str]:
    """`lodo_targets` as sentences, one per fold, then the worst fold.

    Example:
        >>> rows = [{"variant": v, "device": "a", "seed": s, "in_domain_auroc": 0.99,
        ...          "clean.auroc": x + 0.01 * s}
        ...         for v, x in (("baseline", 0.90), ("full", 0.97)) for s in (0, 1)]
        >>> lines = lodo_verdict(rows, ["a"], "full")
        >>> lines[0].startswith("- `a`: full held-out AUROC 0.975 vs in-domain 0.990 (gap 0.015, "
        ...                     "target <= 0.03: met)")
        True
    """
    folds = lodo_targets(rows, devices, method, baseline, margin, prefix)
    lines = []
    for fold in folds:
        text = (f"- `{fold['device']}`: {method} held-out AUROC {fold['held']:.3f} vs "
                f"in-domain {fold['inside']:.3f} (gap {fold['gap']:.3f}, target <= "
                f"{margin:g}: {'met' if fold['gap_met'] else 'missed'})")
        if not math.isnan(fold["base"]):
            verdict = ("not judged (one seed)" if fold["gain_met"] is None
                       else "met" if fold["gain_met"] else "missed")
            text += (f"; vs {baseline} {fold['base']:.3f}: {fold['gain']:+.3f}, seed spread "
                     f"{fold['spread']:.3f} ({verdict})")
        lines.append(text + f"; {fold['seeds']} seed(s).")
    if folds:
        worst = min(folds, key=lambda f: f["held"])
        lines.append(f"- Worst fold: `{worst['device']}`, {method} held-out AUROC "
                     f"{worst['held']:.3f}.")
    return lines


def _mean_sd(mean: float, sd: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def lodo_pool_table(rows: Sequence[Mapping[str, Any]], devices: Sequence[str], method: str,
                    baseline: str = "baseline", margin: float = 0.03,
                    prefix: str = "pool.") -> str:
    """The targets on lodo's pool, one line per fold: `baseline` and `method`'s in-domain
    and clean held-out AUROC (mean ± sd over seeds), `method`'s in-domain gap, its gain over
    `baseline` against the seed spread; then how many folds meet each target and the worst
    fold (`lodo_targets`).

    Example:
        >>> rows = [{"variant": v, "device": "a", "seed": s, "pool.in_domain_auroc": 0.95,
        ...          "pool.clean.auroc": x + 0.01 * s}
        ...         for v, x in (("baseline", 0.85), ("full", 0.90)) for s in (0, 1)]
        >>> lodo_pool_table(rows, ["a"], "full").splitlines()[2].split(" | ")[4:]
        ['0.905 ± 0.007', '0.045 (missed)', '+0.050', '0.007', 'met |']
    """
    folds = lodo_targets(rows, devices, method, baseline, margin, prefix)
    lines = _header(["held-out device", f"in-domain AUROC {baseline}",
                     f"in-domain AUROC {method}", f"held-out AUROC {baseline}",
                     f"held-out AUROC {method}", f"{method} gap (<= {margin:g})",
                     f"{method} − {baseline}", "seed spread", "gain > spread"])
    for fold in folds:
        verdict = ("not judged" if fold["gain_met"] is None
                   else "met" if fold["gain_met"] else "missed")
        gain = "–" if math.isnan(fold["gain"]) else f"{fold['gain']:+.3f}"
        spread = "–" if math.isnan(fold["spread"]) else f"{fold['spread']:.3f}"
        lines.append(_row([
            f"`{fold['device']}`", _mean_sd(fold["base_inside"], fold["base_inside_sd"]),
            _mean_sd(fold["inside"], fold["inside_sd"]), _mean_sd(fold["base"], fold["base_sd"]),
            _mean_sd(fold["held"], fold["held_sd"]),
            f"{fold['gap']:.3f} ({'met' if fold['gap_met'] else 'missed'})", gain, spread,
            verdict]))
    if folds:
        worst = min(folds, key=lambda f: f["held"])
        beyond_se = sum(f["gain"] > f["gain_se"] for f in folds if "gain_se" in f)
        judged_se = sum("gain_se" in f for f in folds)
        lines += ["", f"In-domain gap target met on {sum(f['gap_met'] for f in folds)}/"
                      f"{len(folds)} folds; gain beyond the seed spread on "
                      f"{sum(bool(f['gain_met']) for f in folds)}/{len(folds)} (beyond the "
                      f"standard error of the difference of the means, sqrt(sd_{method}² / n "
                      f"+ sd_{baseline}² / n), on {beyond_se}/{judged_se}). Worst fold: "
                      f"`{worst['device']}`, {method} held-out AUROC {worst['held']:.3f}."]
    return "\n".join(lines)


def lodo_headroom(rows: Sequence[Mapping[str, Any]], devices: Sequence[str], variant: str,
                  prefix: str = "pool.") -> list[dict[str, Any]]:
    """What training on a device adds on it, per fold: `variant`'s clean AUROC on the pool's
    studies of `device` by the fold that held it out (``held``, one figure per seed) and by
    the other folds' models, which trained on it (``with``: ``<prefix>device.<device>.auroc``
    of every other fold and seed); ``headroom`` = mean(with) - mean(held). The folds' models
    train on the same number of devices, so the difference is the device's own, not more
    data's."""
    def sd(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else math.nan

    out = []
    for device in devices:
        held = [float(r[f"{prefix}clean.auroc"]) for r in rows if r["variant"] == variant
                and r["device"] == device and f"{prefix}clean.auroc" in r]
        key = f"{prefix}device.{device}.auroc"
        trained = [float(r[key]) for r in rows if r["variant"] == variant
                   and r["device"] != device and key in r]
        if not held or not trained:
            continue
        out.append({"device": device, "held": statistics.mean(held), "held_sd": sd(held),
                    "with": statistics.mean(trained), "with_sd": sd(trained),
                    "n_with": len(trained),
                    "headroom": statistics.mean(trained) - statistics.mean(held)})
    return out


def lodo_headroom_table(rows: Sequence[Mapping[str, Any]], devices: Sequence[str],
                        method: str, baseline: str = "baseline", prefix: str = "pool.") -> str:
    """`lodo_headroom` of `baseline` and `method` side by side, one line per fold, with the
    seed spread of the targets (`lodo_targets`) and whether the baseline's headroom exceeds
    it: where it does not, the baseline loses no more than the spread by not seeing the
    device, so a method that only closes that loss has no gain beyond the spread to show.

    Example:
        >>> rows = [{"variant": v, "device": d, "seed": s, "pool.clean.auroc": h + 0.01 * s,
        ...          "pool.in_domain_auroc": 0.95, "pool.device.a.auroc": w,
        ...          "pool.device.b.auroc": w}
        ...         for v, h, w in (("baseline", 0.80, 0.90), ("full", 0.88, 0.91))
        ...         for d in ("a", "b") for s in (0, 1)]
        >>> cells = lodo_headroom_table(rows, ["a", "b"], "full").splitlines()[2].split(" | ")
        >>> cells[1:4], cells[6:]
        (['0.805 ± 0.007', '0.900 ± 0.000', '+0.095'], ['+0.025', '0.007', 'yes |'])
    """
    base = {f["device"]: f for f in lodo_headroom(rows, devices, baseline, prefix)}
    mine = {f["device"]: f for f in lodo_headroom(rows, devices, method, prefix)}
    spreads = {f["device"]: f["spread"]
               for f in lodo_targets(rows, devices, method, baseline, prefix=prefix)}
    lines = _header(["held-out device", f"{baseline} held out", f"{baseline} trained with it",
                     f"{baseline} headroom", f"{method} held out", f"{method} trained with it",
                     f"{method} headroom", "seed spread", f"{baseline} headroom > spread"])
    judged = room = 0
    for device in devices:
        if device not in base or device not in mine:
            continue
        b, m = base[device], mine[device]
        spread = spreads.get(device, math.nan)
        verdict = "–" if math.isnan(spread) else "yes" if b["headroom"] > spread else "no"
        judged += verdict != "–"
        room += verdict == "yes"
        lines.append(_row([f"`{device}`", _mean_sd(b["held"], b["held_sd"]),
                           _mean_sd(b["with"], b["with_sd"]), f"{b['headroom']:+.3f}",
                           _mean_sd(m["held"], m["held_sd"]), _mean_sd(m["with"], m["with_sd"]),
                           f"{m['headroom']:+.3f}",
                           "–" if math.isnan(spread) else f"{spread:.3f}", verdict]))
    if judged:
        lines += ["", f"The {baseline} loses more than the seed spread by not seeing the "
                      f"device on {room}/{judged} folds."]
    return "\n".join(lines)


def site_table(rows: Sequence[Mapping[str, Any]], sizes: Sequence[int]) -> str:
    """Site adaptation: accuracy / AUROC / ECE on the new device's test studies per arm
    (rows) and number of labelled studies of the new device (columns)."""
    lines = _header(["arm", *[f"{n} labelled: acc / AUROC / ECE" for n in sizes]])
    for arm in SITE_ARMS:
        cells = [arm]
        for n in sizes:
            mine = [r for r in rows if r["arm"] == arm and r["n_labelled"] == n]
            cells.append(f"{mean_sd(r.get('accuracy', math.nan) for r in mine)} / "
                         f"{mean_sd(r.get('auroc', math.nan) for r in mine)} / "
                         f"{mean_sd(r.get('ece', math.nan) for r in mine)}")
        lines.append(_row(cells))
    return "\n".join(lines)


def section(title: str, command: str, when: str, notes: Sequence[str], body: str) -> str:
    """A docs/benchmarks.md section: title, the command that made it, notes, the table."""
    text = [f"## {title}", "", f"`{command}`, {when}.", ""]
    text += [*notes, ""] if notes else []
    text.append(body)
    return "\n".join(text)
