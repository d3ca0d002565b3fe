"""Certified routing thresholds: Clopper–Pearson bounds with fixed-sequence testing, per device.

`fit_thresholds` chooses, for each device group from that group's calibration studies,

- a **routine** threshold ``t_low`` (``p < t_low`` → routine) such that, with probability at
  least ``1 − delta`` over the calibration draw, the fraction of positives routed routine
  (the miss rate) is at most ``alpha``;
- an **urgent** threshold ``t_high`` (``p >= t_high`` → urgent) such that, with probability
  at least ``1 − delta``, the PPV of the urgent route is at least ``ppv_target``.

The math, and why the scans stop at the first failure, is in docs/calibration.md
("Routing thresholds").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import beta as beta_dist

from triage.calibrate.inputs import CalibrationInputError, as_numpy, check_pair
from triage.errors import ConfigError
from triage.settings import dataclass_from_mapping

THRESHOLDS_FORMAT = 1
#: The candidate grid spans logits [-LOGIT_SPAN, LOGIT_SPAN] (p from 4.5e-5 to 0.99995).
LOGIT_SPAN = 10.0


def cp_upper(k: Any, n: Any, delta: float) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound: P(rate <= bound) >= 1 - delta.

    ``Beta(1 - delta; k + 1, n - k)``, and 1 where ``k == n``. Vectorized over `k`, `n`.

    Example:
        >>> round(float(cp_upper(0, 299, 0.05)), 6)  # 1 - 0.05 ** (1 / 299)
        0.009969
    """
    k, n = np.broadcast_arrays(np.asarray(k, np.float64), np.asarray(n, np.float64))
    out = np.ones(k.shape)
    inside = k < n
    out[inside] = beta_dist.ppf(1.0 - delta, k[inside] + 1, n[inside] - k[inside])
    return out


def cp_lower(k: Any, n: Any, delta: float) -> np.ndarray:
    """One-sided Clopper–Pearson lower bound: P(rate >= bound) >= 1 - delta.

    ``Beta(delta; k, n - k + 1)``, and 0 where ``k == 0`` (also for ``n == 0``).

    Example:
        >>> round(float(cp_lower(30, 30, 0.05)), 6)  # 0.05 ** (1 / 30)
        0.904966
    """
    k, n = np.broadcast_arrays(np.asarray(k, np.float64), np.asarray(n, np.float64))
    out = np.zeros(k.shape)
    inside = k > 0
    out[inside] = beta_dist.ppf(delta, k[inside], n[inside] - k[inside] + 1)
    return out


def min_positives_needed(alpha: float, delta: float) -> int:
    """Fewest calibration positives with which a routine threshold can be certified.

    With zero misses among n positives the Clopper–Pearson upper bound is
    ``1 - delta ** (1 / n)``, which is <= alpha iff ``n >= ln(delta) / ln(1 - alpha)``.

    Example:
        >>> min_positives_needed(0.01, 0.05)
        299
    """
    n = math.ceil(math.log(delta) / math.log1p(-alpha) - 1e-9)
    while float(cp_upper(0, n, delta)) > alpha:  # guard the float edge
        n += 1
    return n


def candidate_thresholds(n_points: int) -> np.ndarray:
    """The fixed, data-independent candidate grid: `n_points` probabilities, ascending,
    evenly spaced in logit over [-LOGIT_SPAN, LOGIT_SPAN] (fine near 0 and 1)."""
    logits = np.linspace(-LOGIT_SPAN, LOGIT_SPAN, n_points)
    return 1.0 / (1.0 + np.exp(-logits))


