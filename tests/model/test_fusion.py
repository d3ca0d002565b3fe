"""Learnable multi-scale fusion: softmax weights that sum to 1, learn, and are reported."""

from __future__ import annotations

import pytest
import torch

from triage.errors import ConfigError
from triage.model import create_model
from triage.model.fusion import ScaleFusion
from triage.train.config import ModelConfig

TINY = ModelConfig("fusion-cnn", {"channels": [4, 4, 8], "strides": [1, 2, 2], "width": 8})


def test_fusion_is_a_softmax_weighted_sum():
    fusion = ScaleFusion([2, 3, 4], 5)
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    w = fusion.weights().detach()
    assert float(w.sum()) == pytest.approx(1.0) and (w > 0).all()
    features = [torch.randn(6, c) for c in (2, 3, 4)]
    with torch.no_grad():
        expected = sum(w[i] * fusion.projections[i](f) for i, f in enumerate(features))
        torch.testing.assert_close(fusion(features), expected)
    assert list(fusion.tracked_metrics()) == ["weight.0", "weight.1", "weight.2"]
    assert sum(fusion.tracked_metrics().values()) == pytest.approx(1.0)


def test_fewer_than_three_scales_are_refused():
    with pytest.raises(ValueError, match="at least 3 scales"):
        ScaleFusion([2, 3], 4)
    with pytest.raises(ConfigError, match="at least 3 scales"):
        create_model(ModelConfig("fusion-cnn", {"channels": [4, 8], "strides": [1, 2]}),
                     (24, 24, 12))
