"""`fit_thresholds`: certify routing thresholds per device group, pooled, or both (`auto`),
under the configured guarantee (``pac`` or ``marginal``).

docs/calibration.md ("Routing thresholds", "Guarantee modes") states what each mode
promises and why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from triage.calibrate.inputs import CalibrationInputError, as_numpy, check_pair
from triage.route.conformal import conformal_high, conformal_low
from triage.route.guarantee import (
    SOURCE_DEVICE,
    SOURCE_POOLED,
    Guarantee,
    Stratify,
    high_label,
    low_label,
    shift_pvalue,
)
from triage.route.thresholds import (
    FittedThresholds,
    GroupThresholds,
    ThresholdConfig,
    candidate_thresholds,
    pac_high_scan,
    pac_low_scan,
)

#: The group name of the thresholds fitted on every calibration study together.
POOLED_NAME = "(pooled)"
LOW_FIELDS = ("t_low", "miss_count", "miss_bound", "low_reason", "low_guarantee")
HIGH_FIELDS = ("t_high", "urgent_count", "urgent_positives", "ppv_bound", "fpr_bound",
               "high_reason", "high_guarantee")


#: How a side's shift check words a refusal of the pooled threshold (`refused_by_shift`).
SHIFT_REFUSED = "so the pooled threshold does not apply"


def refused_by_shift(check: str) -> bool:
    """True when an `auto` side's shift check (``low_check``, ``high_check``) refused the
    pooled threshold: its device's scores differ from the other devices'."""
    return SHIFT_REFUSED in check


def _who(name: str) -> str:
    return "the pooled calibration devices" if name == POOLED_NAME else f"device {name}"


def _fit_low(name: str, scores_pos: np.ndarray, grid: np.ndarray, cfg: ThresholdConfig,
             source: str) -> dict[str, Any]:
    confidence = f" with confidence {1 - cfg.delta:g}" if cfg.guarantee == Guarantee.PAC else ""
    fail = {"low_reason": f"no routine threshold for {_who(name)} keeps the "
                          f"{'' if confidence else 'expected '}miss rate <= {cfg.alpha:g}"
                          f"{confidence}"}
    if cfg.guarantee == Guarantee.PAC:
        stop, misses, bounds = pac_low_scan(scores_pos, grid, cfg)
        if stop == 0:
            return fail
        j = stop - 1
        t, count, bound = float(grid[j]), int(misses[j]), float(bounds[j])
    else:
        t_conformal, count, bound = conformal_low(scores_pos, cfg.alpha)
        if t_conformal is None:
            return fail
        t = t_conformal
    return {"t_low": t, "miss_count": count, "miss_bound": bound,
            "low_guarantee": low_label(cfg.guarantee, source, cfg.alpha, cfg.delta)}


def _fit_high(name: str, scores: np.ndarray, labels: np.ndarray, grid: np.ndarray,
              cfg: ThresholdConfig, source: str) -> dict[str, Any]:
    label = high_label(cfg.guarantee, source, ppv_target=cfg.ppv_target, delta=cfg.delta,
                       urgent_fpr=cfg.urgent_fpr)
    if cfg.guarantee == Guarantee.PAC:
        last, count, positives, bounds = pac_high_scan(scores, labels, grid, cfg)
        if last is None:
            return {"high_reason": f"no urgent threshold for {_who(name)} reaches PPV >= "
                                   f"{cfg.ppv_target:g} with confidence {1 - cfg.delta:g}"}
        return {"t_high": float(grid[last]), "urgent_count": int(count[last]),
                "urgent_positives": int(positives[last]), "ppv_bound": float(bounds[last]),
                "high_guarantee": label}
    t, bound = conformal_high(scores[labels == 0], cfg.urgent_fpr)
    if t is None:
        return {"high_reason": f"no urgent threshold for {_who(name)} keeps the expected share "
                               f"of negatives routed urgent <= {cfg.urgent_fpr:g}"}
    above = scores >= t
    return {"t_high": t, "urgent_count": int(above.sum()),
            "urgent_positives": int(labels[above].sum()), "fpr_bound": bound,
            "high_guarantee": label}


def _fit_stratum(name: str, scores: np.ndarray, labels: np.ndarray, grid: np.ndarray,
                 cfg: ThresholdConfig, source: str) -> GroupThresholds:
    """Both thresholds of one stratum (a device group or the pool) from its own studies."""
    n_pos, n_neg = int(labels.sum()), int(labels.size - labels.sum())
    base: dict[str, Any] = {"group": name, "n_pos": n_pos, "n_neg": n_neg}
    need = cfg.required_positives
    few_pos = (f"too few calibration positives for {_who(name)} ({n_pos} < {need}) to "
               f"certify a threshold")
    if cfg.guarantee == Guarantee.PAC and n_pos < need:  # today's policy: neither side
        return GroupThresholds(**base, low_reason=few_pos, high_reason=few_pos)
    low: dict[str, Any] = ({"low_reason": few_pos} if n_pos < need
                           else _fit_low(name, scores[labels == 1], grid, cfg, source))
    need_neg = cfg.required_negatives
    high: dict[str, Any]
    if n_neg < need_neg:
        high = {"high_reason": f"too few calibration negatives for {_who(name)} "
                               f"({n_neg} < {need_neg}) to certify an urgent threshold"}
    else:
        high = _fit_high(name, scores, labels, grid, cfg, source)
    return GroupThresholds(**base, **low, **high)


def _lend(own: GroupThresholds, pooled: GroupThresholds, fields: tuple[str, ...],
          **check: Any) -> GroupThresholds:
    """`own` with the pooled stratum's values for `fields` (one side)."""
    changes: dict[str, Any] = {f: getattr(pooled, f) for f in fields}
    return replace(own, **changes, **check)


