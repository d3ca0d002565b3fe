"""MLflow experiment names, checked before any work and without contacting the server."""

from __future__ import annotations

from triage.errors import ConfigError

#: MLflow's limit (``mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH``).
MAX_EXPERIMENT_NAME_LENGTH = 500


def check_experiment_name(name: object, option: str) -> str:
    """Return `name` if MLflow accepts it as an experiment name, else raise.

    MLflow refuses an empty name and one over 500 characters only when the run is logged,
    that is after the work; a name of blanks it takes, but it is a mistake too.

    Args:
        name: the experiment name.
        option: what set it, for the message (``--experiment``, ``runtime.experiment``).

    Raises:
        ConfigError: not a string, empty or blank, or longer than 500 characters.

    Example:
        >>> check_experiment_name("triage-runs", "--experiment")
        'triage-runs'
        >>> check_experiment_name(" ", "--experiment")
        Traceback (most recent call last):
        ...
        triage.errors.ConfigError: --experiment ' ' is not an MLflow experiment name: ...
    """
    if not isinstance(name, str):
        raise ConfigError(f"{option} must be a text MLflow experiment name, got "
                          f"{type(name).__name__} {name!r}.")
    if not name.strip():
        raise ConfigError(f"{option} {name!r} is not an MLflow experiment name: it is "
                          f"empty; give a name such as 'triage-runs'.")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise ConfigError(f"{option} is {len(name)} characters long; MLflow experiment "
                          f"names have at most {MAX_EXPERIMENT_NAME_LENGTH}.")
    return name