@dataclass(frozen=True)
class ThresholdConfig:
    """How thresholds are certified (the ``thresholds:`` section of a rules file).

    Attributes:
        alpha: largest tolerated miss rate (fraction of positives routed routine).
        delta: allowed probability that a certified guarantee fails (confidence 1 - delta),
            per guarantee and per device group.
        ppv_target: smallest tolerated PPV of the urgent route.
        min_positives: calibration positives a device group needs for any threshold; None
            means `min_positives_needed(alpha, delta)` (299 for 0.01 / 0.05).
        min_negatives: calibration negatives a device group needs for an urgent threshold.
        min_urgent_count: the descending urgent scan starts at the first candidate with at
            least this many calibration studies at or above it; sparser candidates are
            skipped, not failed (so a single negative among the very top studies does not
            end the scan). Valid when a higher score never means a lower chance of a
            finding (docs/calibration.md).
        grid_points: size of the candidate grid (see `candidate_thresholds`).

    Raises:
        ValueError: a value is out of range.
    """

    alpha: float = 0.01
    delta: float = 0.05
    ppv_target: float = 0.9
    min_positives: int | None = None
    min_negatives: int = 100
    min_urgent_count: int = 100
    grid_points: int = 2001

    def __post_init__(self) -> None:
        for name in ("alpha", "delta", "ppv_target"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0.0 < value < 1.0:
                raise ValueError(f"thresholds.{name} must be a number strictly between 0 and 1, "
                                 f"got {value!r}.")
            object.__setattr__(self, name, float(value))
        for name, low in (("min_positives", 1), ("min_negatives", 0), ("min_urgent_count", 1),
                          ("grid_points", 2)):
            value = getattr(self, name)
            if value is None and name == "min_positives":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"thresholds.{name} must be an integer >= {low}, "
                                 f"got {value!r}.")

    @property
    def required_positives(self) -> int:
        """`min_positives`, or the minimum the math allows when it is None."""
        if self.min_positives is not None:
            return self.min_positives
        return min_positives_needed(self.alpha, self.delta)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *,
                  source: str = "thresholds") -> ThresholdConfig:
        """Build from a mapping; unknown keys are rejected with a suggestion.

        Raises:
            ConfigError: unknown key or invalid value.
        """
        return dataclass_from_mapping(cls, data, what="thresholds option", source=source)


@dataclass(frozen=True)
class GroupThresholds:
    """The certified thresholds of one device group and the evidence behind them.

    Attributes:
        group: the device group.
        n_pos: calibration positives of the group.
        n_neg: calibration negatives of the group.
        t_low: routine threshold (``p < t_low`` → routine); None when not certified.
        t_high: urgent threshold (``p >= t_high`` → urgent); None when not certified.
        miss_count: calibration positives with ``p < t_low``.
        miss_bound: Clopper–Pearson upper bound on the miss rate at `t_low`.
        urgent_count: calibration studies with ``p >= t_high``.
        urgent_positives: positives among them.
        ppv_bound: Clopper–Pearson lower bound on the PPV at `t_high`.
        low_reason: why `t_low` is None (empty when certified).
        high_reason: why `t_high` is None (empty when certified).
    """

    group: str
    n_pos: int
    n_neg: int
    t_low: float | None = None
    t_high: float | None = None
    miss_count: int | None = None
    miss_bound: float | None = None
    urgent_count: int | None = None
    urgent_positives: int | None = None
    ppv_bound: float | None = None
    low_reason: str = ""
    high_reason: str = ""

    @property
    def certified(self) -> bool:
        """True when at least one threshold is certified."""
        return self.t_low is not None or self.t_high is not None


@dataclass(frozen=True)
class FittedThresholds:
    """Per-device-group thresholds fitted by `fit_thresholds` (stored in the model bundle).

    Attributes:
        config: the `ThresholdConfig` they were certified under.
        groups: device group → `GroupThresholds`.
    """

    config: ThresholdConfig
    groups: dict[str, GroupThresholds] = field(default_factory=dict)

    def get(self, group: str) -> GroupThresholds | None:
        """The thresholds of `group`, or None when it had no calibration studies."""
        return self.groups.get(group)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``ModelBundle.routing`` holds)."""
        return {"format": THRESHOLDS_FORMAT, "config": asdict(self.config),
                "groups": {name: asdict(g) for name, g in sorted(self.groups.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *,
                  source: str = "routing thresholds") -> FittedThresholds:
        """Inverse of `to_dict`.

        Raises:
            ConfigError: the mapping is not a thresholds record this version reads.
        """
        if not isinstance(data, Mapping) or data.get("format") != THRESHOLDS_FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"{source} is not a thresholds record of format "
                              f"{THRESHOLDS_FORMAT} (got format {got!r}); refit the thresholds "
                              f"with triage.route.fit_thresholds.")
        config = ThresholdConfig.from_dict(data.get("config"), source=source)
        groups = {}
        for name, raw in (data.get("groups") or {}).items():
            group = dataclass_from_mapping(GroupThresholds, raw, what="group field",
                                           source=f"{source} (group {name})")
            groups[str(name)] = group
        return cls(config, groups)


def _fit_low(scores_pos: np.ndarray, grid: np.ndarray, cfg: ThresholdConfig,
             ) -> tuple[int, np.ndarray, np.ndarray]:
    """Index one past the last certified candidate of the ascending scan, counts, bounds."""
    n = scores_pos.size
    misses = np.searchsorted(np.sort(scores_pos), grid, side="left")  # positives with p < t
    bounds = cp_upper(misses, n, cfg.delta)
    failed = np.flatnonzero(bounds > cfg.alpha)
    stop = int(failed[0]) if failed.size else grid.size  # first failure ends the sequence
    return stop, misses, bounds


def _fit_high(scores: np.ndarray, labels: np.ndarray, grid: np.ndarray, cfg: ThresholdConfig,
              ) -> tuple[int | None, np.ndarray, np.ndarray, np.ndarray]:
    """Index of the last certified candidate of the descending scan (None: none), counts."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    pos_above = np.concatenate([np.cumsum(labels[order][::-1])[::-1], [0]])
    first = np.searchsorted(sorted_scores, grid, side="left")  # first index with p >= t
    count = scores.size - first
    positives = pos_above[first]
    bounds = cp_lower(positives, count, cfg.delta)
    # Sparse top candidates are skipped, not failed: those with fewer than min_urgent_count
    # studies above, and those that could not pass even if every study above were positive
    # (count < ln(delta) / ln(target)). Both depend on the count only (see the docs).
    sparse = (count < cfg.min_urgent_count) | (cfg.ppv_target ** count > cfg.delta)
    last = None
    for j in range(grid.size - 1, -1, -1):
        if sparse[j]:
            if last is None:
                continue
            break  # unreachable: counts only grow as t falls
        if bounds[j] < cfg.ppv_target:
            break
        last = j
    return last, count, positives, bounds


