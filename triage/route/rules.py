"""The rules file language: the `Rule` base, the rule-kind registry, and `load_rules`.

A rules file (``triage/configs/rules/*.yaml``, docs/rules.md) names itself, carries a version,
states how thresholds are certified, and lists rules in evaluation order::

    name: default
    version: "1"
    thresholds: {alpha: 0.01, delta: 0.05, ppv_target: 0.9, min_positives: 299}
    rules:
      - {id: ingest-failed, kind: ingest-failure}
      - {id: qc-slices, kind: min-slices, min_slices: 16}
      ...

Each rule kind is a frozen dataclass registered with `register_rule`; its fields other
than ``id`` are the options a rule of that kind may set.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from triage.configs import config_path
from triage.errors import ConfigError
from triage.route.priority import PrioritySettings
from triage.route.thresholds import FittedThresholds, ThresholdConfig
from triage.route.types import Route, StudyEvidence
from triage.settings import check_keys, dataclass_from_mapping, load_yaml

#: The shipped rules file: what `triage run` and training use when given none.
DEFAULT_RULES = config_path("rules")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TOP_KEYS = ["name", "version", "description", "thresholds", "priority", "rules"]


class Stage(IntEnum):
    """Rule stages; a rules file lists its rules in non-decreasing stage order.

    `FAILURE` rules end evaluation when they fire (there is nothing trustworthy left to
    judge); `QC` rules send a study to review but let later rules add their reasons;
    `SCORE` rules read the calibrated probability and the certified thresholds.
    """

    FAILURE = 0
    QC = 1
    SCORE = 2


@dataclass(frozen=True)
class RuleContext:
    """What rules may consult besides the study: certified thresholds, training devices,
    and the monitoring alarms active per device group (descriptions; docs/monitoring.md)."""

    thresholds: FittedThresholds
    train_devices: frozenset[str]
    alarms: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Rule(ABC):
    """One rule: a kind (class), an `id` (the file's name for it) and the kind's options.

    Subclasses set the class variables `kind`, `route` and `stage`, add their options as
    dataclass fields with defaults, validate them in ``__post_init__`` (raising
    `ValueError`), and implement `check`.
    """

    kind: ClassVar[str]
    route: ClassVar[Route]
    stage: ClassVar[Stage]

    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _NAME.match(self.id):
            raise ValueError(f"rule id must be a word of letters, digits, '.', '_' or '-', "
                             f"got {self.id!r}.")

    @abstractmethod
    def check(self, evidence: StudyEvidence, context: RuleContext) -> str | None:
        """The reason (one sentence, no patient identifiers) if the rule fires, else None."""

    def options(self) -> dict[str, Any]:
        """The rule's options (its fields other than ``id``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "id"}


R = TypeVar("R", bound=type[Rule])
_REGISTRY: dict[str, type[Rule]] = {}


def register_rule(kind: str) -> Callable[[R], R]:
    """Class decorator: register a `Rule` subclass under `kind` (sets ``cls.kind``).

    Raises:
        ValueError: `kind` is already registered.

    Example:
        >>> @register_rule("doc-never")
        ... @dataclass(frozen=True)
        ... class Never(Rule):
        ...     route = Route.REVIEW
        ...     stage = Stage.QC
        ...     def check(self, evidence, context):
        ...         return None
        >>> create_rule("doc-never", id="never").kind
        'doc-never'
        >>> _ = _REGISTRY.pop("doc-never")
    """

    def decorate(cls: R) -> R:
        if kind in _REGISTRY:
            raise ValueError(f"A rule kind named '{kind}' is already registered.")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return decorate


def _load_builtin() -> None:
    import triage.route.drift_alarm  # noqa: F401  (registers the monitoring stop-rule)
    import triage.route.kinds  # noqa: F401  (registers the built-in kinds)


def list_rules() -> list[str]:
    """Names of the registered rule kinds, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def rule_class(kind: str) -> type[Rule]:
    """The class registered as `kind`.

    Raises:
        ConfigError: `kind` is not registered (with the closest match and the valid kinds).
    """
    _load_builtin()
    if kind not in _REGISTRY:
        close = difflib.get_close_matches(str(kind), list(_REGISTRY), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown rule kind '{kind}'.{hint} "
                          f"Valid kinds: {', '.join(list_rules())}.")
    return _REGISTRY[kind]


def create_rule(kind: str, *, source: str = "rules", **options: Any) -> Rule:
    """Build a rule of the registered `kind` with `options` (``id`` is required).

    Raises:
        ConfigError: unknown kind or option (with a suggestion), missing ``id``, or an
            option value the kind rejects.

    Example:
        >>> create_rule("min-slices", id="qc-slices", min_slices=16).route
        <Route.REVIEW: 'review'>
    """
    cls = rule_class(kind)
    where = f"{source} (rule '{options.get('id', '?')}', kind {kind})"
    if "id" not in options:
        raise ConfigError(f"A rule of kind '{kind}' in {source} has no 'id'; give every rule "
                          f"a unique id such as '{kind}'.")
    return dataclass_from_mapping(cls, options, what=f"{kind} option", source=where)


@dataclass(frozen=True)
class RuleSet:
    """A parsed rules file.

    Attributes:
        name: the file's ``name``.
        version: the file's ``version`` (a string).
        thresholds: how routing thresholds are certified (`fit_thresholds` settings).
        rules: the rules in evaluation order.
        digest: sha256 of the file's canonical content (JSON of the parsed YAML with
            sorted keys), so comments and layout do not change it but any value does.
        priority: how review studies are ordered (``priority:``; `PrioritySettings`).
    """

    name: str
    version: str
    thresholds: ThresholdConfig
    rules: tuple[Rule, ...]
    digest: str
    priority: PrioritySettings = PrioritySettings()

    @property
    def full_version(self) -> str:
        """``name@version+sha12``: what every worklist row records as the rules version."""
        return f"{self.name}@{self.version}+{self.digest[:12]}"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "rules") -> RuleSet:
        """Validate a parsed rules file.

        Raises:
            ConfigError: unknown or missing key, bad value, duplicate rule id, or rules
                out of stage order; the message names `source` and the rule.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"Rules file {source} must be a mapping with keys "
                              f"{', '.join(_TOP_KEYS)}; got {type(data).__name__}.")
        check_keys(data, _TOP_KEYS, "key", source)
        for key in ("name", "version", "rules"):
            if key not in data:
                raise ConfigError(f"Rules file {source} lacks '{key}'.")
        name, version = data["name"], data["version"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"Rules file {source}: 'name' must be a word of letters, digits, "
                              f"'.', '_' or '-', got {name!r}.")
        if not isinstance(version, str) or not version.strip():
            raise ConfigError(f"Rules file {source}: 'version' must be a quoted string such as "
                              f"\"1\", got {version!r}.")
        raw_rules = data["rules"]
        if not isinstance(raw_rules, list) or not raw_rules:
            raise ConfigError(f"Rules file {source}: 'rules' must be a non-empty list of "
                              f"rules, got {raw_rules!r}.")
        rules: list[Rule] = []
        for i, raw in enumerate(raw_rules):
            if not isinstance(raw, Mapping) or "kind" not in raw:
                raise ConfigError(f"Rules file {source}: rule {i + 1} must be a mapping with "
                                  f"'id', 'kind' and the kind's options, got {raw!r}.")
            options = {k: v for k, v in raw.items() if k != "kind"}
            rule = create_rule(str(raw["kind"]), source=source, **options)
            if any(r.id == rule.id for r in rules):
                raise ConfigError(f"Rules file {source}: rule id '{rule.id}' is used twice; "
                                  f"ids must be unique.")
            if rules and rule.stage < rules[-1].stage:
                raise ConfigError(
                    f"Rules file {source}: rule '{rule.id}' ({rule.kind}, a {rule.stage.name} "
                    f"rule) comes after '{rules[-1].id}' ({rules[-1].stage.name}); list "
                    f"FAILURE rules first, then QC rules, then SCORE rules.")
            rules.append(rule)
        thresholds = ThresholdConfig.from_dict(data.get("thresholds"),
                                               source=f"{source} (thresholds)")
        priority = PrioritySettings.from_dict(data.get("priority"),
                                              source=f"{source} (priority)")
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                               default=str)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        return cls(name, version.strip(), thresholds, tuple(rules), digest, priority)


def load_rules(path: Path | str) -> RuleSet:
    """Read and validate the rules file `path`.

    Raises:
        ConfigError: the file cannot be read, is not YAML, or is not a valid rules file.
    """
    return RuleSet.from_dict(load_yaml(path, "rules file"), source=str(path))


def recorded_rules(recorded: Mapping[str, Any] | None) -> RuleSet:
    """The rules a model was certified with (``ModelBundle.rules``, the parsed YAML), or the
    shipped default rules for a model that recorded none."""
    if recorded:
        return RuleSet.from_dict(dict(recorded), source="the model's recorded rules")
    return load_rules(DEFAULT_RULES)
