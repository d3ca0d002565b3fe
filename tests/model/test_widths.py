"""`fit_widths`: a network built from its config takes the widths of pruned weights."""

from __future__ import annotations

import pytest
import torch


def test_fit_widths_rebuilds_a_narrowed_network_from_its_weights():
    from triage.model import create_model
    from triage.model.config import ModelConfig
    from triage.model.widths import fit_widths

    config = ModelConfig("blob-fcn", {"channels": [8, 4], "strides": [1, 1], "pool": "maxavg",
                                      "context": None})
    narrow = ModelConfig("blob-fcn", {"channels": [5, 3], "strides": [1, 1],
                                      "pool": "maxavg", "context": None})
    source = create_model(narrow, (8, 8, 8), seed=1).eval()
    model = fit_widths(create_model(config, (8, 8, 8)), source.state_dict())
    model.load_state_dict(source.state_dict())
    x = torch.randn(2, 1, 8, 8, 8)
    torch.testing.assert_close(model.eval()(x), source(x))
    assert model.features[0].out_channels == 5 and model.head.in_features == 6


def test_fit_widths_refuses_weights_of_another_kernel():
    from triage.model import create_model
    from triage.model.config import ModelConfig
    from triage.model.widths import fit_widths

    model = create_model(ModelConfig("blob-fcn", {"context": None}), (8, 8, 8))
    state = model.state_dict()
    state["features.0.weight"] = torch.zeros(16, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="do not fit .* by width alone"):
        fit_widths(model, state)
