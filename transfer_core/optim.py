"""Optimizer and learning-rate schedule from the run config (names, not classes, live in the config)."""
from __future__ import annotations

import math

import torch

from .config import OptimConfig


def build_optimizer(param_groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        # Adam's weight_decay is the coupled L2 penalty; AdamW decouples it.
        return torch.optim.Adam(param_groups, lr=cfg.lr)
    return torch.optim.AdamW(param_groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, *, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule over `total_steps` (one segment of the run)."""
    total_steps = max(1, total_steps)
    warmup = int(round(cfg.warmup_fraction * total_steps))
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps,
            pct_start=max(cfg.warmup_fraction, 1.0 / total_steps), cycle_momentum=cfg.optimizer == "sgd")
    if cfg.scheduler == "step":
        def factor(step):
            return cfg.gamma ** ((step // max(1, steps_per_epoch)) // cfg.step_size)
    elif cfg.scheduler == "cosine":
        def factor(step):
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    elif cfg.scheduler == "linear_warmup":
        def factor(step):
            if warmup and step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    else:  # constant
        def factor(step):
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
