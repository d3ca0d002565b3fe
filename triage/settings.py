"""Typed settings from YAML mappings: unknown keys are rejected with a suggestion."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
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
            import difflib  # only for this message

            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown {what} '{key}' in {source}.{hint} "
                              f"Known options: {', '.join(known)}.")


def non_finite(value: Any, key: str) -> Iterator[tuple[str, float]]:
    """(key path, value) of every NaN or infinite number in `value`, lists and mappings
    included, e.g. ``("alpha[1]", nan)``; booleans and integers are always finite."""
    if isinstance(value, float) and not math.isfinite(value):
        yield key, value
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from non_finite(item, f"{key}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from non_finite(item, f"{key}[{i}]")


def check_finite(data: Mapping[str, Any], what: str, source: str) -> None:
    """Raise `ConfigError` for the first NaN or infinite number among the values of `data`.

    YAML reads ``.nan`` and ``.inf`` as floats, and every comparison with NaN is False, so
    a range check such as ``gap_factor <= 1`` lets NaN through; no setting means either.

    Example:
        >>> check_finite({"gap_factor": float("nan")}, "load option", "x.yaml")
        Traceback (most recent call last):
        ...
        triage.errors.ConfigError: x.yaml: load option 'gap_factor' is nan; it must be a ...
    """
    for key, value in data.items():
        for path, bad in non_finite(value, str(key)):
            raise ConfigError(f"{source}: {what} '{path}' is {bad}; it must be a finite "
                              f"number (NaN and infinity are not settings).")


def require_finite(instance: Any, error: type[Exception] = ValueError) -> None:
    """Raise `error` naming the first field of the dataclass `instance` that holds a NaN
    or infinite number; for `__post_init__` of settings built without a mapping."""
    name = type(instance).__name__
    for f in dataclasses.fields(instance):
        for path, bad in non_finite(getattr(instance, f.name), f.name):
            raise error(f"{name}.{path} is {bad}; it must be a finite number.")


def dataclass_from_mapping(cls: type[T], data: Mapping[str, Any] | None, *, what: str,
                           source: str) -> T:
    """Build the frozen dataclass `cls` from `data`; lists become tuples.

    Raises:
        ConfigError: for an unknown key, a NaN or infinite number, or a value the
            dataclass rejects.
    """
    data = {} if data is None else data
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(data, known, what, source)
    check_finite(data, what, source)
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
        # libyaml's parser where PyYAML has it (about 10x faster; the same safe subset)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    except OSError as err:
        raise ConfigError(f"Cannot read {what} {path}: {err.strerror}.") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{what.capitalize()} {path} is not valid YAML: "
                          f"{_yaml_problem(err)}.") from err


def _yaml_problem(err: Exception) -> str:
    """Where and what, in one line: ``line 2, column 1: did not find expected ',' or ']'``
    (the parser's own text spans four lines and names ``<unicode string>``)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None)
    text = " ".join(str(problem or err).split()).rstrip(".")
    if mark is None:
        return text
    return f"line {mark.line + 1}, column {mark.column + 1}: {text}"
