"""`Router`: evaluates a rules file against one study's evidence and decides its route."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from triage.errors import ConfigError
from triage.route.priority import prioritize
from triage.route.rules import RuleContext, RuleSet, Stage, load_rules
from triage.route.thresholds import FittedThresholds
from triage.route.types import Route, RouteDecision, StudyEvidence

LOGGER = logging.getLogger(__name__)
#: Rule id recorded when no rule fired (a rules file without a catch-all score rule).
NO_RULE_ID = "no-rule-fired"


#: Rule kinds no rules file may leave out (a failed or degenerate study, an unseen device,
#: an unknown input shift must never be cleared): a file without one gets it, with these
#: options, as `with_safety_rules` says.
SAFETY_RULES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ingest-failure", {}), ("inference-error", {}),
    ("degenerate-volume", {"review_unknown": True}), ("unseen-device", {}),
    ("input-distance", {"review_unknown": True}))


def with_safety_rules(ruleset: RuleSet) -> RuleSet:
    """`ruleset` with every kind of `SAFETY_RULES` it lacks added (id ``safety-<kind>``,
    failure rules first, QC rules before the first score rule) and ``+safety`` appended to
    its version, so that the rows it routes say so; `ruleset` itself when it lacks none.

    Rules recorded with an older model, or a custom ``--rules`` file, may predate a check
    (``degenerate-volume`` came later): without this, such a file would clear a blank
    export.
    """
    import dataclasses

    from triage.route.rules import create_rule

    kinds = {r.kind for r in ruleset.rules}
    missing = [(kind, options) for kind, options in SAFETY_RULES if kind not in kinds]
    if not missing:
        return ruleset
    rules = list(ruleset.rules)
    for kind, options in missing:
        rule = create_rule(kind, id=f"safety-{kind}", **options)
        at = next((i for i, r in enumerate(rules) if r.stage > rule.stage), len(rules))
        rules.insert(at, rule)
    LOGGER.warning("Rules %s lack %s; added with their default options (never cleared "
                   "without them).", ruleset.full_version,
                   ", ".join(kind for kind, _ in missing))
    return dataclasses.replace(ruleset, rules=tuple(rules),
                               version=f"{ruleset.version}+safety")


class Router:
    """Routes studies by a rules file, certified thresholds and the training devices.

    Evaluation: the rules run in file order. The first rule that fires decides the route.
    A `FAILURE` rule that fires ends evaluation; otherwise every later rule is still
    evaluated, and all fired rule ids and reasons are recorded (so a QC-flagged study
    whose probability is above the urgent threshold records both, and gets priority
    `Priority.SUSPECTED`, as does any review with ``p >= priority.suspect_p``). Because QC
    rules precede score rules (enforced when the file is loaded), a QC warning always
    forces review, even for an urgent-looking study.
    When nothing fires the study goes to review with rule id `NO_RULE_ID`.

    Example:
        >>> router = Router.from_yaml("triage/configs/rules/default.yaml", {}, ["acme"])
        >>> ev = StudyEvidence("1.2.3", "acme", "CT", ingest_ok=False, ingest_reasons="empty")
        >>> router.route(ev).route
        <Route.FAILED: 'failed'>
    """

    def __init__(self, ruleset: RuleSet, thresholds: FittedThresholds | Mapping[str, Any],
                 train_devices: Iterable[str]) -> None:
        """Args:
            ruleset: the parsed rules file.
            thresholds: thresholds fitted under ``ruleset.thresholds``, or their `to_dict`
                form (``ModelBundle.routing``); an empty mapping means none were fitted
                (every study with a score then goes to review as uncertified).
            train_devices: device groups seen in training.

        Raises:
            ConfigError: the thresholds were certified under other settings than the rules
                file states, or their record is invalid.
        """
        if isinstance(thresholds, Mapping):
            thresholds = (FittedThresholds(ruleset.thresholds) if not thresholds
                          else FittedThresholds.from_dict(thresholds))
        if thresholds.config != ruleset.thresholds:
            raise ConfigError(
                f"The routing thresholds were certified with {thresholds.config} but rules "
                f"{ruleset.full_version} states {ruleset.thresholds}; refit the thresholds "
                f"with these settings (triage.route.fit_thresholds) or use the matching "
                f"rules file.")
        self.ruleset = with_safety_rules(ruleset)
        self.context = RuleContext(thresholds, frozenset(str(d) for d in train_devices))

    @classmethod
    def from_yaml(cls, path: Path | str, thresholds: FittedThresholds | Mapping[str, Any],
                  train_devices: Iterable[str]) -> Router:
        """A router for the rules file `path` (see `__init__` for the other arguments).

        Raises:
            ConfigError: invalid rules file or mismatching thresholds.
        """
        return cls(load_rules(path), thresholds, train_devices)

    @property
    def version(self) -> str:
        """``name@version+sha12`` of the rules file (recorded in every worklist row)."""
        return self.ruleset.full_version

    def with_alarms(self, alarms: Mapping[str, Iterable[str]]) -> Router:
        """A router whose ``drift-alarm`` rules see `alarms` (device group -> active alarm
        descriptions; docs/monitoring.md).

        A rules file without a ``drift-alarm`` rule (older files, rules recorded with an
        older model) gets one, id ``drift-alarm``, as its first QC rule whenever an alarm
        is active: an active alarm always stops automatic routing of its device group.
        """
        import copy
        import dataclasses

        from triage.route.rules import create_rule

        active = {str(g): tuple(str(a) for a in v) for g, v in alarms.items() if v}
        ruleset = self.ruleset
        if active and not any(r.kind == "drift-alarm" for r in ruleset.rules):
            rules = list(ruleset.rules)
            at = next((i for i, r in enumerate(rules) if r.stage >= Stage.QC), len(rules))
            rules.insert(at, create_rule("drift-alarm", id="drift-alarm"))
            ruleset = dataclasses.replace(ruleset, rules=tuple(rules))
        routed = copy.copy(self)
        routed.ruleset = ruleset
        routed.context = dataclasses.replace(self.context, alarms=active)
        return routed

    @property
    def thresholds(self) -> FittedThresholds:
        """The certified thresholds in use."""
        return self.context.thresholds

    def route(self, evidence: StudyEvidence) -> RouteDecision:
        """Decide the route of one study; never raises for odd evidence."""
        fired: list[tuple[Any, str]] = []
        for rule in self.ruleset.rules:
            reason = rule.check(evidence, self.context)
            if reason is None:
                continue
            fired.append((rule, reason))
            if rule.stage is Stage.FAILURE:
                break
        if not fired:
            priority, why = prioritize(Route.REVIEW, [(NO_RULE_ID, Route.REVIEW)], evidence,
                                       self.ruleset.priority)
            return RouteDecision(Route.REVIEW, int(priority), (NO_RULE_ID,),
                                 ("no rule decided this study",), priority_reason=why)
        route = fired[0][0].route
        priority, why = prioritize(route, [(r.id, r.route) for r, _ in fired], evidence,
                                   self.ruleset.priority)
        return RouteDecision(route, int(priority), tuple(r.id for r, _ in fired),
                             tuple(m for _, m in fired), guarantee=self._guarantee(route,
                                                                                   evidence),
                             priority_reason=why)

    def _guarantee(self, route: Route, evidence: StudyEvidence) -> str:
        """The label of the certificate behind an urgent or routine route."""
        group = self.thresholds.get(evidence.device_group)
        if group is None or route not in (Route.URGENT, Route.ROUTINE):
            return ""
        return group.high_guarantee if route is Route.URGENT else group.low_guarantee


class AlarmWatchingRouter(Router):
    """A `Router` whose drift alarms follow a file that changes while it routes (a
    listener runs for days; `triage monitor` raises and clears alarms meanwhile).

    Before each study it compares `stamp()` (e.g. the alarm file's mtime and size) with
    the last one and, when it changed, reloads the alarms with `load()`
    (`Router.with_alarms`).

    Args:
        router: the rules router.
        load: device group -> active alarm descriptions, read now.
        stamp: a value that changes whenever `load` would return something else.
    """

    def __init__(self, router: Router, load: Callable[[], Mapping[str, Iterable[str]]],
                 stamp: Callable[[], object]) -> None:  # noqa: D107
        self.base, self._load, self._stamp = router, load, stamp
        self._seen: object = object()
        self.ruleset, self.context = router.ruleset, router.context
        self._current: Router = router
        self._refresh()

    @property
    def version(self) -> str:
        return self.base.version

    def _refresh(self) -> None:
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp
            self._current = self.base.with_alarms(self._load())
            self.ruleset, self.context = self._current.ruleset, self._current.context

    def route(self, evidence: StudyEvidence) -> RouteDecision:
        """Route as the rules router with the alarms active now."""
        self._refresh()
        return self._current.route(evidence)
