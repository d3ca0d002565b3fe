"""Which torch device a run uses: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import logging

import torch

from triage.errors import ConfigError
from triage.train.config import DEVICES

log = logging.getLogger(__name__)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(name: str) -> torch.device:
    """The torch device for ``runtime.device``.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``mps``.

    Returns:
        ``auto``: CUDA when available, else MPS when available, else CPU; an explicit
        name: that device.

    Raises:
        ConfigError: an unknown name, or an explicit device this machine does not have.

    Example:
        >>> select_device("cpu")
        device(type='cpu')
    """
    if name not in DEVICES:
        raise ConfigError(f"Unknown device '{name}' (runtime.device); expected one of "
                          f"{', '.join(DEVICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif _mps_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        log.info("runtime.device auto: training on %s.", device)
        return device
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not available[name]:
        raise ConfigError(f"runtime.device is '{name}' but this machine has no usable "
                          f"{name.upper()} device (torch {torch.__version__}); set "
                          f"runtime.device to 'auto' or 'cpu'.")
    return torch.device(name)
