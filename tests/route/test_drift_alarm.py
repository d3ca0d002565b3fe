"""The ``drift-alarm`` rule kind: review for device groups with an active alarm."""

from __future__ import annotations

from tests.route.conftest import DEFAULT_RULES
from triage.route import Router
from triage.route.types import StudyEvidence


def _study(group: str, p: float = 0.01) -> StudyEvidence:
    return StudyEvidence("1.2.3", group, "CT", ingest_ok=True, n_slices=40, p_calibrated=p)


def test_an_alarm_sends_its_group_to_review_and_names_the_alarm():
    router = Router.from_yaml(DEFAULT_RULES, {}, ["acme", "borealis"])
    assert "drift-alarm" not in router.route(_study("acme")).rule_ids
    alarmed = router.with_alarms({"acme": ("input-cusum:acme (distances rose)",)})
    decision = alarmed.route(_study("acme"))
    assert decision.route == "review" and decision.rule_ids[0] == "drift-alarm"
    assert "input-cusum:acme" in decision.reasons[0]
    assert "drift-alarm" not in alarmed.route(_study("borealis")).rule_ids
    assert alarmed.version == router.version  # the rules file is unchanged
    failed = StudyEvidence("1.2.4", "acme", "CT", ingest_ok=False, ingest_reasons="empty")
    assert alarmed.route(failed).route == "failed"  # failure rules still come first
    assert router.with_alarms({}).ruleset is router.ruleset
