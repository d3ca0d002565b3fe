"""The multi-scale fusion weights under training (tests/model/test_fusion.py: the module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.factories import tiny_config
from triage.model import create_model
from triage.train.loop import fit

TINY = {"name": "fusion-cnn", "options": {"channels": [4, 4, 8], "strides": [1, 2, 2],
                                          "width": 8}}


def test_fusion_weights_learn_and_reach_the_epoch_log(make_dataset, tmp_path):
    config = tiny_config(model=TINY,
                         optim={"epochs": 2, "lr": 0.05})
    model = create_model(config.model, (24, 24, 12), seed=0)
    before = model.fusion.weights().detach().clone()
    train_ds = make_dataset("train")
    counts = np.bincount(train_ds.labels(), minlength=2).tolist()
    result = fit(model, train_ds, None, config, tmp_path, class_counts=counts,
                 progress=False)
    after = model.fusion.weights().detach()
    assert not torch.allclose(before, after)
    assert float(after.sum()) == pytest.approx(1.0)
    for entry in result.history:
        weights = [entry.model[f"fusion.weight.{i}"] for i in range(3)]
        assert sum(weights) == pytest.approx(1.0)
    assert result.history[-1].model["fusion.weight.0"] == pytest.approx(float(after[0]))
