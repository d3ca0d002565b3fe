"""The alarm state: a small JSON file that `triage monitor` writes and `triage run` reads.

An alarm names a device group, the statistic and rule that fired, when, and why. While an
alarm is active (raised, not cleared), `triage run --alarms FILE` routes every study of its
device group to review through the ``drift-alarm`` rule kind (`triage.route.drift_alarm`),
with the alarm named in the reason. `triage monitor clear` clears alarms (all, or of one
device group, or one id) and records who cleared them and when; a cleared alarm restarts its
detector: only runs finished after the clear count for it (docs/monitoring.md).

The file holds device groups, statistic names and numbers only, no study identifier::

    {"format": 1, "alarms": [{"id": "score-cusum:acme", "device_group": "acme", ...}]}

Writes are atomic (a reader sees the old file or the new one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage.errors import ConfigError
from triage.io import atomic_write_text

ALARMS_FORMAT = 1
#: Environment variable `triage run` and `triage monitor` read when --alarms is not given.
ALARMS_ENV = "TRIAGE_ALARMS"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Alarm:
    """One alarm.

    Attributes:
        id: ``<statistic>-<rule>:<device group>``; at most one active alarm per id.
        device_group: the device group whose studies the stop-rule sends to review.
        statistic: ``score``, ``input`` (input distance), ``sensitivity`` or ``ppv``.
        rule: ``cusum`` or ``drop``.
        detail: one sentence: what was seen (value, threshold, where in the stream).
        raised_utc: when `triage monitor` raised it.
        evidence_utc: when the run in which the rule fired finished.
        cleared_utc: when it was cleared (empty while active).
        cleared_by: who cleared it (free text from `triage monitor clear --by`).
    """

    id: str
    device_group: str
    statistic: str
    rule: str
    detail: str
    raised_utc: str
    evidence_utc: str = ""
    cleared_utc: str = ""
    cleared_by: str = ""

    @property
    def active(self) -> bool:
        return not self.cleared_utc

    def describe(self) -> str:
        """What a worklist reason names: the id and the detail."""
        return f"{self.id} ({self.detail})"


def alarm_id(statistic: str, rule: str, device_group: str) -> str:
    """``<statistic>-<rule>:<device group>``.

    Example:
        >>> alarm_id("score", "cusum", "acme")
        'score-cusum:acme'
    """
    return f"{statistic}-{rule}:{device_group}"


@dataclass
class AlarmState:
    """Every alarm ever raised in this file, active and cleared.

    Attributes:
        path: the JSON file (need not exist yet).
        alarms: the alarms in the order they were raised.
    """

    path: Path
    alarms: list[Alarm]

    @classmethod
    def load(cls, path: Path | str) -> AlarmState:
        """Read `path` (an absent file is an empty state).

        Raises:
            ConfigError: the file is not valid alarm JSON.
        """
        path = Path(path)
        if not path.exists():
            return cls(path, [])
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != ALARMS_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {ALARMS_FORMAT}")
            alarms = [Alarm(**item) for item in data["alarms"]]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise ConfigError(f"Alarm file {path} cannot be read ({err}); fix or remove it "
                              f"(removing it clears every alarm).") from err
        return cls(path, alarms)

    def save(self) -> None:
        """Write the state atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {"format": ALARMS_FORMAT,
                                "alarms": [asdict(a) for a in self.alarms]}
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")

    def active(self) -> list[Alarm]:
        return [a for a in self.alarms if a.active]

    def active_by_group(self) -> dict[str, tuple[str, ...]]:
        """Device group -> descriptions of its active alarms (what the stop-rule reads)."""
        out: dict[str, list[str]] = {}
        for alarm in self.active():
            out.setdefault(alarm.device_group, []).append(alarm.describe())
        return {g: tuple(v) for g, v in sorted(out.items())}

    def last_cleared(self, alarm_id_: str) -> str:
        """When alarm `alarm_id_` was last cleared (empty when never)."""
        return max((a.cleared_utc for a in self.alarms if a.id == alarm_id_), default="")

    def raise_alarms(self, alarms: Iterable[Alarm]) -> list[Alarm]:
        """Add the alarms whose id is not already active; return those added."""
        active = {a.id for a in self.active()}
        added = [a for a in alarms if a.id not in active]
        self.alarms.extend(added)
        return added

    def clear(self, *, device_group: str | None = None, alarm: str | None = None,
              by: str = "", at: str | None = None) -> list[Alarm]:
        """Clear the active alarms (of `device_group`, or the one `alarm` id; all when both
        are None); return those cleared."""
        at = at or utc_now()
        cleared = []
        for i, item in enumerate(self.alarms):
            if not item.active or (device_group and item.device_group != device_group) or (
                    alarm and item.id != alarm):
                continue
            self.alarms[i] = replace(item, cleared_utc=at, cleared_by=by)
            cleared.append(self.alarms[i])
        return cleared
