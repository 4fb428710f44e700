"""One optimizer step over a real model's trainable parameters: torch's default implementation
against the fused kernels the engine uses on the CPU and CUDA (transfer_core/optim.py).

    python benchmarks/optimizer_step.py [--model minilm_l6] [--optimizer adamw sgd adam] [--steps 20] [--repeats 5]

Gradients are random (the step's cost does not depend on their values). Prints seconds per step
(median of the repeats) and each implementation's speed as a ratio to the default in this process.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transfer_core.config import OptimConfig  # noqa: E402
from transfer_core.devices import pick_device  # noqa: E402
from transfer_core.freezing import optimizer_param_groups  # noqa: E402
from transfer_core.models.registry import build_model  # noqa: E402
from transfer_core.optim import new_optimizer  # noqa: E402


def seconds_per_step(groups: list[dict], cfg: OptimConfig, fused: bool | None, steps: int) -> float:
    optimizer = new_optimizer(groups, cfg, fused=fused)
    optimizer.step()   # creates the state (moments) outside the timed part
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if groups[0]["params"][0].is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm_l6", help="a model from `python -m transfer_core models` (default minilm_l6)")
    p.add_argument("--optimizer", nargs="+", default=["adamw", "sgd", "adam"], choices=["adamw", "sgd", "adam"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    built = build_model(args.model, ["a", "b", "c", "d", "e"], pretrained=False)
    built.net.to(device)
    trainable = tuple(g.name for g in built.groups)   # full fine-tuning: every parameter steps
    for param in built.net.parameters():
        param.grad = torch.randn_like(param)
    count = sum(p.numel() for p in built.net.parameters())
    print(f"{args.model}: {count / 1e6:.1f}M parameters on {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| optimizer | default s/step | fused s/step | fused speed vs default |")
    print("|---|---|---|---|")
    for name in args.optimizer:
        cfg = OptimConfig(optimizer=name)
        groups = optimizer_param_groups(built, trainable, lr=cfg.lr, lr_decay=1.0, weight_decay=cfg.weight_decay)
        default, fused = [], []
        for _ in range(args.repeats):   # alternated, so drift in the machine's speed hits both
            default.append(seconds_per_step(groups, cfg, None, args.steps))
            fused.append(seconds_per_step(groups, cfg, True, args.steps))
        d, f = statistics.median(default), statistics.median(fused)
        print(f"| {name} | {d:.4f} | {f:.4f} | {d / f:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
