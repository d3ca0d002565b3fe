"""Promotion gates: may a challenger model version replace the `@champion`?

Both models are scored on the same promotion manifest (`triage.registry.evaluate`), after
their own temperature scaling. Every gate is a row of the report (metric, champion,
challenger, bound, pass/fail); the challenger is promoted only if every row passes.
Without a champion, only the absolute gates apply (ECE bound, routing guarantee).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from triage.configs import config_path
from triage.settings import dataclass_from_mapping, load_yaml

DEFAULT_GATES = config_path("promotion")
REPORT_COLUMNS = ("gate", "metric", "group", "champion", "challenger", "bound", "passed")


@dataclass(frozen=True)
class GateConfig:
    """Tolerances of the promotion gates (``triage/configs/promotion/default.yaml``).

    Attributes:
        auroc_tolerance: the challenger's overall AUROC may be at most this much below
            the champion's.
        max_ece: bound on the challenger's overall ECE after temperature scaling.
        max_miss_rate: bound on the fraction of positives the challenger's certified
            thresholds route `routine` on the promotion set. Unset (the default): the α
            the challenger certified its thresholds under, read from its recorded rules
            (`certified_alpha`): the rules file's ``thresholds.alpha`` is the one home of
            the routing guarantee's α. Set it only for a stricter bound than that.
        device_auroc_tolerance: no device group's AUROC may drop more than this below the
            champion's on that group.
        min_device_studies: device groups with fewer promotion studies (or one class only)
            are reported but not gated: their AUROC is too noisy to compare.
        require_certified: a challenger that certifies no threshold for any device fails
            the routing guarantee ("nothing certified") instead of passing it vacuously.
    """

    auroc_tolerance: float = 0.02
    max_ece: float = 0.1
    max_miss_rate: float | None = None
    device_auroc_tolerance: float = 0.05
    min_device_studies: int = 10
    require_certified: bool = True

    def __post_init__(self) -> None:
        for name in ("auroc_tolerance", "max_ece", "max_miss_rate", "device_auroc_tolerance"):
            value = getattr(self, name)
            if name == "max_miss_rate" and value is None:
                continue
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"'{name}' must be a number in [0, 1], got {value!r}")
        if not isinstance(self.require_certified, bool):
            raise ValueError(f"'require_certified' must be true or false, got "
                             f"{self.require_certified!r}")

    @classmethod
    def from_yaml(cls, path: Path | str | None = None) -> GateConfig:
        path = Path(path) if path is not None else DEFAULT_GATES
        return dataclass_from_mapping(cls, load_yaml(path, "promotion gates"),
                                      what="gate option", source=str(path))


def _overall(metrics: pd.DataFrame, name: str, group: str = "all") -> float:
    rows = metrics[(metrics["group"] == group) & metrics["calibrated"]]
    return float(rows[name].iloc[0]) if len(rows) else math.nan


def certified_groups(routing: Mapping[str, Any] | None) -> set[str]:
    """Device groups with at least one certified threshold in a bundle's routing record."""
    if not routing:
        return set()
    from triage.route.thresholds import FittedThresholds

    fitted = FittedThresholds.from_dict(routing)
    return {name for name, group in fitted.groups.items() if group.certified}


def _certified_config(bundle: Any) -> Any:
    """The `ThresholdConfig` a bundle's routing thresholds were certified under.

    From the rules the bundle records (``thresholds``), else from its routing record's
    settings, else the `ThresholdConfig` defaults (a bundle with neither certifies nothing,
    and the routing guarantee gate judges only its empty routine route).
    """
    from triage.route.rules import RuleSet
    from triage.route.thresholds import FittedThresholds, ThresholdConfig

    rules = getattr(bundle, "rules", None)
    if isinstance(rules, Mapping) and rules:
        return RuleSet.from_dict(rules, source="the model's recorded rules").thresholds
    routing = getattr(bundle, "routing", None)
    if routing:
        return FittedThresholds.from_dict(routing).config
    return ThresholdConfig()


def certified_alpha(bundle: Any) -> float:
    """The α a bundle's routing thresholds were certified under (`_certified_config`)."""
    return float(_certified_config(bundle).alpha)


def certified_delta(bundle: Any) -> float:
    """The δ of those thresholds: the confidence the routing gate's lower bound uses."""
    return float(_certified_config(bundle).delta)


