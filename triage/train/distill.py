"""Knowledge distillation: a student trained on a teacher's softened predictions.

Loss per batch: ``alpha * T^2 * KL + (1 - alpha) * focal``, where KL is the batch mean of
``KL(softmax(teacher / T) || softmax(student / T))`` (`torch.nn.functional.kl_div` of the
student's log-probabilities against the teacher's probabilities: the student's softened
distribution is fitted to the teacher's) and ``focal`` is the configured training loss on
the labels. ``T^2`` keeps the soft term's gradients on the scale of the hard term's
(Hinton et al. 2015). The teacher sees the same perturbed volumes as the student
(device-grouped perturbation stays on), in eval mode and without gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from triage.train.config import DistillConfig


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch mean of ``KL(softmax(teacher / T) || softmax(student / T))``."""
    from torch.nn import functional as F

    return F.kl_div(F.log_softmax(student / temperature, 1),
                    F.log_softmax(teacher / temperature, 1), reduction="batchmean",
                    log_target=True)


class DistillationLoss(nn.Module):
    """``alpha * T^2 * soft_kl + (1 - alpha) * hard`` with a frozen teacher network.

    Called as ``loss(logits, target, inputs=volumes)``; without `inputs` (validation) it
    is the hard loss alone, so validation losses stay comparable across runs.
    """

    takes_inputs = True

    def __init__(self, teacher: nn.Module, hard: nn.Module, config: DistillConfig) -> None:
        super().__init__()
        self.teacher = teacher.eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.hard = hard
        self.alpha, self.temperature = float(config.alpha), float(config.temperature)

    def train(self, mode: bool = True) -> DistillationLoss:
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics of the teacher never move
        return self

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                inputs: torch.Tensor | None = None) -> torch.Tensor:
        hard = self.hard(logits, target)
        if inputs is None:
            return hard
        with torch.no_grad():
            teacher = self.teacher(inputs)
        soft = soft_kl(logits, teacher, self.temperature)
        return self.alpha * self.temperature ** 2 * soft + (1 - self.alpha) * hard


def load_teacher(uri: str, in_shape: tuple[int, int, int]) -> nn.Module:
    """The teacher's torch network from a model URI or bundle folder.

    Raises:
        ConfigError: its input shape is not the student's (another preprocessing).
        BundleError: a quantized variant (its torch network is not what was calibrated).
    """
    from triage.errors import ConfigError
    from triage.run.model import load_model

    bundle = load_model(uri).bundle
    bundle.check_runtime("torch")
    if tuple(bundle.in_shape) != tuple(in_shape):
        raise ConfigError(f"Teacher {uri} takes {bundle.in_shape} volumes but the student "
                          f"trains on {tuple(in_shape)}; distil from a teacher trained on the "
                          f"same preprocessing.")
    return bundle.build_model()
