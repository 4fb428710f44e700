"""Optimizer and learning-rate schedule from the run config (names, not classes, live in the config)."""
from __future__ import annotations

import math

import torch

from .config import OptimConfig

# Devices with torch's fused optimizer kernels: one pass over all parameters per step instead of a
# loop over tensors, several times faster on the CPU (benchmarks/optimizer_step.py measures it; figures
# in docs/benchmarks.md); the results agree to float rounding.
FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(param_groups: list[dict], cfg: OptimConfig, *, device: torch.device | None = None) -> torch.optim.Optimizer:
    fused = device is not None and device.type in FUSED_DEVICES
    return new_optimizer(param_groups, cfg, fused=True if fused else None)   # None: torch's default


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """A checkpoint's optimizer state, stepped by the implementation chosen here: the checkpoint may come
    from another device, or from before the fused kernels (a grad scaler must know which one steps)."""
    chosen = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, fused in zip(optimizer.param_groups, chosen):
        group["fused"] = fused
    # The multi-tensor and fused steps walk a parameter and its moments as flat memory: a moment laid
    # out otherwise than its parameter (a checkpoint from before channels_last, or from another device)
    # would be updated with the wrong elements.
    for param, param_state in optimizer.state.items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                param_state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def new_optimizer(param_groups: list[dict], cfg: OptimConfig, *, fused: bool | None) -> torch.optim.Optimizer:
    # Copies: an optimizer writes its defaults (fused among them) into the group dicts it is given.
    param_groups = [dict(group) for group in param_groups]
    if cfg.optimizer == "sgd":
        # torch refuses Nesterov without momentum; with momentum 0 both are plain SGD.
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, fused=fused)
    if cfg.optimizer == "rmsprop":
        # (torch has no fused RMSprop kernel: its default multi-tensor step)
        return torch.optim.RMSprop(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        # Adam's weight_decay is the coupled L2 penalty; AdamW decouples it.
        return torch.optim.Adam(param_groups, lr=cfg.lr, fused=fused)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, *, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule over `total_steps` (one segment of the run)."""
    total_steps = max(1, total_steps)
    warmup = int(round(cfg.warmup_fraction * total_steps))
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps,
            pct_start=max(cfg.warmup_fraction, 1.0 / total_steps), cycle_momentum=cfg.optimizer == "sgd")
    if cfg.scheduler == "plateau":
        # No per-step change; loop/plateau.py lowers the rates at epoch ends. ConstantLR by 1.0 is chainable:
        # it keeps the rates it finds, where a LambdaLR would reset them to their starting values every step.
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if cfg.scheduler == "step":
        def factor(step):
            return cfg.gamma ** ((step // max(1, steps_per_epoch)) // cfg.step_size)
    elif cfg.scheduler == "exponential":   # ExponentialLR's decay, applied per epoch
        def factor(step):
            return cfg.gamma ** (step // max(1, steps_per_epoch))
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
