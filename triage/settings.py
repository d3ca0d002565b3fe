"""Typed settings from YAML mappings: unknown keys are rejected with a suggestion."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from triage.errors import ConfigError

T = TypeVar("T")


def check_keys(data: Mapping[str, Any], known: list[str], what: str, source: str) -> None:
    """Raise `ConfigError` for the first key of `data` not in `known`, with a suggestion.

    Example:
        >>> check_keys({"min_slice": 3}, ["min_slices"], "option", "x.yaml")
        Traceback (most recent call last):
        ...
        triage.errors.ConfigError: Unknown option 'min_slice' in x.yaml. Did you mean ...
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {what}s must be a mapping of option: value, "
                          f"got {type(data).__name__}.")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown {what} '{key}' in {source}.{hint} "
                              f"Known options: {', '.join(known)}.")


def dataclass_from_mapping(cls: type[T], data: Mapping[str, Any] | None, *, what: str,
                           source: str) -> T:
    """Build the frozen dataclass `cls` from `data`; lists become tuples.

    Raises:
        ConfigError: for an unknown key or a value the dataclass rejects.
    """
    data = {} if data is None else data
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(data, known, what, source)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: invalid {what}: {err}") from err


def load_yaml(path: Path | str, what: str) -> Any:
    """Parse the YAML file `path`; `what` names it in errors (e.g. "ingest config").

    Raises:
        ConfigError: when the file cannot be read or is not valid YAML.
    """
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"Cannot read {what} {path}: {err.strerror}.") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{what.capitalize()} {path} is not valid YAML: {err}") from err
