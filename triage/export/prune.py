"""Structured L1 channel pruning: a physically narrower network, fine-tuned and recalibrated.

`prune_channels` removes the given share of every layer's output channels, lowest L1 norm
first, with torch-pruning's dependency graph (`torch_pruning.MetaPruner`): the channels a
convolution produces go together with the matching normalization parameters and the input
channels of every layer that reads them, across residual sums and concatenations, so the
result is a smaller dense network (fewer FLOPs, not zeroed weights). The output layers
(the logits, a one-channel evidence map) keep their width.

`make_pruned_variant` then fine-tunes the pruned network briefly on the training split with
the parent's own training settings (`triage.train.loop.fit`), and recalibrates it on its
own calibration scores like any variant (`triage.export.variant.recalibrate_variant`). The
bundle keeps the parent's network config plus a ``pruning`` record; its loader narrows the
layers to the saved weights (`triage.model.widths.fit_widths`).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from triage.data.dataset import CACHE_DIR
from triage.errors import ConfigError
from triage.export.variant import ExportData, Variant, forward_ms, load_volumes
from triage.model.registry import NUM_CLASSES
from triage.registry.bundle import ModelBundle

log = logging.getLogger(__name__)
METHOD = "prune"
#: The fine-tuning learning rate, as a share of the parent's (no warm-up, cosine decay).
FINETUNE_LR_SCALE = 0.5


def output_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose width is the network's output (never pruned): linear layers
    producing the logits and convolutions producing a one-channel evidence map."""
    return [m for m in model.modules()
            if (isinstance(m, nn.Linear) and m.out_features == NUM_CLASSES)
            or (isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == 1)]


def channel_count(model: nn.Module) -> int:
    """Output channels of every convolution (the prunable width of a 3-D network)."""
    return sum(int(m.out_channels) for m in model.modules()
               if isinstance(m, nn.modules.conv._ConvNd))


def parameter_count(model: nn.Module) -> int:
    """Trainable and frozen parameters (buffers such as running statistics left out)."""
    return sum(p.numel() for p in model.parameters())


def check_ratio(ratio: float) -> float:
    """`ratio` as a float in (0, 1).

    Raises:
        ConfigError: outside (0, 1).

    Example:
        >>> check_ratio(0.5)
        0.5
    """
    value = float(ratio)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"--prune {ratio!r}: the share of channels to remove must lie "
                          f"strictly between 0 and 1 (e.g. 0.3, 0.5, 0.7).")
    return value


def prune_channels(model: nn.Module, in_shape: tuple[int, int, int], ratio: float
                   ) -> nn.Module:
    """`model` with `ratio` of each layer's output channels removed, lowest L1 norm first
    (in place; eval mode).

    Args:
        model: the trained network.
        in_shape: spatial input shape (the dependency graph is traced on a zero batch).
        ratio: share of channels to remove per layer, in (0, 1).
    """
    import torch_pruning as tp

    from triage.model.widths import sync_free_norms

    ratio = check_ratio(ratio)
    model = model.eval().cpu()
    example = torch.zeros((1, 1, *in_shape))
    with warnings.catch_warnings():
        # torch-pruning warns about layers it leaves alone (pooling, unwrapped params).
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            model, example, importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=ratio, ignored_layers=output_layers(model), global_pruning=False)
        pruner.step()
    sync_free_norms(model, in_shape)
    return model.eval()


def pruning_record(before: nn.Module, after: nn.Module, ratio: float, epochs: int
                   ) -> dict[str, Any]:
    """The bundle's ``pruning`` record: what was removed and how it was recovered."""
    import torch_pruning as tp

    return {"method": "l1-structured", "ratio": ratio, "library": "torch-pruning",
            "library_version": tp.__version__, "finetune_epochs": int(epochs),
            "channels_before": channel_count(before), "channels_after": channel_count(after),
            "params_before": parameter_count(before), "params_after": parameter_count(after)}


