"""The training objective as a list of weighted loss terms over one step's outputs.

A term is a callable ``term(outputs: StepOutputs) -> scalar tensor`` with a ``name`` (the
key under which its batch mean is logged, ``train.<name>``), a ``weight`` and a
``needs_second_view`` flag (the step then also runs the network on the second view). The
step minimizes ``sum(term.weight * term(outputs))``. The supervised loss is one term, the
consistency between two views another; further terms (e.g. distillation from a teacher's
logits on ``outputs.inputs``) are appended to the list without touching the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from triage.train.config import ConsistencyConfig


@dataclass
class StepOutputs:
    """What one training step computed, for the loss terms.

    Attributes:
        inputs: the batch's (first-view) volumes ``(B, 1, X, Y, Z)``.
        logits: the network's logits on them ``(B, 2)``.
        targets: labels ``(B,)`` long.
        logits_second: logits on the second view (clean or another augmented draw), or
            None when no term needs it.
        batch: the raw batch (device indices, sample indices, ...).
    """

    inputs: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor
    logits_second: torch.Tensor | None
    batch: dict[str, Any]


class LossTerm(Protocol):
    name: str
    weight: float
    needs_second_view: bool

    def __call__(self, outputs: StepOutputs) -> torch.Tensor: ...


class SupervisedTerm:
    """The configured classification loss (`triage.train.losses.create_loss`) on view one."""

    name = "loss"
    needs_second_view = False

    def __init__(self, criterion: nn.Module, weight: float = 1.0) -> None:
        self.criterion = criterion
        self.weight = float(weight)

    def __call__(self, outputs: StepOutputs) -> torch.Tensor:
        if getattr(self.criterion, "takes_inputs", False):  # distillation: the teacher's view
            return self.criterion(outputs.logits, outputs.targets, inputs=outputs.inputs)
        return self.criterion(outputs.logits, outputs.targets)


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """``(KL(p_a || p_b) + KL(p_b || p_a)) / 2`` of two softmax predictions, batch mean."""
    log_a = torch.log_softmax(logits_a, 1)
    log_b = torch.log_softmax(logits_b, 1)
    kl_ab = (log_a.exp() * (log_a - log_b)).sum(1)
    kl_ba = (log_b.exp() * (log_b - log_a)).sum(1)
    return 0.5 * (kl_ab + kl_ba).mean()


def probability_mse(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two softmax predictions (summed over classes)."""
    return (torch.softmax(logits_a, 1) - torch.softmax(logits_b, 1)).pow(2).sum(1).mean()


CONSISTENCY_FUNCTIONS = {"kl": symmetric_kl, "mse": probability_mse}


class ConsistencyTerm:
    """Agreement of the predictions on the two views (`ConsistencyConfig`)."""

    name = "consistency"
    needs_second_view = True

    def __init__(self, config: ConsistencyConfig) -> None:
        self.weight = float(config.weight)
        self.kind = config.kind
        self.function = CONSISTENCY_FUNCTIONS[config.kind]

    def __call__(self, outputs: StepOutputs) -> torch.Tensor:
        if outputs.logits_second is None:
            raise ValueError("The consistency term needs logits on the second view.")
        return self.function(outputs.logits, outputs.logits_second)


def build_terms(criterion: nn.Module, consistency: ConsistencyConfig) -> list[LossTerm]:
    """The run's terms: the supervised loss, then consistency when its weight is > 0."""
    terms: list[LossTerm] = [SupervisedTerm(criterion)]
    if consistency.weight > 0:
        terms.append(ConsistencyTerm(consistency))
    return terms
