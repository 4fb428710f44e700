"""CNNs on the CPU: contiguous against channels-last memory layout, for a training step and an
inference batch, and inference with BatchNorm folded into the convolutions (transfer_core/folding.py).

    python benchmarks/cpu_layout.py [--models efficientnet_lite0 resnet18 ...] [--size 128] [--batch 32] [--repeats 3]

Models come from the engine's catalogue: efficientnet_lite0 with its offline pretrained weights,
the torchvision ones with random weights (the time of a step does not depend on the values).
Inputs are random. Prints seconds per step and per inference batch (median of the repeats, after
one warm-up) and each variant's speed as a ratio to the contiguous layout in this process. The
engine's choice per model (devices.use_channels_last) is in the last column.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transfer_core.devices import use_channels_last  # noqa: E402
from transfer_core.folding import folded_for_inference  # noqa: E402
from transfer_core.models.registry import build_model  # noqa: E402

DEFAULT_MODELS = ("efficientnet_lite0", "resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny")


def timed(fn, repeats: int) -> float:
    fn()   # warm-up: oneDNN picks and caches its kernels for the shape
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(net, x, y):
    def step():
        loss = torch.nn.functional.cross_entropy(net(pixel_values=x), y)
        loss.backward()
        net.zero_grad(set_to_none=True)
    return step


def inference(net, x):
    def run():
        with torch.inference_mode():
            net(pixel_values=x)
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print(f"CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}, batch {args.batch} at {args.size} px, "
          f"median of {args.repeats} after a warm-up")
    print(f"{'model':<20} {'train contig s':>14} {'train CL s':>10} {'ratio':>6} {'infer contig s':>14} "
          f"{'infer CL s':>10} {'ratio':>6} {'CL+fold s':>9} {'ratio':>6}  engine uses CL")
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    for name in args.models:
        built = build_model(name, [str(i) for i in range(10)], pretrained=name == "efficientnet_lite0",
                            image_size=args.size)
        plain = built.net.train()
        cl = copy.deepcopy(plain).to(memory_format=torch.channels_last)
        train_plain = timed(train_step(plain, x, y), args.repeats)
        train_cl = timed(train_step(cl, x_cl, y), args.repeats)
        plain.eval()
        cl.eval()
        infer_plain = timed(inference(plain, x), args.repeats)
        infer_cl = timed(inference(cl, x_cl), args.repeats)
        with torch.inference_mode():
            folded = folded_for_inference(cl, lambda m: m(pixel_values=x_cl[:2]))   # keeps cl's layout
        infer_fold = timed(inference(folded, x_cl), args.repeats)
        chosen = use_channels_last(plain, cpu, "image")
        print(f"{name:<20} {train_plain:>14.3f} {train_cl:>10.3f} {train_plain / train_cl:>5.2f}x {infer_plain:>14.3f} "
              f"{infer_cl:>10.3f} {infer_plain / infer_cl:>5.2f}x {infer_fold:>9.3f} {infer_plain / infer_fold:>5.2f}x  "
              f"{'yes' if chosen else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
