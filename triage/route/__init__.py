"""The rule layer: certified routing thresholds and declarative rules that route each study.

See docs/rules.md (the rules file language) and docs/calibration.md ("Routing thresholds").
"""

from triage.route.fit import POOLED_NAME, fit_thresholds
from triage.route.guarantee import Guarantee, Stratify
from triage.route.router import NO_RULE_ID, Router
from triage.route.rules import (
    Rule,
    RuleContext,
    RuleSet,
    Stage,
    create_rule,
    list_rules,
    load_rules,
    register_rule,
)
from triage.route.thresholds import (
    FittedThresholds,
    GroupThresholds,
    ThresholdConfig,
    cp_lower,
    cp_upper,
    min_positives_needed,
)
from triage.route.types import Priority, Route, RouteDecision, StudyEvidence

__all__ = [
    "NO_RULE_ID", "POOLED_NAME", "FittedThresholds", "Guarantee", "GroupThresholds", "Priority",
    "Route", "RouteDecision", "Router", "Rule", "RuleContext", "RuleSet", "Stage", "Stratify",
    "StudyEvidence", "ThresholdConfig",
    "cp_lower", "cp_upper", "create_rule", "fit_thresholds", "list_rules", "load_rules",
    "min_positives_needed", "register_rule",
]
