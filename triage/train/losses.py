"""Training losses on two-class logits: focal loss (MONAI) and cross-entropy (baseline).

Both take ``(logits (B, 2) float, targets (B,) long)`` and return the batch mean weighted
the way `torch.nn.functional.cross_entropy` weights it: ``sum_i w[y_i] * l_i / sum_i
w[y_i]``. With that normalization the loss scale does not depend on the scale of the class
weights, and focal loss with ``gamma = 0`` *is* weighted cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from triage.errors import ConfigError
from triage.train.config import LossConfig


def class_weights(counts: Sequence[int], mode: str | Sequence[float]) -> tuple[float, float]:
    """Per-class loss weights (negative, positive).

    Args:
        counts: training samples per class, ``(negatives, positives)``.
        mode: ``prevalence`` (inverse class frequency, normalized to sum to 1),
            ``none`` (equal weights 0.5, 0.5), or an explicit pair used as given.

    Returns:
        ``(w_negative, w_positive)``.

    Raises:
        ConfigError: a count is negative, ``prevalence`` with an empty class, or an
            unknown mode.

    Example:
        >>> class_weights([30, 10], "prevalence")
        (0.25, 0.75)
    """
    if isinstance(mode, str):
        if mode == "none":
            return (0.5, 0.5)
        if mode != "prevalence":
            raise ConfigError(f"Unknown class weight mode '{mode}' (loss.alpha); expected "
                              f"'prevalence', 'none' or two weights [negative, positive].")
        counts = [int(c) for c in counts]
        if len(counts) != 2 or min(counts) < 0:
            raise ConfigError(f"Class counts must be two non-negative integers "
                              f"(negatives, positives), got {counts}.")
        if min(counts) == 0:
            raise ConfigError(f"loss.alpha 'prevalence' needs both classes in the training "
                              f"split, got counts (negatives, positives) = {tuple(counts)}; "
                              f"add studies of the missing class or set loss.alpha.")
        inverse = [1.0 / c for c in counts]
        total = sum(inverse)
        return (inverse[0] / total, inverse[1] / total)
    pair = tuple(float(a) for a in mode)
    if len(pair) != 2 or min(pair) < 0 or sum(pair) <= 0:
        raise ConfigError(f"loss.alpha must be two non-negative weights, not both 0; got "
                          f"{mode!r}.")
    return pair  # type: ignore[return-value]


class FocalLoss(nn.Module):
    """Softmax focal loss ``-w[y] (1 - p_y)^gamma log p_y`` via `monai.losses.FocalLoss`.

    Args:
        gamma: focusing parameter (0 gives weighted cross-entropy).
        weights: per-class weights ``(negative, positive)`` (MONAI's sequence ``alpha``).
    """

    def __init__(self, gamma: float, weights: tuple[float, float]) -> None:
        super().__init__()
        from monai.losses import FocalLoss as MonaiFocalLoss

        self.gamma = float(gamma)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        # reduction="none" gives (B, 2) with the loss in the target column (one-hot target):
        # MONAI's "mean" would divide by B * 2, and its "sum" averages over an empty
        # spatial-dimension list, i.e. over everything.
        self.focal = MonaiFocalLoss(include_background=True, to_onehot_y=True,
                                    gamma=self.gamma, alpha=list(weights), use_softmax=True,
                                    reduction="none")

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_class = self.focal(logits, targets.long().view(-1, 1))
        return per_class.sum() / self.weights.to(logits.dtype)[targets].sum()


class CrossEntropyLoss(nn.Module):
    """`torch.nn.functional.cross_entropy` with per-class weights (negative, positive)."""

    def __init__(self, weights: tuple[float, float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, targets.long(),
                                           weight=self.weights.to(logits.dtype))


def create_loss(config: LossConfig, class_counts: Sequence[int]) -> nn.Module:
    """The loss `config` names, with class weights from ``config.alpha``.

    Both losses use the same weights: ``ce`` with ``alpha: none`` is the plain
    cross-entropy baseline, ``ce`` with ``prevalence`` a class-weighted one.

    Args:
        config: ``name`` (``focal`` or ``ce``), ``gamma``, ``alpha``.
        class_counts: ``(negatives, positives)`` the loss will see per epoch. With
            class-aware sampling that is balanced (see `effective_class_counts`), so
            ``prevalence`` does not correct the imbalance a second time.

    Returns:
        A module ``loss(logits (B, 2), targets (B,) long) -> scalar``.

    Raises:
        ConfigError: see `class_weights`.
    """
    weights = class_weights(class_counts, config.alpha)
    if config.name == "focal":
        return FocalLoss(config.gamma, weights)
    if config.name == "ce":
        return CrossEntropyLoss(weights)
    raise ConfigError(f"Unknown loss '{config.name}' (loss.name); expected focal or ce.")


def effective_class_counts(class_counts: Sequence[int], class_aware: bool) -> tuple[int, int]:
    """The class counts an epoch presents to the loss: balanced under class-aware sampling.

    Example:
        >>> effective_class_counts([30, 10], class_aware=True)
        (20, 20)
    """
    neg, pos = (int(c) for c in class_counts)
    if class_aware and neg > 0 and pos > 0:
        half = (neg + pos) // 2
        return (half, half)
    return (neg, pos)
