"""Learnable multi-scale fusion: features of several scales, mixed with softmax weights.

`ScaleFusion` takes one feature vector per scale (each projected to a common width) and
returns ``F = sum_i softmax(w)_i F_i`` with learnable logits ``w`` (initialized to 0: equal
weights). The ``fusion-cnn`` network feeds it the globally average-pooled maps of every stage
of a strided convolutional encoder (full, 1/2, 1/4, ... resolution), so the classifier can
learn how much small-scale detail and large-scale context to use. The weights are reported by
`ScaleFusion.tracked_metrics`, which the training loop logs to MLflow every epoch
(``model.fusion.weight.<scale>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from triage.model.registry import NUM_CLASSES, register_model

Shape = tuple[int, int, int]
MIN_SCALES = 3


class ScaleFusion(nn.Module):
    """``F = sum_i softmax(w)_i * proj_i(x_i)`` over ``len(in_features)`` scales.

    Args:
        in_features: width of each scale's feature vector.
        out_features: the common width after each scale's linear projection.

    Example:
        >>> fusion = ScaleFusion([4, 8, 16], 6)
        >>> fusion([torch.zeros(2, 4), torch.zeros(2, 8), torch.zeros(2, 16)]).shape
        torch.Size([2, 6])
        >>> [round(v, 3) for v in fusion.weights().tolist()]
        [0.333, 0.333, 0.333]
    """

    def __init__(self, in_features: Sequence[int], out_features: int) -> None:
        super().__init__()
        if len(in_features) < MIN_SCALES:
            raise ValueError(f"multi-scale fusion needs at least {MIN_SCALES} scales, got "
                             f"{len(in_features)}")
        self.projections = nn.ModuleList(nn.Linear(int(c), int(out_features))
                                         for c in in_features)
        self.logits = nn.Parameter(torch.zeros(len(in_features)))

    def weights(self) -> torch.Tensor:
        """The softmax-normalized scale weights (they sum to 1)."""
        return torch.softmax(self.logits, 0)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.projections):
            raise ValueError(f"ScaleFusion got {len(features)} scales, built for "
                             f"{len(self.projections)}")
        w = self.weights()
        projected = torch.stack([p(f) for p, f in zip(self.projections, features,
                                                      strict=True)], 0)
        return (w.view(-1, 1, 1) * projected).sum(0)

    def tracked_metrics(self) -> dict[str, float]:
        """``weight.<scale>`` -> the current softmax weight (scale 0 = finest)."""
        return {f"weight.{i}": float(v) for i, v in enumerate(self.weights().detach())}


class FusionCNN(nn.Module):
    """Strided conv encoder; every stage's pooled features fused by `ScaleFusion`."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], width: int,
                 dropout: float) -> None:
        super().__init__()
        stages, c_in = [], 1
        for c_out, stride in zip(channels, strides, strict=True):
            stages.append(nn.Sequential(
                nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm3d(c_out), nn.ReLU(inplace=True),
                nn.Conv3d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.fusion = ScaleFusion(list(channels), width)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout) if dropout else nn.Identity(),
                                  nn.Linear(width, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x.mean(dim=(2, 3, 4)))
        return self.head(self.fusion(pooled))


@register_model("fusion-cnn")
def fusion_cnn(in_shape: Shape, channels: Sequence[int] = (8, 16, 32, 64),
               strides: Sequence[int] = (1, 2, 2, 2), width: int = 32,
               dropout: float = 0.0) -> torch.nn.Module:
    """Conv encoder whose stages (>= 3 scales) are fused with learnable softmax weights."""
    if len(channels) != len(strides):
        raise ValueError("fusion-cnn: channels and strides must have the same length")
    return FusionCNN([int(c) for c in channels], [int(s) for s in strides], int(width),
                     float(dropout))
