"""Fine-tuning: start from a trained model's weights, unfreeze in stages, discount the lr.

``finetune.init`` names the model (`FinetuneConfig`); its bundle is read by
`triage.registry.pyfunc.load_bundle_from_uri`, which checks the digest recorded when the
model was logged and loads the weights with ``torch.load(weights_only=True)``.
``finetune.freeze`` lists stages ``{modules: [prefix, ...], epochs: N}``: the parameters
under those prefixes get no gradient (and AdamW, which skips parameters without one, applies
no weight decay to them) and their modules stay in eval mode (batch-norm statistics held)
during the run's first N epochs. ``finetune.head`` prefixes train at ``optim.lr``, every
other parameter at ``optim.lr * finetune.lr_scale`` (separate AdamW parameter groups, so the
warm-up and cosine schedule scale both).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from triage.errors import ConfigError
from triage.train.config import FinetuneConfig, TrainConfig

log = logging.getLogger(__name__)


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def check_prefixes(model: nn.Module, prefixes: Sequence[str], option: str) -> None:
    """Raise `ConfigError` for a prefix that names no parameter of `model`.

    Example:
        >>> check_prefixes(nn.Sequential(nn.Linear(2, 2)), ["0"], "finetune.head")
    """
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(_matches(n, [prefix]) for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise ConfigError(f"{option} names '{prefix}', which is no parameter or module "
                              f"of this network; its top-level modules are "
                              f"{', '.join(tops)}.")


def frozen_prefixes(config: FinetuneConfig, epoch: int) -> tuple[str, ...]:
    """Module prefixes frozen during 0-based `epoch`.

    Example:
        >>> from triage.train.config import FreezeStage
        >>> cfg = FinetuneConfig(freeze=(FreezeStage(("a",), 1), FreezeStage(("b",), 3)))
        >>> frozen_prefixes(cfg, 0), frozen_prefixes(cfg, 2), frozen_prefixes(cfg, 3)
        (('a', 'b'), ('b',), ())
    """
    out: list[str] = []
    for stage in config.freeze:
        if epoch < stage.epochs:
            out += [m for m in stage.modules if m not in out]
    return tuple(out)


def apply_freeze(model: nn.Module, prefixes: Sequence[str]) -> None:
    """Freeze the parameters under `prefixes`, unfreeze every other one; put the frozen
    modules in eval mode (call after ``model.train()``)."""
    for name, param in model.named_parameters():
        param.requires_grad_(not _matches(name, prefixes))
    if prefixes:
        for name, module in model.named_modules():
            if name and _matches(name, prefixes):
                module.eval()


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: (head, kept) x (decay, no decay); no weight decay on biases and
    normalization scales (1-D parameters); kept layers at ``lr * finetune.lr_scale`` when
    ``finetune.head`` is set. Every parameter is in a group, frozen or not, so that
    unfreezing needs no new optimizer (and a resumed run has the same groups)."""
    head = config.finetune.head
    if head:
        check_prefixes(model, head, "finetune.head")
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        in_head = not head or _matches(name, head)
        groups.setdefault((in_head, param.ndim > 1), []).append(param)
    out = []
    for (in_head, decay), params in sorted(groups.items(), reverse=True):
        scale = 1.0 if in_head else config.finetune.lr_scale
        out.append({"params": params, "lr": config.optim.lr * scale, "lr_scale": scale,
                    "weight_decay": config.optim.weight_decay if decay else 0.0})
    return out


def load_init(model: nn.Module, uri: str, *, model_config: dict[str, Any],
              in_shape: Sequence[int]) -> dict[str, Any]:
    """Load the weights of the model at `uri` into `model`.

    Args:
        model: the freshly built network of this run.
        uri: ``models:/...``, ``runs:/.../model`` or a bundle folder.
        model_config: this run's ``{"name", "options"}``; the init model's must match.
        in_shape: this run's input shape; the init model's must match.

    Returns:
        Parameters for MLflow: ``finetune.init_*`` (network, shape, training devices,
        code version of the init model).

    Raises:
        ConfigError: the init model is another network or input shape, or its weights do
            not fit.
        BundleDigestError, BundleError, TrackingError: see `load_bundle_from_uri`.
    """
    from triage.registry.pyfunc import load_bundle_from_uri

    bundle = load_bundle_from_uri(uri)
    if bundle.model_config.get("name") != model_config["name"] or dict(
            bundle.model_config.get("options") or {}) != dict(model_config["options"]):
        raise ConfigError(f"finetune.init '{uri}' is network {bundle.model_config}, this run "
                          f"trains {model_config}; set model.name and model.options to the "
                          f"init model's.")
    if tuple(bundle.in_shape) != tuple(in_shape):
        raise ConfigError(f"finetune.init '{uri}' was trained on {bundle.in_shape} volumes, "
                          f"this run's are {tuple(in_shape)}; ingest with the init model's "
                          f"preprocessing target_shape.")
    try:
        model.load_state_dict(bundle.state_dict)
    except RuntimeError as err:
        raise ConfigError(f"The weights of finetune.init '{uri}' do not fit this run's "
                          f"network: {err}") from err
    log.info("Initialized from %s (trained on %s).", uri, ", ".join(bundle.train_devices))
    return {"finetune.init_model": bundle.model_config.get("name"),
            "finetune.init_in_shape": "x".join(map(str, bundle.in_shape)),
            "finetune.init_train_devices": ",".join(bundle.train_devices),
            "finetune.init_code_version": bundle.code_version}
