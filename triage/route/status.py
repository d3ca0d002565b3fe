"""Certification status per device group: what each guarantee mode needs, what certifies
each side, and how many more reviewed positives a device lacks (`triage thresholds status`,
and the ``certification`` section of ``run_summary.json``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from triage.route.fit import POOLED_NAME
from triage.route.guarantee import SOURCE_DEVICE, SOURCE_POOLED, Guarantee, label_parts
from triage.route.thresholds import FittedThresholds, GroupThresholds


def _carried(label: str, version: str) -> str:
    """A threshold's label, naming the version whose certificate it keeps (a recalibration
    carried it over: `triage.feedback.recalibrate.carry_over`)."""
    return f"{label} (certified by version {version})" if label and version else label


def _row(group: GroupThresholds, fitted: FittedThresholds) -> dict[str, Any]:
    cfg = fitted.config
    source = SOURCE_POOLED if group.group == POOLED_NAME else SOURCE_DEVICE
    own = group.t_low is not None and label_parts(group.low_guarantee)[1] == source
    more = 0 if own else max(cfg.required_positives - group.n_pos, 0)
    if own:
        todo = ""
    elif group.t_low is not None:  # lent the pooled threshold
        todo = (f"{more} more reviewed positives for a device-level routine threshold "
                f"({cfg.guarantee}/device)") if more else ""
    elif more:
        todo = (f"{more} more reviewed positives to certify a routine threshold "
                f"({cfg.guarantee}/{source})")
    else:
        todo = group.low_reason
    return {
        "group": group.group,
        "positives": group.n_pos,
        "negatives": group.n_neg,
        "needs": {mode.value: {"positives": cfg.positives_needed(mode),
                               "negatives": cfg.negatives_needed(mode)} for mode in Guarantee},
        "routine": _carried(group.low_guarantee, group.low_carried_from),
        "urgent": _carried(group.high_guarantee, group.high_carried_from),
        "certified": group.certified,
        "more_positives": more,
        "to_certify": todo,
        "check": "; ".join(c for c in (group.low_check, group.high_check) if c),
    }


def certification_status(fitted: FittedThresholds,
                         train_devices: Iterable[str] = ()) -> dict[str, Any]:
    """Per device group: calibration counts, what each mode needs, which mode certifies it.

    Args:
        fitted: the model's thresholds (``FittedThresholds.from_dict(bundle.routing)``).
        train_devices: training device groups; those without calibration studies are
            listed as uncertified with zero counts.

    Returns:
        ``{"guarantee", "stratify", "alpha", "delta", "groups": [row, ...],
        "pooled": row or None}``; each row has ``group, positives, negatives, needs``
        (mode → positives/negatives needed), ``routine`` and ``urgent`` (the labels of
        the certified thresholds, empty when not certified), ``certified``,
        ``more_positives`` and ``to_certify`` (plain words), ``check`` (the shift check).

    Example:
        >>> from triage.route.thresholds import ThresholdConfig
        >>> s = certification_status(FittedThresholds(ThresholdConfig()), ["acme"])
        >>> s["groups"][0]["to_certify"]
        '299 more reviewed positives to certify a routine threshold (pac/device)'
    """
    cfg = fitted.config
    groups = dict(fitted.groups)
    for name in train_devices:
        groups.setdefault(str(name), GroupThresholds(str(name), 0, 0))
    return {"guarantee": cfg.guarantee, "stratify": cfg.stratify, "alpha": cfg.alpha,
            "delta": cfg.delta,
            "groups": [_row(groups[name], fitted) for name in sorted(groups)],
            "pooled": _row(fitted.pooled, fitted) if fitted.pooled is not None else None}


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status as a Markdown table (for a terminal or a report)."""
    modes = [m.value for m in Guarantee]
    head = ["device group", "positives", "negatives",
            *[f"{m} needs (pos/neg)" for m in modes], "routine", "urgent", "to certify"]
    lines = [f"guarantee {status['guarantee']}, stratify {status['stratify']}, "
             f"alpha {status['alpha']:g}, delta {status['delta']:g}",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    rows = list(status["groups"]) + ([status["pooled"]] if status.get("pooled") else [])
    for row in rows:
        needs = [f"{row['needs'][m]['positives']}/{row['needs'][m]['negatives']}"
                 for m in modes]
        cells = [row["group"], str(row["positives"]), str(row["negatives"]), *needs,
                 row["routine"] or "-", row["urgent"] or "-", row["to_certify"] or "-"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return lines
