"""BatchNorm running statistics that fit the weights a run ends with.

In training mode a BatchNorm layer normalises with the batch's own statistics and only nudges
its running estimates (`momentum`) towards them; evaluation uses the running estimates. Models
ported from TensorFlow (EfficientNet-Lite among them) keep momentum 0.01, so after a short fine
tune their estimates are still mostly those of the pretraining data and of weights that no longer
exist: on 300 digit images, 8 epochs of full fine-tuning reached 98.7 % training accuracy while
the saved model scored 46 % on the same images.

Two remedies, both about the estimates only (training-mode outputs, and so the training itself,
do not depend on them):
- while BatchNorm trains its momentum is at least PyTorch's default 0.1, so the validation after
  each epoch sees estimates a few dozen steps old instead of hundreds;
- where the estimates decide something (the end of each stage that trains BatchNorm, every epoch
  when early stopping picks the best one, and the model a run ends with) they are recomputed
  exactly: reset, then averaged over batches of the training data without augmentation and with
  dropout off, as in evaluation (`momentum=None` makes PyTorch keep a plain average), the way
  SWA's `update_bn` and "precise BatchNorm" do. See docs/batchnorm.md.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .freezing import NORM_TYPES, set_train_mode
from .models.base import BuiltModel

TRAINING_MOMENTUM = 0.1
# Batches of the training data the exact pass averages over at most (precise BatchNorm uses a few
# thousand samples: the estimates settle long before that on any real data set).
MAX_RECOMPUTE_SAMPLES = 4096


def trained_norms(built: BuiltModel, trainable: Iterable[str], *, train_bn: bool) -> list[_BatchNorm]:
    """The BatchNorm layers that run in training mode when `trainable` groups train (none for most
    text models). The net's modes are left as they were."""
    modes = {m: m.training for m in built.net.modules()}
    try:
        set_train_mode(built, tuple(trainable), train_bn=train_bn)
        return [m for m in built.net.modules()
                if isinstance(m, NORM_TYPES) and m.training and m.track_running_stats]
    finally:
        for module, training in modes.items():
            module.training = training


def raise_momentum(norms: Iterable[_BatchNorm], floor: float = TRAINING_MOMENTUM) -> None:
    """Let running estimates follow training at least at PyTorch's default pace."""
    for bn in norms:
        if bn.momentum is not None and bn.momentum < floor:
            bn.momentum = floor


def recompute_statistics(net: nn.Module, norms: list[_BatchNorm], forwards: Iterable[Callable[[], object]]) -> int:
    """Reset the running estimates of `norms` and set them to the average of the batch statistics
    over `forwards` (each runs the net on one batch); the rest of the net runs in eval mode, without
    autograd (inference mode). Returns how many batches were averaged; with none, the old estimates are kept."""
    norms = list(norms)
    if not norms:
        return 0
    modes = {m: m.training for m in net.modules()}
    saved = {bn: (bn.momentum, [t.clone() for t in _estimates(bn)]) for bn in norms}
    batches = 0
    try:
        net.eval()
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None          # cumulative average over the batches below
            bn.train()
        with torch.inference_mode():     # the running estimates are updated in place; nothing else is kept
            for forward in forwards:
                forward()
                batches += 1
    finally:
        for module, training in modes.items():
            module.training = training
        for bn, (momentum, estimates) in saved.items():
            bn.momentum = momentum
            if batches == 0:
                for current, kept in zip(_estimates(bn), estimates):
                    current.copy_(kept)
    return batches


def _estimates(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Running mean, variance and batch count (trained_norms keeps only layers that track them)."""
    assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
    return bn.running_mean, bn.running_var, bn.num_batches_tracked


def recompute_batches(n: int, batch_size: int, *, seed: int) -> list[list[int]]:
    """Index batches for the exact pass: a seeded sample of at most MAX_RECOMPUTE_SAMPLES, in training-size
    batches (batch statistics depend on the batch size), without a last batch of one (BatchNorm cannot
    take the statistics of a single value per channel)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)[:MAX_RECOMPUTE_SAMPLES].tolist()
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return [b for b in batches if len(b) > 1]
