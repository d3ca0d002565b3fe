"""The network registry: builders register under a name; `create_model` builds one by name.

A builder is a function ``builder(in_shape, **options) -> nn.Module`` whose keyword
arguments are the options a config may set (``model.options`` in the train YAML). It must
return a module mapping ``(B, 1, X, Y, Z)`` float32 volumes to two-class logits ``(B, 2)``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from triage.errors import ConfigError
from triage.settings import check_keys

if TYPE_CHECKING:
    import torch

    from triage.model.config import ModelConfig

Builder = Callable[..., "torch.nn.Module"]
NUM_CLASSES = 2


@dataclass(frozen=True)
class ModelSpec:
    """One registered network.

    Attributes:
        name: the registry name (``model.name`` in the train config).
        builder: ``builder(in_shape, **options) -> nn.Module``.
        description: one line for listings and docs.
        options: the option names the builder accepts, with their defaults.
    """

    name: str
    builder: Builder
    description: str
    options: dict[str, Any]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str = "") -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(in_shape, **options)`` under `name`.

    Args:
        name: registry name; must be new.
        description: one line; defaults to the builder's first docstring line.

    Raises:
        ValueError: when `name` is already registered.

    Example:
        >>> import torch
        >>> @register_model("doc-linear")
        ... def doc_linear(in_shape, bias: bool = True):
        ...     '''A linear probe (docstring example).'''
        ...     n = in_shape[0] * in_shape[1] * in_shape[2]
        ...     return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n, 2, bias=bias))
        >>> "doc-linear" in list_models()
        True
        >>> _ = _REGISTRY.pop("doc-linear")
    """

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"A network named '{name}' is already registered.")
        params = list(inspect.signature(builder).parameters.values())[1:]
        options = {p.name: p.default for p in params
                   if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelSpec(name, builder, description or (doc[0] if doc else ""),
                                    options)
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of the registered networks, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The registration of `name`.

    Raises:
        ConfigError: `name` is not registered (the message lists the valid names and the
            closest match).
    """
    _load_builtin()
    spec = _REGISTRY.get(name)
    if spec is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown network '{name}' (model.name).{hint} "
                          f"Registered networks: {', '.join(sorted(_REGISTRY))}.")
    return spec


def create_model(config: ModelConfig, in_shape: tuple[int, int, int], *,
                 seed: int | None = None) -> torch.nn.Module:
    """Build the network `config` names for single-channel volumes of shape `in_shape`.

    Args:
        config: ``name`` (see `list_models`) and ``options`` (the builder's keywords).
        in_shape: spatial shape (X, Y, Z) of the input volumes.
        seed: when given, the initial weights are drawn from a torch generator seeded with
            it (the global generator's state is left as it was); when None, from the
            global generator as it stands.

    Returns:
        A freshly initialized module: ``(B, 1, X, Y, Z)`` -> logits ``(B, 2)``.

    Raises:
        ConfigError: unknown network, unknown option (with a suggestion), or an option
            value the network rejects.

    Example:
        >>> from triage.model.config import ModelConfig
        >>> net = create_model(ModelConfig("cnn-small"), (24, 24, 12))
        >>> import torch
        >>> tuple(net(torch.zeros(2, 1, 24, 24, 12)).shape)
        (2, 2)
    """
    spec = get_model_spec(config.name)
    in_shape = tuple(int(n) for n in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ConfigError(f"Network '{spec.name}' needs a 3-D input shape (X, Y, Z) of "
                          f"positive sizes, got {in_shape}.")
    options = dict(config.options)
    check_keys(options, list(spec.options), f"{spec.name} option",
               "model.options")
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"
    try:
        if seed is None:
            model = spec.builder(in_shape, **options)
        else:
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = spec.builder(in_shape, **options)
    except (TypeError, ValueError, RuntimeError, AssertionError, KeyError,
            IndexError) as err:
        raise ConfigError(f"Network '{spec.name}' cannot be built for input shape "
                          f"{in_shape} with {shown}: {err}") from err
    _check_output(model, spec.name, in_shape, shown)
    return model


def _check_output(model: torch.nn.Module, name: str, in_shape: tuple[int, ...],
                  shown: str) -> None:
    """Run one zero volume through `model` so that a grid too small for the network's
    downsampling fails here, with a message, rather than in the first training step."""
    import torch

    was_training = model.training
    model.eval()  # no dropout draws, no batch-norm statistics updates
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 1, *in_shape))
    except RuntimeError as err:
        raise ConfigError(f"Network '{name}' ({shown}) cannot process {in_shape} volumes: "
                          f"{err}. Use a larger preprocess target_shape or a network "
                          f"that downsamples less.") from err
    finally:
        model.train(was_training)
    if tuple(out.shape) != (1, NUM_CLASSES):
        raise ConfigError(f"Network '{name}' returned shape {tuple(out.shape)} for one "
                          f"volume; expected (1, {NUM_CLASSES}) logits.")


def _load_builtin() -> None:
    # The MONAI builders register on import; import lazily so `triage --help` stays fast.
    from triage.model import fusion, nets  # noqa: F401
