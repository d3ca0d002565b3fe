"""What no rules file, alarm or audit can take away: a failed, degenerate or doubtful study
is never routed routine."""

from __future__ import annotations

import math

import pytest
import yaml

from tests.route.conftest import DEFAULT_RULES
from triage.route import Router
from triage.route.audit import with_audit
from triage.route.router import SAFETY_RULES, AlarmWatchingRouter
from triage.route.rules import RuleSet


def _without(*kinds: str) -> RuleSet:
    """The default rules file without the rules of `kinds` (an older or custom file)."""
    data = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    data["rules"] = [r for r in data["rules"] if r["kind"] not in kinds]
    return RuleSet.from_dict(data)


BLANK = dict(intensity_std=0.0, body_fraction=0.0, input_distance=None, p_calibrated=0.001)


@pytest.mark.parametrize("missing", [("degenerate-volume",), ("input-distance",),
                                     ("degenerate-volume", "input-distance", "unseen-device"),
                                     ("ingest-failure", "inference-error")])
def test_a_rules_file_without_a_safety_rule_gets_it(fitted, evidence, missing):
    """Rules recorded with a bundle from before `degenerate-volume` cleared a blank export
    as routine."""
    router = Router(_without(*missing), fitted, ["acme", "tiny"])
    assert {kind for kind, _ in SAFETY_RULES} <= {r.kind for r in router.ruleset.rules}
    assert "+safety" in router.version
    assert router.route(evidence(**BLANK)).route == "review"
    assert router.route(evidence(ingest_ok=False, ingest_reasons="x")).route == "failed"
    assert router.route(evidence(inference_error="boom", p_calibrated=None)).route == "failed"
    assert router.route(evidence(device_group="never-seen")).route == "review"
    stages = [r.stage for r in router.ruleset.rules]
    assert stages == sorted(stages)  # still failure, then QC, then score rules
    complete = Router.from_yaml(DEFAULT_RULES, fitted, ["acme", "tiny"])
    assert "+safety" not in complete.version


@pytest.mark.parametrize("changes", [
    {"body_fraction": math.nan}, {"body_fraction": 5.0}, {"intensity_std": math.inf},
    {"matrix": None}, {"intensity_std": None}, {"matrix": (512,)}, {"matrix": ()},
], ids=["body-nan", "body-5", "std-inf", "no-matrix", "no-std", "matrix-1d", "matrix-0d"])
def test_partial_or_impossible_volume_measurements_are_not_cleared(router, evidence,
                                                                   changes):
    decision = router.route(evidence(p_calibrated=0.001, **changes))
    assert decision.route == "review" and "qc-degenerate" in decision.rule_ids, decision
    assert router.route(evidence(p_calibrated=0.001)).route == "routine"  # the clean study


def test_an_audited_router_keeps_the_alarms_it_is_given(router, evidence):
    audited = with_audit(router, 0.01, seed=3)
    alarmed = audited.with_alarms({"acme": ("score-cusum:acme",)})
    assert alarmed.route(evidence(p_calibrated=0.001)).route == "review"
    assert alarmed.version == audited.version


def test_a_watching_router_follows_alarms_raised_and_cleared_while_it_routes(router,
                                                                              evidence):
    """`triage listen` runs for days; its alarms come from a file `triage monitor` edits."""
    state = {"stamp": 0, "alarms": {}}
    watching = AlarmWatchingRouter(router, lambda: state["alarms"], lambda: state["stamp"])
    clean = evidence(p_calibrated=0.001)
    assert watching.route(clean).route == "routine"
    state.update(stamp=1, alarms={"acme": ("input-cusum:acme",)})
    assert watching.route(clean).route == "review"
    state.update(stamp=2, alarms={})
    assert watching.route(clean).route == "routine"
    assert watching.version == router.version
