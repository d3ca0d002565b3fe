"""The shipped pipeline configurations (YAML), found through importlib.resources.

``<kind>/default.yaml`` holds the defaults each command uses without ``--config``; the
other names are named pipelines (``ingest/synthetic.yaml``, ``train/quality.yaml``, ...).
They are package data, so an installed wheel finds them wherever it runs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def config_path(kind: str, name: str = "default") -> Path:
    """The file of the shipped pipeline config `kind`/`name`.yaml.

    Example:
        >>> config_path("ingest").name
        'default.yaml'
    """
    path = Path(str(files(__name__).joinpath(kind, f"{name}.yaml")))
    if not path.is_file():
        raise FileNotFoundError(f"No shipped pipeline config {kind}/{name}.yaml in {path.parent}.")
    return path
