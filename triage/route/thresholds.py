"""Certified routing thresholds: settings, records, and the PAC certificate (Clopper–Pearson
bounds with fixed-sequence testing).

Under ``guarantee: pac`` (the default) `triage.route.fit.fit_thresholds` chooses, for each
device group (or stratum, see `ThresholdConfig.stratify`),

- a **routine** threshold ``t_low`` (``p < t_low`` → routine) such that, with probability at
  least ``1 − delta`` over the calibration draw, the fraction of positives routed routine
  (the miss rate) is at most ``alpha``;
- an **urgent** threshold ``t_high`` (``p >= t_high`` → urgent) such that, with probability
  at least ``1 − delta``, the PPV of the urgent route is at least ``ppv_target``.

Under ``guarantee: marginal`` the thresholds are split-conformal (`triage.route.conformal`).
The math, and why the scans stop at the first failure, is in docs/calibration.md
("Routing thresholds", "Guarantee modes").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from triage.errors import ConfigError
from triage.route.conformal import marginal_needed
from triage.route.guarantee import SOURCE_DEVICE, Guarantee, Stratify, high_label, low_label
from triage.settings import dataclass_from_mapping

#: Format 2 added the guarantee mode, strata and per-threshold labels; format 1 records
#: (no ``guarantee``) are read as ``pac``/``device``.
THRESHOLDS_FORMAT = 2
READABLE_FORMATS = (1, 2)
#: The candidate grid spans logits [-LOGIT_SPAN, LOGIT_SPAN] (p from 4.5e-5 to 0.99995).
LOGIT_SPAN = 10.0


def cp_upper(k: Any, n: Any, delta: float) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound: P(rate <= bound) >= 1 - delta.

    ``Beta(1 - delta; k + 1, n - k)``, and 1 where ``k == n``. Vectorized over `k`, `n`.

    Example:
        >>> round(float(cp_upper(0, 299, 0.05)), 6)  # 1 - 0.05 ** (1 / 299)
        0.009969
    """
    from scipy.stats import beta as beta_dist  # here: ~0.7 s of import a run skips

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
    from scipy.stats import beta as beta_dist

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
    while -math.expm1(math.log(delta) / n) > alpha:  # guard the float edge (the bound in
        n += 1  # closed form: `cp_upper` needs scipy.stats, ~0.7 s of a run's start-up)
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
        guarantee: ``pac`` (P(miss rate > alpha) <= delta) or ``marginal`` (E[miss rate]
            <= alpha, split conformal); see `Guarantee`.
        stratify: ``device``, ``pooled`` or ``auto``; see `Stratify`.
        urgent_fpr: ``marginal`` only: largest tolerated expected share of negatives routed
            urgent (the urgent side's guarantee; ``pac`` certifies PPV instead).
        shift_level: ``auto`` only: a device without enough calibration data of its own
            gets the pooled threshold unless a one-sided Mann–Whitney test rejects "its
            positives do not score lower than the other devices'" (negatives: "not higher")
            at this level.
        shift_min_count: ``auto`` only: the device needs at least this many calibration
            positives (negatives for the urgent side) for the test; fewer: review.

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
    guarantee: str = "pac"
    stratify: str = "device"
    urgent_fpr: float = 0.05
    shift_level: float = 0.05
    shift_min_count: int = 5

    def __post_init__(self) -> None:
        for name, enum in (("guarantee", Guarantee), ("stratify", Stratify)):
            value = getattr(self, name)
            if value not in {e.value for e in enum}:
                raise ValueError(f"thresholds.{name} must be one of "
                                 f"{', '.join(e.value for e in enum)}, got {value!r}.")
            object.__setattr__(self, name, str(enum(value).value))
        for name in ("alpha", "delta", "ppv_target", "urgent_fpr", "shift_level"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0.0 < value < 1.0:
                raise ValueError(f"thresholds.{name} must be a number strictly between 0 and 1, "
                                 f"got {value!r}.")
            object.__setattr__(self, name, float(value))
        for name, low in (("min_positives", 1), ("min_negatives", 0), ("min_urgent_count", 1),
                          ("grid_points", 2), ("shift_min_count", 1)):
            value = getattr(self, name)
            if value is None and name == "min_positives":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"thresholds.{name} must be an integer >= {low}, "
                                 f"got {value!r}.")

    @property
    def required_positives(self) -> int:
        """`min_positives`, or the minimum the configured mode allows when it is None."""
        if self.min_positives is not None:
            return self.min_positives
        return self.positives_needed(self.guarantee)

    @property
    def required_negatives(self) -> int:
        """Calibration negatives a stratum needs for an urgent threshold in this mode."""
        return self.negatives_needed(self.guarantee)

    def positives_needed(self, guarantee: str) -> int:
        """Fewest calibration positives for a routine threshold under `guarantee`
        (299 for ``pac`` and 99 for ``marginal`` at alpha 0.01, delta 0.05)."""
        if guarantee == Guarantee.PAC:
            return min_positives_needed(self.alpha, self.delta)
        return marginal_needed(self.alpha)

    def negatives_needed(self, guarantee: str) -> int:
        """Calibration negatives for an urgent threshold under `guarantee`: the
        `min_negatives` policy for ``pac`` (PPV), ``ceil(1/urgent_fpr - 1)`` for
        ``marginal``."""
        if guarantee == Guarantee.PAC:
            return self.min_negatives
        return marginal_needed(self.urgent_fpr)

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
        fpr_bound: ``marginal``: the bound on the expected share of negatives at or above
            `t_high`.
        low_guarantee: what covers `t_low`, e.g. ``pac/device a=0.01 d=0.05`` (empty when
            not certified); the worklist's ``guarantee`` column of a routine row.
        high_guarantee: what covers `t_high`, e.g. ``marginal/pooled fpr=0.05``.
        low_check: ``auto``: the shift check behind a pooled `t_low` (or its refusal).
        high_check: ``auto``: the same for `t_high`.
        low_carried_from: the model version whose certificate `t_low` keeps (a
            recalibration whose labels could not certify the device's routine threshold
            again: `triage.feedback.recalibrate.carry_over`); empty when certified here.
        high_carried_from: the same for `t_high`.

    For ``marginal``, `miss_bound` is the bound ``k / (n + 1)`` on the expected miss rate.
    For a pooled threshold, the counts and bounds are the pool's; `n_pos`, `n_neg` stay
    the device's.
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
    fpr_bound: float | None = None
    low_guarantee: str = ""
    high_guarantee: str = ""
    low_check: str = ""
    high_check: str = ""
    low_carried_from: str = ""
    high_carried_from: str = ""

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
        pooled: the thresholds fitted on every calibration study together (``pooled`` and
            ``auto``; None for ``device``), under the group name ``(pooled)``.
    """

    config: ThresholdConfig
    groups: dict[str, GroupThresholds] = field(default_factory=dict)
    pooled: GroupThresholds | None = None

    def get(self, group: str) -> GroupThresholds | None:
        """The thresholds of `group`, or None when it had no calibration studies."""
        return self.groups.get(group)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``ModelBundle.routing`` holds)."""
        return {"format": THRESHOLDS_FORMAT, "config": asdict(self.config),
                "groups": {name: asdict(g) for name, g in sorted(self.groups.items())},
                "pooled": asdict(self.pooled) if self.pooled is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *,
                  source: str = "routing thresholds") -> FittedThresholds:
        """Inverse of `to_dict`.

        Format 1 records (before guarantee modes) hold ``pac``/``device`` thresholds; their
        labels are filled in.

        Raises:
            ConfigError: the mapping is not a thresholds record this version reads.
        """
        if not isinstance(data, Mapping) or data.get("format") not in READABLE_FORMATS:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"{source} is not a thresholds record of format "
                              f"{' or '.join(map(str, READABLE_FORMATS))} (got format {got!r}); "
                              f"refit the thresholds with triage.route.fit_thresholds.")
        config = ThresholdConfig.from_dict(data.get("config"), source=source)
        groups = {}
        for name, raw in (data.get("groups") or {}).items():
            group = dataclass_from_mapping(GroupThresholds, raw, what="group field",
                                           source=f"{source} (group {name})")
            if data["format"] == 1:
                group = _label_format1(group, config)
            groups[str(name)] = group
        pooled = data.get("pooled")
        if pooled is not None:
            pooled = dataclass_from_mapping(GroupThresholds, pooled, what="group field",
                                            source=f"{source} (pooled)")
        return cls(config, groups, pooled)


