"""Checkpoints: atomic round trip through torch.load(weights_only=True), RNG states."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from triage.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)


def test_round_trip_of_model_optimizer_history_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    state = {"epoch": 2, "fingerprint": "abc", "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "history": [{"epoch": 1, "val": {}}],
             "rng": rng_state()}
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", state)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp left
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2 and loaded["history"] == [{"epoch": 1, "val": {}}]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])


def test_rng_state_restores_python_numpy_and_torch():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    saved = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(saved)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_rng_state_survives_weights_only_loading(tmp_path):
    random.seed(5)
    saved = rng_state()
    save_checkpoint(tmp_path / "c.pt", {"rng": saved})
    expected = random.random()
    random.seed(0)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert random.random() == expected


def test_missing_and_damaged_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable training checkpoint"):
        load_checkpoint(bad)
    torch.save({"epoch": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a triage training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_pickled_objects_are_refused(tmp_path):
    save_checkpoint(tmp_path / "obj.pt", {"thing": Fraction(1, 3)})  # not weights-only
    with pytest.raises(CheckpointError, match="not a readable training checkpoint"):
        load_checkpoint(tmp_path / "obj.pt")
