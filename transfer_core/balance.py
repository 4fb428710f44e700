"""Class balance (train.class_balance): make a small class count as much as a large one in training.

weighted_loss weighs each sample's loss by n / (classes present x its class's count), scikit-learn's
"balanced" class weight, so every class contributes the same total weight. balanced_sampler instead
draws each epoch's samples with replacement, each with probability 1 / (classes x its class's count),
so every class is drawn about equally often; an epoch keeps its number of steps.
"""
from __future__ import annotations

import torch


def class_counts(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(targets.detach().cpu().long(), minlength=num_classes).double()


def loss_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One weight per class for CrossEntropyLoss(weight=...); 0 for a class with no training sample."""
    counts = class_counts(targets, num_classes)
    present = int((counts > 0).sum())
    weights = torch.where(counts > 0, counts.sum() / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


def sample_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One drawing weight per training sample: the inverse of its class's count."""
    counts = class_counts(targets, num_classes)
    return 1.0 / counts[targets.detach().cpu().long()]


def balance_inputs(class_balance: str, targets: torch.Tensor, num_classes: int) -> tuple[torch.Tensor | None,
                                                                                         torch.Tensor | None]:
    """(loss weights, sample weights) for the setting; None where it leaves that part as it is."""
    if class_balance == "weighted_loss":
        return loss_weights(targets, num_classes).to(targets.device), None
    if class_balance == "balanced_sampler":
        return None, sample_weights(targets, num_classes)
    return None, None
