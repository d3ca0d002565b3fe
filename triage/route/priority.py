"""Reading priority (CADt-style): suspected positives first, even on an uncertified device.

`prioritize` maps a decided route, the rules that fired and the calibrated probability to
a `Priority` and one plain-language sentence (the worklist's ``priority_reason``). The
scale is documented in docs/rules.md ("Priority").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from triage.route.types import Priority, Route, StudyEvidence
from triage.settings import dataclass_from_mapping


@dataclass(frozen=True)
class PrioritySettings:
    """The ``priority:`` section of a rules file.

    Attributes:
        suspect_p: a `review` study whose calibrated probability is at least this is a
            suspected positive (priority 2), whatever its device's certification; None
            turns this off (then only a score at or above a certified urgent threshold
            raises a review to priority 2). Not a certified quantity: it orders reading,
            it does not route.

    Raises:
        ValueError: `suspect_p` is not a probability in (0, 1].
    """

    suspect_p: float | None = 0.5

    def __post_init__(self) -> None:
        value = self.suspect_p
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0.0 < value <= 1.0:
            raise ValueError(f"priority.suspect_p must be a probability in (0, 1] or null, "
                             f"got {value!r}.")
        object.__setattr__(self, "suspect_p", float(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *,
                  source: str = "priority") -> PrioritySettings:
        """Build from a mapping; unknown keys are rejected with a suggestion.

        Raises:
            ConfigError: unknown key or invalid value.
        """
        return dataclass_from_mapping(cls, data, what="priority option", source=source)


def prioritize(route: Route, fired: Sequence[tuple[str, Route]], evidence: StudyEvidence,
               settings: PrioritySettings) -> tuple[Priority, str]:
    """The priority of a decided study and why, in plain words.

    Args:
        route: the decided route.
        fired: ``(rule id, rule route)`` of every rule that fired, the deciding one first.
        evidence: the study (for its probability).
        settings: the rules file's priority settings.

    Example:
        >>> ev = StudyEvidence("1.2", "tiny", "CT", ingest_ok=True, p_calibrated=0.8)
        >>> prioritize(Route.REVIEW, [("uncertified-device", Route.REVIEW)], ev,
        ...            PrioritySettings())[0]
        <Priority.SUSPECTED: 2>
    """
    p = evidence.p_calibrated if evidence.has_score else None
    shown = f"p={p:.3g}" if p is not None else "no probability"
    if route is Route.URGENT:
        return Priority.URGENT, f"read first: likely finding above the certified urgent " \
                                f"threshold ({shown})"
    if route is Route.ROUTINE:
        return Priority.ROUTINE, f"read last: below the certified routine threshold ({shown})"
    if route is Route.FAILED:
        return Priority.FAILED, ("no usable model output: read without help; a re-export "
                                 "may be needed")
    decider = fired[0][0] if fired else "no rule"
    if any(rule_route is Route.URGENT for _, rule_route in fired[1:]):
        return Priority.SUSPECTED, (f"suspected finding: {shown} is at or above the certified "
                                    f"urgent threshold, but '{decider}' sent it to review")
    cut = settings.suspect_p
    if p is not None and cut is not None and not math.isnan(p) and p >= cut:
        return Priority.SUSPECTED, (f"suspected finding: {shown} >= {cut:g}, in review by "
                                    f"'{decider}'; read before other reviews")
    if p is None:
        return Priority.REVIEW, f"needs a reader ('{decider}'); no usable probability"
    below = f" < {cut:g}" if cut is not None else ""
    return Priority.REVIEW, (f"needs a reader ('{decider}'); no suspected finding "
                             f"({shown}{below})")
