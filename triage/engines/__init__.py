"""Engines that run the per-study path: ``local`` (a process pool) and ``ray`` (a cluster).

`create_engine` builds one by name; an unknown name, or ``ray`` without Ray installed, is a
`triage.errors.ConfigError` that lists the choices (see `triage.engines.base.Engine`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from triage.engines.base import Engine, Scored, TriageJob
from triage.errors import ConfigError

__all__ = ["ENGINES", "Engine", "Scored", "TriageJob", "create_engine"]

# name -> (module, class): modules import only when chosen (Ray is an optional extra).
ENGINES = {"local": ("triage.engines.local", "LocalEngine"),
           "ray": ("triage.engines.ray", "RayEngine")}
INSTALL_HINT = {"ray": "pip install 'triage[ray]'"}


def _engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        import difflib  # only for this message

        close = difflib.get_close_matches(name, ENGINES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown engine '{name}'; choose one of "
                          f"{', '.join(sorted(ENGINES))}.{hint}")
    module, attr = ENGINES[name]
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise ConfigError(f"The {name} engine needs packages that are not installed "
                          f"({err.name}); install them with {INSTALL_HINT.get(name, '?')}."
                          ) from err
    if not cls.is_available():
        raise ConfigError(f"The {name} engine is not available here; install it with "
                          f"{INSTALL_HINT.get(name, '?')}.")
    return cls


def create_engine(name: str = "local", *, workers: int | None = None,
                  ray_address: str | None = None) -> Engine:
    """The engine called `name`.

    Args:
        name: ``local`` or ``ray``.
        workers: local ingest processes (``local``; for ``ray`` the driver's scan).
        ray_address: ``auto`` or ``ray://HOST:PORT`` to join a running Ray cluster; None
            starts a local Ray instance with this machine's cores (``ray`` only).

    Raises:
        ConfigError: an unknown name, a missing package, a bad address, or an address for
            an engine other than ``ray``.
    """
    cls: Callable[..., Engine] = _engine_class(name)
    if name == "ray":
        return cls(workers=workers, address=ray_address)
    if ray_address:
        raise ConfigError(f"--ray-address {ray_address} needs --engine ray (got --engine "
                          f"{name}).")
    return cls(workers=workers)
