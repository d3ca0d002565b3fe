"""The ``drift-alarm`` rule kind: the monitoring stop-rule (docs/monitoring.md).

While `triage monitor` holds an active alarm on a device group (the alarm file given to
`triage run --alarms`), every study of that group goes to review, with the alarm named in
the reason, until `triage monitor clear`. The active alarms reach the rule through
`RuleContext.alarms` (`Router.with_alarms`).
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.route.rules import Rule, RuleContext, Stage, register_rule
from triage.route.types import Route, StudyEvidence


@register_rule("drift-alarm")
@dataclass(frozen=True)
class DriftAlarm(Rule):
    """Review: monitoring raised an alarm on the study's device group."""

    route = Route.REVIEW
    stage = Stage.QC

    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        alarms = context.alarms.get(evidence.device_group)
        if not alarms:
            return None
        return (f"drift alarm on device {evidence.device_group}: {'; '.join(alarms)}; its "
                f"studies are reviewed until `triage monitor clear`")
