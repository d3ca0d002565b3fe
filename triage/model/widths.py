"""Narrow a freshly built network to the layer widths of a state_dict (pruned networks).

A channel-pruned network (`triage.export.prune`) is the architecture its config
describes with fewer channels in some layers; its bundle keeps the config and the smaller
weights. `fit_widths` rebuilds it: every convolution, normalization and linear layer whose
weights in the state_dict are narrower is resized to them (the forward code of the
built-in networks takes its widths from the layers, never from the config), then the
weights load strictly as usual.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

#: The layer types whose widths `fit_widths` can change.
_CONV = (nn.modules.conv._ConvNd,)
_NORM = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
         nn.GroupNorm, nn.LayerNorm)


def fit_widths(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
               in_shape: tuple[int, int, int] | None = None) -> nn.Module:
    """`model` with its layers resized to the shapes of `state_dict` (in place).

    Args:
        model: a network built from the config the weights were trained with.
        state_dict: its (possibly channel-pruned) weights.
        in_shape: spatial input shape; given, parameter-free normalization layers take
            their widths from one forward pass too (`sync_free_norms`).

    Returns:
        `model`, ready for ``load_state_dict(state_dict)``.

    Raises:
        ValueError: a layer whose weights differ in more than width (kernel size or rank),
            or a layer type this function cannot resize.
    """
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        own = dict(module.named_parameters(recurse=False)) | {
            key: value for key, value in module.named_buffers(recurse=False)
            if value is not None}
        changed = {key: state_dict[prefix + key] for key, value in own.items()
                   if prefix + key in state_dict
                   and tuple(state_dict[prefix + key].shape) != tuple(value.shape)}
        if changed:
            _resize(name, module, changed)
    if in_shape is not None:
        sync_free_norms(model, in_shape)
    return model


def sync_free_norms(model: nn.Module, in_shape: tuple[int, int, int]) -> None:
    """Set ``num_features`` of normalization layers without parameters (MONAI's default
    instance norm) to the width they see in a forward pass of a zero volume: the weights
    do not say it, and torch warns on every call when it is stale."""
    free = [m for m in model.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)
            and m.weight is None and m.running_mean is None]
    if not free:
        return

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        setattr(module, "num_features", int(args[0].shape[1]))  # noqa: B010 - any norm

    handles = [m.register_forward_pre_hook(hook) for m in free]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, 1, *in_shape)))
    finally:
        for handle in handles:
            handle.remove()


def _resize(name: str, module: nn.Module, changed: Mapping[str, torch.Tensor]) -> None:
    for key, target in changed.items():
        current = getattr(module, key)
        if target.dim() != current.dim() or (target.dim() > 2 and
                                             target.shape[2:] != current.shape[2:]):
            raise ValueError(f"Layer {name!r}: weights {key} of shape {tuple(target.shape)} "
                             f"do not fit {tuple(current.shape)} by width alone; the bundle "
                             "was not made from this network.")
        fresh = torch.empty(target.shape, dtype=current.dtype)
        if isinstance(current, nn.Parameter):
            setattr(module, key, nn.Parameter(fresh, requires_grad=current.requires_grad))
        else:
            module.register_buffer(key, fresh)
    if isinstance(module, _CONV):
        weight = module.weight
        transposed, groups = bool(module.transposed), int(module.groups)
        out_dim, in_dim = (1, 0) if transposed else (0, 1)
        module.out_channels = int(weight.shape[out_dim]) * (groups if transposed else 1)
        module.in_channels = int(weight.shape[in_dim]) * (1 if transposed else groups)
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = (int(n) for n in module.weight.shape)
    elif isinstance(module, _NORM):
        width = int(next(iter(changed.values())).shape[0])
        if isinstance(module, nn.GroupNorm):
            module.num_channels = width
        elif isinstance(module, nn.LayerNorm):
            module.normalized_shape = (width,)
        else:
            module.num_features = width
    elif isinstance(module, nn.PReLU):
        module.num_parameters = int(module.weight.shape[0])
    else:
        raise ValueError(f"Layer {name!r} ({type(module).__name__}) has narrower weights "
                         "in the bundle but no known width to resize.")