def finetune(model: nn.Module, parent: ModelBundle, data: ExportData, epochs: int) -> None:
    """Train `model` (in place) for `epochs` on the training split with the parent's loss,
    sampling, perturbation and augmentation, at `FINETUNE_LR_SCALE` of its learning rate.

    Raises:
        ConfigError: no training-split studies in the export.
    """
    from triage.data.dataset import CachedVolumeDataset
    from triage.train.appearance import Appearance
    from triage.train.augment import Augmentation, compose
    from triage.train.config import TrainConfig
    from triage.train.layered import LayeredAugmentation
    from triage.train.loop import fit
    from triage.train.perturb import DevicePerturbation

    if not data.train:
        raise ConfigError("The export has no training-split studies of the model's devices: "
                          "a pruned network is fine-tuned on them; pass the export the "
                          "model was trained on, or --finetune-epochs 0.")
    parent_config = TrainConfig.from_dict(parent.train_config, source="the parent's config")
    config = parent_config.replace(
        optim={"epochs": int(epochs), "warmup_epochs": 0.0,
               "lr": parent_config.optim.lr * FINETUNE_LR_SCALE},
        distill={"teacher": ""}, finetune={"init": None, "freeze": []},
        consistency={"weight": 0.0})
    cache_root = data.ingest_dir / CACHE_DIR
    devices = list(parent.train_devices)
    appearances = {k: Appearance.from_dict(v) for k, v in parent.appearances.items()}
    train_ds = CachedVolumeDataset(data.train, cache_root, devices=devices,
                                   preload=config.runtime.preload, seed=config.runtime.seed)
    train_ds.transform = compose(
        DevicePerturbation(config.perturb, appearances) if config.perturb.enabled else None,
        Augmentation(config.augment) if config.augment.enabled else None,
        LayeredAugmentation(config.layered) if config.layered.enabled else None)
    val_ds = CachedVolumeDataset(data.val, cache_root, devices=devices,
                                 seed=config.runtime.seed) if data.val else None
    counts = np.bincount(train_ds.labels(), minlength=2).tolist()
    with tempfile.TemporaryDirectory(prefix="triage-prune-") as tmp:
        result = fit(model, train_ds, val_ds, config, tmp, class_counts=counts,
                     progress=False)
    last = result.history[-1] if result.history else None
    if last is not None:
        log.info("Fine-tuned the pruned network %d epochs: train loss %.4f, val %s.",
                 epochs, last.train_loss, last.val)
    model.cpu().eval()


def make_pruned_variant(parent: ModelBundle, data: ExportData, *, ratio: float,
                        finetune_epochs: int = 2, batch_size: int = 4) -> Variant:
    """`parent`'s network with `ratio` of its channels removed (`prune_channels`),
    fine-tuned `finetune_epochs` on the training split and recalibrated on its own scores.

    Raises:
        ConfigError: a bad ratio or epoch count, or a parent that runs on ONNX (prune its
            torch parent, then export the pruned version to ONNX if wanted).
    """
    from triage.export.variant import recalibrate_variant

    ratio = check_ratio(ratio)
    if finetune_epochs < 0:
        raise ConfigError(f"--finetune-epochs {finetune_epochs}: expected 0 or more.")
    if parent.runtime != "torch":
        raise ConfigError(f"The model runs on {parent.runtime}; prune its torch parent "
                          f"(then `triage export --format onnx` the pruned version).")
    before = parent.build_model()
    model = prune_channels(parent.build_model(), parent.in_shape, ratio)
    if finetune_epochs:
        finetune(model, parent, data, finetune_epochs)
    record = pruning_record(before, model, ratio, finetune_epochs)
    pruned = dataclasses.replace(
        parent, state_dict={k: v.detach().cpu().clone() for k, v in
                            model.state_dict().items()},
        pruning=record, onnx={}, onnx_model=None)
    timing = load_volumes(data, (data.quantization or data.calib)[:batch_size])
    timings = {"torch": forward_ms(parent, timing, runtime="torch", batch_size=batch_size),
               "pruned": forward_ms(pruned, timing, runtime="torch", batch_size=batch_size)}
    log.info("Pruned %.0f%% of the channels: %d -> %d channels, %d -> %d parameters, "
             "%.2f -> %.2f ms per volume.", 100 * ratio, record["channels_before"],
             record["channels_after"], record["params_before"], record["params_after"],
             timings["torch"], timings["pruned"])
    bundle = recalibrate_variant(pruned, data, batch_size=batch_size)
    tags = {"lineage.ratio": f"{ratio:g}", "lineage.finetune_epochs": str(finetune_epochs),
            "lineage.params": f"{record['params_before']}->{record['params_after']}",
            "lineage.channels": f"{record['channels_before']}->{record['channels_after']}"}
    return Variant(bundle, METHOD, {k: round(v, 3) for k, v in timings.items()},
                   parent.temperature, tags)
