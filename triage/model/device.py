"""Which torch device a run uses: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import logging

import torch

from triage.errors import ConfigError
from triage.model.config import check_device_name

log = logging.getLogger(__name__)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(name: str, *, option: str = "runtime.device") -> torch.device:
    """The torch device called `name`, checked against this machine.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        option: the setting `name` came from, for the error message (``--device`` for
            `triage run`).

    Returns:
        ``auto``: CUDA when available, else MPS when available, else CPU; an explicit
        name: that device.

    Raises:
        ConfigError: an unknown name, or an explicit device this machine does not have.

    Example:
        >>> select_device("cpu")
        device(type='cpu')
    """
    kind, index = check_device_name(name, option=option)
    if kind == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif _mps_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        log.info("%s auto: using %s.", option, device)
        return device
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not available[kind]:
        raise ConfigError(f"{option} is '{name}' but this machine has no usable "
                          f"{kind.upper()} device (torch {torch.__version__}); use "
                          f"'auto' or 'cpu'.")
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"{option} is '{name}' but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s), numbered from 0.")
    return torch.device(name)