def _changed(own: GroupThresholds, changes: dict[str, Any]) -> GroupThresholds:
    return replace(own, **changes)


def _auto_side(own: GroupThresholds, pooled: GroupThresholds, mine: np.ndarray,
               others: np.ndarray, cfg: ThresholdConfig, *, low: bool) -> GroupThresholds:
    """One side of an `auto` group that lacks data of its own: pooled, or a reason."""
    fields, check = (LOW_FIELDS, "low_check") if low else (HIGH_FIELDS, "high_check")
    why = "low_reason" if low else "high_reason"
    kind, direction = ("positives", "lower") if low else ("negatives", "higher")
    own_reason = own.low_reason if low else own.high_reason
    if mine.size < cfg.shift_min_count:
        reason = (f"{own_reason}, and too few ({mine.size} < {cfg.shift_min_count}) to check "
                  f"that the pooled threshold applies")
        return _changed(own, {why: reason, check: ""})
    pvalue = shift_pvalue(mine, others, lower=low)
    if not pvalue >= cfg.shift_level:  # NaN (no other device) refuses too
        shown = "no other device to compare" if np.isnan(pvalue) else (
            f"one-sided Mann–Whitney p={pvalue:.3g} < {cfg.shift_level:g}")
        text = f"its {kind} score {direction} than the other devices' ({shown}), {SHIFT_REFUSED}"
        return _changed(own, {why: f"{own_reason}, and {text}", check: text})
    text = (f"pooled: its {kind} are not shown to score {direction} than the other devices' "
            f"(one-sided Mann–Whitney p={pvalue:.3g} >= {cfg.shift_level:g}, "
            f"{mine.size} vs {others.size})")
    if (pooled.t_low if low else pooled.t_high) is None:
        return _changed(own, {why: f"{own_reason}; {text}, but {getattr(pooled, why)}",
                              check: text})
    return _lend(own, pooled, fields, **{check: text})


def _auto(own: GroupThresholds, pooled: GroupThresholds, scores: np.ndarray,
          labels: np.ndarray, mask: np.ndarray, cfg: ThresholdConfig) -> GroupThresholds:
    """An `auto` group: each side its own threshold where it has the data, else pooled."""
    out = own
    pac = cfg.guarantee == Guarantee.PAC
    if own.n_pos < cfg.required_positives:
        out = _auto_side(out, pooled, scores[mask & (labels == 1)],
                         scores[~mask & (labels == 1)], cfg, low=True)
    enough_neg = own.n_neg >= cfg.required_negatives and (
        not pac or own.n_pos >= cfg.required_positives)
    if not enough_neg:
        out = _auto_side(out, pooled, scores[mask & (labels == 0)],
                         scores[~mask & (labels == 0)], cfg, low=False)
    return out


def fit_thresholds(p: Any, labels: Any, groups: Any,
                   config: ThresholdConfig | None = None) -> FittedThresholds:
    """Certify routine and urgent thresholds per device group.

    ``stratify: device`` (default): each group from its own calibration studies only
    (Mondrian); a group without enough gets None thresholds and its studies go to review.
    ``pooled``: every group gets the thresholds fitted on all calibration studies (a
    guarantee for the calibration split's device mix). ``auto``: per side, the group's own
    threshold where it has enough data, else the pooled one where the one-sided
    Mann–Whitney shift check does not reject, else none. See docs/calibration.md.

    Args:
        p: calibrated positive-class probabilities of the calibration split, shape (N,).
        labels: their 0/1 labels, shape (N,).
        groups: their device groups, shape (N,) (converted to text).
        config: certification settings; defaults to `ThresholdConfig()`.

    Returns:
        The thresholds of every group present in `groups` (and the pooled ones).

    Raises:
        CalibrationInputError: bad probabilities or labels, or `groups` of another length.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> p = rng.uniform(size=4000); y = (rng.uniform(size=4000) < p).astype(int)
        >>> fitted = fit_thresholds(p, y, ["acme"] * 4000)
        >>> g = fitted.get("acme"); 0 < g.t_low < 0.1 and 0.8 < g.t_high < 1
        True
        >>> g.low_guarantee
        'pac/device a=0.01 d=0.05'
    """
    config = config or ThresholdConfig()
    scores, y = check_pair(p, labels)
    names = as_numpy(groups).astype(str)
    if names.shape != scores.shape:
        raise CalibrationInputError(f"Arguments 'p' and 'groups' must have the same length; "
                                    f"got {scores.size} probabilities and {names.size} groups.")
    grid = candidate_thresholds(config.grid_points)
    masks = {name: names == name for name in sorted(set(names.tolist()))}
    own = {name: _fit_stratum(name, scores[m], y[m], grid, config, SOURCE_DEVICE)
           for name, m in masks.items()}
    if config.stratify == Stratify.DEVICE:
        return FittedThresholds(config, own)
    pooled = _fit_stratum(POOLED_NAME, scores, y, grid, config, SOURCE_POOLED)
    if config.stratify == Stratify.POOLED:
        fitted = {name: _lend(_lend(g, pooled, LOW_FIELDS), pooled, HIGH_FIELDS)
                  for name, g in own.items()}
    else:
        fitted = {name: _auto(g, pooled, scores, y, masks[name], config)
                  for name, g in own.items()}
    return FittedThresholds(config, fitted, pooled)
