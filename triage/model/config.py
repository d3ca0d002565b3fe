"""`ModelConfig`: which network to build, and its builder options.

It lives with the network registry (`triage.model.create_model`) so that everything that
builds a network - training, the model bundle, inference - depends on `triage.model`,
never on `triage.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triage.errors import ConfigError

#: The device names `triage.model.device.select_device` accepts besides ``cuda:N``.
DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device_name(name: str, *, option: str = "runtime.device") -> tuple[str, str]:
    """`name` split into its kind and index (``"cuda:1"`` -> ``("cuda", "1")``), without
    importing torch or asking the machine what it has (`triage.model.device.select_device`
    does that where the model runs).

    Raises:
        ConfigError: not one of `DEVICES` or ``cuda:N``; `option` names the setting.

    Example:
        >>> check_device_name("cuda:1")
        ('cuda', '1')
    """
    kind, _, index = str(name).partition(":")
    if kind not in DEVICES or index and (kind != "cuda" or not index.isdigit()):
        raise ConfigError(f"Unknown device '{name}' ({option}); expected one of "
                          f"{', '.join(DEVICES)} or cuda:N.")
    return kind, index


@dataclass(frozen=True)
class ModelConfig:
    """The network (`triage.model.create_model`).

    Attributes:
        name: a registered network name (``triage.model.list_models()``).
        options: keyword arguments for that network's builder (e.g. widths).

    Example:
        >>> ModelConfig("cnn-small", {"width": 8}).name
        'cnn-small'
    """

    name: str = "densenet-small"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name):
            raise ConfigError(f"Train option 'model.name' is {self.name!r}; expected a "
                              "registered network name.")
        if not isinstance(self.options, dict):
            raise ConfigError(f"Train option 'model.options' is {self.options!r}; expected a "
                              "mapping of builder arguments.")