def gate_report(challenger: pd.DataFrame, champion: pd.DataFrame | None, config: GateConfig,
                *, miss_rate: float | None, certified: Collection[str] | None = None,
                champion_certified: Collection[str] = (), alpha: float | None = None,
                miss_counts: tuple[int, int] | None = None, delta: float = 0.05
                ) -> pd.DataFrame:
    """The gate table.

    Args:
        challenger: the challenger's per-group metrics (`evaluate_bundle`).
        champion: the champion's, or None for a first version.
        config: the tolerances.
        miss_rate: the challenger's realized routing miss rate on the promotion set, or
            None when it has no certified thresholds (the gate then fails: a model that
            cannot clear any study is not deployable as a triage model).
        certified: device groups the challenger certifies (`certified_groups`); None
            skips the certification rows. An empty set is reported as "nothing certified"
            and fails when `config.require_certified`.
        champion_certified: device groups the champion certifies; each one the
            challenger leaves uncertified fails the routing guarantee (its studies would
            lose their certified routes).
        alpha: the α the challenger certified under (`certified_alpha`): the miss-rate
            bound unless `config.max_miss_rate` sets one; None: the `ThresholdConfig`
            default.
        miss_counts: ``(misses, positives)`` behind `miss_rate`. With them the gate fails
            only when the promotion set shows the bound broken: the one-sided
            Clopper–Pearson lower bound of the miss rate at confidence ``1 - delta`` is
            above it. A handful of test positives cannot then refuse a model by chance (2
            misses of 12 is 0.17, but a miss rate of 0.1 or less is well within what 12
            positives allow); without them the point estimate is compared.
        delta: the confidence parameter of that lower bound.
    """
    rows: list[dict[str, Any]] = []
    bound_miss = config.max_miss_rate
    if bound_miss is None:
        if alpha is None:
            from triage.route.thresholds import ThresholdConfig

            alpha = ThresholdConfig().alpha
        bound_miss = alpha

    def add(gate: str, metric: str, group: str, champ: float, chall: float, bound: float,
            passed: bool) -> None:
        rows.append({"gate": gate, "metric": metric, "group": group, "champion": champ,
                     "challenger": chall, "bound": bound, "passed": bool(passed)})

    ece = _overall(challenger, "ece")
    add("calibration", "ece", "all", _overall(champion, "ece") if champion is not None
        else math.nan, ece, config.max_ece, ece <= config.max_ece)
    if miss_rate is not None and miss_counts is not None:
        from triage.route.thresholds import cp_lower

        misses, positives = miss_counts
        lower = float(cp_lower(misses, positives, delta)) if positives else 0.0
        add("routing guarantee", f"miss_rate ({misses} of {positives} positives; "
            f"{1 - delta:g} lower bound {lower:.3g})", "all", math.nan, miss_rate, bound_miss,
            lower <= bound_miss)
    else:
        add("routing guarantee", "miss_rate", "all", math.nan,
            math.nan if miss_rate is None else miss_rate, bound_miss,
            miss_rate is not None and miss_rate <= bound_miss)
    if certified is not None:
        certified = set(certified)
        if not certified:
            add("routing guarantee", "nothing certified", "all", len(champion_certified), 0,
                1, not config.require_certified)
        for group in sorted(set(champion_certified) - certified):
            add("routing guarantee", "certified", group, 1, 0, 1, False)
    if champion is not None:
        champ_auroc, chall_auroc = _overall(champion, "auroc"), _overall(challenger, "auroc")
        bound = champ_auroc - config.auroc_tolerance
        add("no AUROC regression", "auroc", "all", champ_auroc, chall_auroc, bound,
            chall_auroc >= bound)
        for group in sorted(set(challenger["group"]) & set(champion["group"]) - {"all"}):
            champ_g, chall_g = _overall(champion, "auroc", group), _overall(challenger,
                                                                            "auroc", group)
            n = _overall(challenger, "n", group)
            if n < config.min_device_studies or math.isnan(champ_g) or math.isnan(chall_g):
                continue
            bound = champ_g - config.device_auroc_tolerance
            add("no device regression", "auroc", group, champ_g, chall_g, bound,
                chall_g >= bound)
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def report_markdown(report: pd.DataFrame) -> str:
    """The gate table as Markdown (NaN as an en dash)."""
    from triage.registry.evaluate import markdown_table

    shown = report.assign(passed=report["passed"].map({True: "pass", False: "FAIL"}))
    return markdown_table(shown, REPORT_COLUMNS)
