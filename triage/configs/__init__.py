"""The shipped pipeline configurations (YAML), package data next to this module.

``<kind>/default.yaml`` holds the defaults each command uses without ``--config``; the
other names are named pipelines (``ingest/synthetic.yaml``, ``train/quality.yaml``, ...).
They are package data, so an installed wheel finds them wherever it runs. They are read as
files on disk, so they are found beside this module's file (what
``importlib.resources.files`` gives for a package on disk, without importing it: ~20 ms
of every command's start-up).
"""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).parent


def config_path(kind: str, name: str = "default") -> Path:
    """The file of the shipped pipeline config `kind`/`name`.yaml.

    Example:
        >>> config_path("ingest").name
        'default.yaml'
    """
    path = _ROOT / kind / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"No shipped pipeline config {kind}/{name}.yaml in {path.parent}.")
    return path