def _fit_group(name: str, scores: np.ndarray, labels: np.ndarray, grid: np.ndarray,
               cfg: ThresholdConfig) -> GroupThresholds:
    n_pos, n_neg = int(labels.sum()), int(labels.size - labels.sum())
    base = {"group": name, "n_pos": n_pos, "n_neg": n_neg}
    need = cfg.required_positives
    if n_pos < need:
        reason = (f"too few calibration positives for device {name} ({n_pos} < {need}) to "
                  f"certify a threshold")
        return GroupThresholds(**base, low_reason=reason, high_reason=reason)
    low: dict[str, Any] = {}
    stop, misses, miss_bounds = _fit_low(scores[labels == 1], grid, cfg)
    if stop == 0:
        low["low_reason"] = (f"no routine threshold for device {name} keeps the miss rate "
                             f"<= {cfg.alpha:g} with confidence {1 - cfg.delta:g}")
    else:
        j = stop - 1
        low.update(t_low=float(grid[j]), miss_count=int(misses[j]),
                   miss_bound=float(miss_bounds[j]))
    high: dict[str, Any] = {}
    if n_neg < cfg.min_negatives:
        high["high_reason"] = (f"too few calibration negatives for device {name} "
                               f"({n_neg} < {cfg.min_negatives}) to certify an urgent threshold")
    else:
        last, count, positives, ppv_bounds = _fit_high(scores, labels, grid, cfg)
        if last is None:
            high["high_reason"] = (f"no urgent threshold for device {name} reaches PPV >= "
                                   f"{cfg.ppv_target:g} with confidence {1 - cfg.delta:g}")
        else:
            high.update(t_high=float(grid[last]), urgent_count=int(count[last]),
                        urgent_positives=int(positives[last]),
                        ppv_bound=float(ppv_bounds[last]))
    return GroupThresholds(**base, **low, **high)


def fit_thresholds(p: Any, labels: Any, groups: Any,
                   config: ThresholdConfig | None = None) -> FittedThresholds:
    """Certify routine and urgent thresholds per device group (Mondrian).

    Each group is fitted from its own calibration studies only; there is no pooled
    fallback (a group without enough data gets None thresholds and its studies go to
    review). See docs/calibration.md, "Routing thresholds".

    Args:
        p: calibrated positive-class probabilities of the calibration split, shape (N,).
        labels: their 0/1 labels, shape (N,).
        groups: their device groups, shape (N,) (converted to text).
        config: certification settings; defaults to `ThresholdConfig()`.

    Returns:
        The thresholds of every group present in `groups`.

    Raises:
        CalibrationInputError: bad probabilities or labels, or `groups` of another length.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> p = rng.uniform(size=4000); y = (rng.uniform(size=4000) < p).astype(int)
        >>> fitted = fit_thresholds(p, y, ["acme"] * 4000)
        >>> g = fitted.get("acme"); 0 < g.t_low < 0.1 and 0.8 < g.t_high < 1
        True
    """
    config = config or ThresholdConfig()
    scores, y = check_pair(p, labels)
    names = as_numpy(groups).astype(str)
    if names.shape != scores.shape:
        raise CalibrationInputError(f"Arguments 'p' and 'groups' must have the same length; "
                                    f"got {scores.size} probabilities and {names.size} groups.")
    grid = candidate_thresholds(config.grid_points)
    fitted = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        fitted[name] = _fit_group(name, scores[mask], y[mask], grid, config)
    return FittedThresholds(config, fitted)
