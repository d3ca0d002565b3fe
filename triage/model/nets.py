"""The built-in networks: MONAI 3-D classifiers with one input channel and two logits.

Measured costs and the choice of the default are in docs/training.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from triage.model.registry import NUM_CLASSES, register_model

Shape = tuple[int, int, int]


@register_model("densenet121")
def densenet121(in_shape: Shape, dropout_prob: float = 0.0) -> torch.nn.Module:
    """MONAI DenseNet121 (init 64, growth 32, blocks 6-12-24-16); ~11 M parameters."""
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES,
                       dropout_prob=float(dropout_prob))


@register_model("densenet-small")
def densenet_small(in_shape: Shape, init_features: int = 16, growth_rate: int = 8,
                   block_config: Sequence[int] = (2, 4, 6, 4), bn_size: int = 4,
                   dropout_prob: float = 0.0) -> torch.nn.Module:
    """MONAI DenseNet narrowed for CPU training (init 16, growth 8, blocks 2-4-6-4)."""
    from monai.networks.nets import DenseNet

    return DenseNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES,
                    init_features=int(init_features), growth_rate=int(growth_rate),
                    block_config=tuple(int(b) for b in block_config), bn_size=int(bn_size),
                    dropout_prob=float(dropout_prob))


def _resnet(factory: str, widen_factor: float, conv1_t_size: int, conv1_t_stride: int,
            no_max_pool: bool, shortcut_type: str) -> torch.nn.Module:
    from monai.networks.nets import resnet

    return getattr(resnet, factory)(
        spatial_dims=3, n_input_channels=1, num_classes=NUM_CLASSES,
        widen_factor=float(widen_factor), conv1_t_size=int(conv1_t_size),
        conv1_t_stride=int(conv1_t_stride), no_max_pool=bool(no_max_pool),
        shortcut_type=str(shortcut_type))


@register_model("resnet10")
def resnet10(in_shape: Shape, widen_factor: float = 1.0, conv1_t_size: int = 7,
             conv1_t_stride: int = 2, no_max_pool: bool = False,
             shortcut_type: str = "B") -> torch.nn.Module:
    """MONAI ResNet-10 (basic blocks 1-1-1-1, widths 64..512 x widen_factor)."""
    return _resnet("resnet10", widen_factor, conv1_t_size, conv1_t_stride, no_max_pool,
                   shortcut_type)


@register_model("resnet18")
def resnet18(in_shape: Shape, widen_factor: float = 1.0, conv1_t_size: int = 7,
             conv1_t_stride: int = 2, no_max_pool: bool = False,
             shortcut_type: str = "B") -> torch.nn.Module:
    """MONAI ResNet-18 (basic blocks 2-2-2-2, widths 64..512 x widen_factor)."""
    return _resnet("resnet18", widen_factor, conv1_t_size, conv1_t_stride, no_max_pool,
                   shortcut_type)


@register_model("cnn-small")
def cnn_small(in_shape: Shape, channels: Sequence[int] = (8, 16, 32, 64),
              strides: Sequence[int] = (2, 2, 2, 2), num_res_units: int = 1,
              dropout: float = 0.0) -> torch.nn.Module:
    """MONAI Classifier: strided residual conv units, then a linear layer on the last map."""
    from monai.networks.nets import Classifier

    return Classifier(in_shape=(1, *in_shape), classes=NUM_CLASSES,
                      channels=tuple(int(c) for c in channels),
                      strides=tuple(int(s) for s in strides), num_res_units=int(num_res_units),
                      dropout=float(dropout) or None)