def _label_format1(group: GroupThresholds, cfg: ThresholdConfig) -> GroupThresholds:
    """A format-1 group with the labels of the pac/device thresholds it holds."""
    low = (low_label(Guarantee.PAC, SOURCE_DEVICE, cfg.alpha, cfg.delta)
           if group.t_low is not None else "")
    high = (high_label(Guarantee.PAC, SOURCE_DEVICE, ppv_target=cfg.ppv_target,
                       delta=cfg.delta, urgent_fpr=cfg.urgent_fpr)
            if group.t_high is not None else "")
    return replace(group, low_guarantee=low, high_guarantee=high)


def pac_low_scan(scores_pos: np.ndarray, grid: np.ndarray, cfg: ThresholdConfig,
                 ) -> tuple[int, np.ndarray, np.ndarray]:
    """Index one past the last certified candidate of the ascending scan, counts, bounds."""
    n = scores_pos.size
    misses = np.searchsorted(np.sort(scores_pos), grid, side="left")  # positives with p < t
    bounds = cp_upper(misses, n, cfg.delta)
    failed = np.flatnonzero(bounds > cfg.alpha)
    stop = int(failed[0]) if failed.size else grid.size  # first failure ends the sequence
    return stop, misses, bounds


def pac_high_scan(scores: np.ndarray, labels: np.ndarray, grid: np.ndarray,
                  cfg: ThresholdConfig) -> tuple[int | None, np.ndarray, np.ndarray, np.ndarray]:
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
