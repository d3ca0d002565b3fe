"""Training checkpoints: written atomically, read back with ``torch.load(weights_only=True)``.

A checkpoint is a plain mapping of tensors, numbers, strings, lists and dicts (no pickled
objects), so loading one never runs code. `rng_state` / `restore_rng_state` turn the
Python, NumPy and torch generator states into that form and back.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from triage.errors import TriageError
from triage.io import atomic_open

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(TriageError):
    """A checkpoint file is missing, damaged, or does not belong to this run."""


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically (a reader sees the old or the new file).

    Args:
        path: the checkpoint file.
        state: tensors, numbers, strings and (nested) lists/dicts of them only.

    Returns:
        `path`.
    """
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save({"format_version": FORMAT_VERSION, **state}, fh)
    return path


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, tensors on the CPU.

    Raises:
        CheckpointError: the file is missing or is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError,
            ValueError) as err:
        raise CheckpointError(f"{path} is not a readable training checkpoint ({err}); "
                              f"delete it or use a fresh output folder.") from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a triage training checkpoint of format "
                              f"version {FORMAT_VERSION}; use a fresh output folder.")
    return state


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU and CUDA) generator states as tensors and numbers."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the generators to a state from `rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()),
                     py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
