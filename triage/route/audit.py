"""Random audit: a seeded fraction of the auto-routed studies goes to review instead.

Reviewed studies are not a random sample: readers see what the rules could not decide.
To know how the model does on the studies it routes ``urgent`` or ``routine`` by itself,
`AuditedRouter` sends a fraction F of them to ``review`` with the rule id `AUDIT_RULE_ID`.

The choice is a pure function of the study UID and a seed (`audit_draw`, a SHA-256 hash
mapped to [0, 1)), never of the image, the score or the label, and never of the order the
studies are processed: a resumed run makes the same choices, and the audited studies are
a uniform (Poisson) sample of the auto-routed ones with inclusion probability exactly F.
The same draw also says which *review-routed* studies belong to the calibration sample
(``draw < F``, `triage.feedback.sample`), which makes the union a uniform sample of every
study that reached the score rules (docs/calibration.md, "Recalibration from review
feedback").

The fraction and the seed are part of the rules version the rows record
(``<rules version>+audit=<F>:seed=<S>``), so the journal refuses to resume a run with
other audit settings, and the label store knows each run's sampling design.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from triage.errors import ConfigError
from triage.route.router import Router
from triage.route.types import Priority, Route, RouteDecision, StudyEvidence

#: Rule id of an audited study (first in ``rule_ids``; the rules that would have decided
#: follow it).
AUDIT_RULE_ID = "audit"
_AUTO_ROUTES = (Route.URGENT, Route.ROUTINE)
_SUFFIX = re.compile(r"^(?P<rules>.+)\+audit=(?P<fraction>[0-9.eE+-]+):seed=(?P<seed>-?\d+)$")


def audit_draw(study_uid: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the study UID and the seed.

    Example:
        >>> audit_draw("1.2.3", 0) == audit_draw("1.2.3", 0) != audit_draw("1.2.3", 1)
        True
    """
    digest = hashlib.sha256(f"triage-audit:{int(seed)}:{study_uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def check_fraction(fraction: float) -> float:
    """`fraction` as a float in [0, 1].

    Raises:
        ConfigError: not a number in [0, 1].
    """
    try:
        value = float(fraction)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"The audit fraction must be a number in [0, 1], got "
                          f"{fraction!r}.") from err
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"The audit fraction must be a number in [0, 1] (e.g. 0.05 for "
                          f"5 %), got {fraction!r}.")
    return value


def in_sample(study_uid: str, fraction: float, seed: int) -> bool:
    """True when the study's draw falls below `fraction` (audited, if auto-routed)."""
    return fraction > 0 and audit_draw(study_uid, seed) < fraction


@dataclass(frozen=True)
class AuditDesign:
    """How a run sampled studies for audit.

    Attributes:
        rules_version: the rules version without the audit suffix.
        fraction: the audit fraction F (0: no audit).
        seed: the seed of `audit_draw`.
    """

    rules_version: str
    fraction: float = 0.0
    seed: int = 0

    @property
    def version(self) -> str:
        """What the worklist rows record as ``rules_version``."""
        if self.fraction <= 0:
            return self.rules_version
        return f"{self.rules_version}+audit={self.fraction:g}:seed={self.seed}"

    @classmethod
    def parse(cls, recorded: str) -> AuditDesign:
        """The design a row's ``rules_version`` records (no suffix: no audit).

        Example:
            >>> AuditDesign.parse("default@1+abc+audit=0.1:seed=7")
            AuditDesign(rules_version='default@1+abc', fraction=0.1, seed=7)
        """
        match = _SUFFIX.match(recorded)
        if match is None:
            return cls(recorded)
        return cls(match["rules"], check_fraction(match["fraction"]), int(match["seed"]))


class AuditedRouter(Router):
    """A `Router` that sends a seeded fraction of its urgent/routine decisions to review.

    Args:
        router: the rules.
        fraction: F in [0, 1]; 0 changes nothing (and the rules version stays as it is).
        seed: the seed of the draw.

    Raises:
        ConfigError: F outside [0, 1].
    """

    def __init__(self, router: Router, fraction: float, seed: int = 0) -> None:  # noqa: D107
        # Shares the wrapped router's rules and thresholds (no second validation).
        self.ruleset, self.context = router.ruleset, router.context
        self.rules_router = router
        self.design = AuditDesign(router.version, check_fraction(fraction), int(seed))

    @property
    def version(self) -> str:
        """The rules version plus ``+audit=F:seed=S`` when F > 0."""
        return self.design.version

    def with_alarms(self, alarms: Mapping[str, Iterable[str]]) -> AuditedRouter:
        """The same audit around the rules router with `alarms` (`Router.with_alarms`)."""
        return AuditedRouter(self.rules_router.with_alarms(alarms), self.design.fraction,
                             self.design.seed)

    def route(self, evidence: StudyEvidence) -> RouteDecision:
        """The rules' decision, or review with reason "random audit" for a sampled
        urgent/routine study (the rules that decided it are kept after the audit)."""
        decision = self.rules_router.route(evidence)
        design = self.design
        if decision.route not in _AUTO_ROUTES or not in_sample(evidence.study_uid,
                                                                design.fraction, design.seed):
            return decision
        priority = Priority.URGENT_REVIEW if decision.route is Route.URGENT else Priority.REVIEW
        reason = (f"random audit: {design.fraction:g} of the studies the rules would route "
                  f"{decision.route} are read by a reviewer (seed {design.seed})")
        return RouteDecision(Route.REVIEW, int(priority), (AUDIT_RULE_ID, *decision.rule_ids),
                             (reason, *decision.reasons))


def with_audit(router: Router, fraction: float, seed: int = 0) -> Router | AuditedRouter:
    """`router` itself when `fraction` is 0, else an `AuditedRouter` around it."""
    if check_fraction(fraction) == 0:
        return router
    return AuditedRouter(router, fraction, seed)
