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


def lodo_table(rows: Sequence[Mapping[str, Any]], devices: Sequence[str],
               shifts: Sequence[str] = SHIFTS) -> str:
    """Held-out accuracy / AUROC per held-out device (rows) and shift of its studies
    (columns), mean ± sd over seeds, with a mean over folds."""
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
                acc = mean_sd(r.get(f"{shift}.accuracy", math.nan) for r in mine)
                auc = mean_sd(r.get(f"{shift}.auroc", math.nan) for r in mine)
                cells.append(f"{acc} / {auc}")
            lines.append(_row(cells))
    return "\n".join(lines)


def lodo_verdict(rows: Sequence[Mapping[str, Any]], devices: Sequence[str],
                 method: str, baseline: str = "baseline", margin: float = 0.03) -> list[str]:
    """The issue's targets, fold by fold: `method`'s clean held-out AUROC within `margin` of
    its in-domain AUROC, and above `baseline`'s by more than the seed-to-seed spread (the
    larger of the two variants' sd over seeds); then the worst fold.

    Example:
        >>> rows = [{"variant": v, "device": "a", "seed": s, "in_domain_auroc": 0.99,
        ...          "clean.auroc": x + 0.01 * s}
        ...         for v, x in (("baseline", 0.90), ("full", 0.97)) for s in (0, 1)]
        >>> lines = lodo_verdict(rows, ["a"], "full")
        >>> lines[0].startswith("- `a`: full held-out AUROC 0.975 vs in-domain 0.990 (gap 0.015, "
        ...                     "target <= 0.03: met)")
        True
    """
    def figures(variant: str, device: str, key: str) -> list[float]:
        return [float(r[key]) for r in rows if r["variant"] == variant
                and r["device"] == device and math.isfinite(float(r.get(key, math.nan)))]

    def sd(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else math.nan

    lines, worst = [], None
    for device in devices:
        held, inside = figures(method, device, "clean.auroc"), figures(method, device,
                                                                       "in_domain_auroc")
        base = figures(baseline, device, "clean.auroc")
        if not held or not inside:
            continue
        gap = statistics.mean(inside) - statistics.mean(held)
        text = (f"- `{device}`: {method} held-out AUROC {statistics.mean(held):.3f} vs "
                f"in-domain {statistics.mean(inside):.3f} (gap {gap:.3f}, target <= "
                f"{margin:g}: {'met' if gap <= margin else 'missed'})")
        if base:
            gain = statistics.mean(held) - statistics.mean(base)
            spread = max(sd(held), sd(base))
            verdict = ("not judged (one seed)" if math.isnan(spread)
                       else "met" if gain > spread else "missed")
            text += (f"; vs {baseline} {statistics.mean(base):.3f}: {gain:+.3f}, seed spread "
                     f"{spread:.3f} ({verdict})")
        lines.append(text + f"; {len(held)} seed(s).")
        if worst is None or statistics.mean(held) < worst[1]:
            worst = (device, statistics.mean(held))
    if worst is not None:
        lines.append(f"- Worst fold: `{worst[0]}`, {method} held-out AUROC {worst[1]:.3f}.")
    return lines


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
