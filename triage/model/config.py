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
