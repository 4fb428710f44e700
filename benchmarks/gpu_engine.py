"""The engine's own full fine-tuning on a CUDA GPU: mixed precision against fp32, through fit().

    python benchmarks/gpu_engine.py [--models resnet50 vit_b_16] [--variants fp32 bf16 ...] [--per-class 500]
                                    [--epochs 2] [--batch-size 256] [--repeats 1]

Where `train_speed.py --scenario gpu-amp` times bare training steps on synthetic data,
this trains the way a user's run does: Fashion-MNIST (Debian's dataset-fashion-mnist)
decoded once to 224 px, the engine's data pipeline, per-epoch validation and
checkpoints. Only these change between variants:

  fp32-strict  mixed precision off, TF32 off (torch.backends.cudnn.allow_tf32 = False)
  fp32         mixed precision off, PyTorch's defaults (cuDNN convolutions in TF32)
  bf16         mixed precision on (the engine's default)
  bf16-loader  mixed precision on, pixels read through the DataLoader's worker processes
               instead of kept on the GPU (batching.DEVICE_PIXELS_SHARE = 0): the path
               before decoded pixels were kept there

Models start from random weights (no ResNet or ViT weights install offline).
Throughput is training samples per second of the last epoch (the first also pays for
cuDNN's autotuning); "first step" is that epoch's first step, waiting for its data
included, and "step" the median of the others. The peak is the run's own
torch.cuda.max_memory_allocated, as the engine records it in metrics.json. All runs share
one runs folder (so only the first decodes the images); the table shows medians over the repeats.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

VARIANTS = ("fp32-strict", "fp32", "bf16", "bf16-loader")


@contextlib.contextmanager
def variant_settings(variant: str):
    """The process-wide switches a variant changes, put back afterwards."""
    import torch
    from transfer_core import batching
    saved = torch.backends.cudnn.allow_tf32, batching.DEVICE_PIXELS_SHARE
    torch.backends.cudnn.allow_tf32 = variant != "fp32-strict"
    if variant == "bf16-loader":
        batching.DEVICE_PIXELS_SHARE = 0.0
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, batching.DEVICE_PIXELS_SHARE = saved


def one_run(model: str, variant: str, args, store) -> dict:
    from train_speed import engine_config
    from transfer_core.run_files import METRICS_FILE
    from transfer_core.trainer import fit
    cfg = engine_config({"data": f"demo:fashion-mnist?per_class={args.per_class}", "model": model, "freeze": "full",
                         "epochs": args.epochs, "image_size": 224, "lr": 1e-4, "batch_size": args.batch_size})
    for key, value in (("model.pretrained", False), ("train.mixed_precision", variant.startswith("bf16")),
                       ("train.device", "cuda")):
        cfg.set(key, value)
    started, steps = [], []

    def observe(event):
        if event.kind == "RunStarted":
            started.append(event)
        elif event.kind == "BatchEnded" and event.epoch == args.epochs - 1:
            steps.append(1.0 / event.samples_per_second * args.batch_size)   # seconds of a full batch's step
    t0 = time.perf_counter()
    with variant_settings(variant):
        result = fit(cfg.check(), store=store, observers=[observe])
    wall = time.perf_counter() - t0
    if result.status != "completed":
        return {"error": result.message}
    metrics = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())
    return {"wall_s": wall, "last_epoch_s": metrics["history"][-1]["seconds"], "hardware": metrics["hardware"],
            "val_accuracy": metrics["summary"]["val_accuracy"], "num_train": started[-1].num_train,
            "first_step_s": steps[0] if steps else None,
            "step_s": statistics.median(steps[1:-1]) if len(steps) > 2 else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16"])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="which variants to run per model (default: all)")
    p.add_argument("--per-class", type=int, default=500, help="Fashion-MNIST images per class (default 500: 5,000)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("gpu_engine: skipped (no CUDA device)")
        return 0
    from train_speed import machine_info, machine_line
    print(machine_line(machine_info(torch.get_num_threads())), flush=True)
    from transfer_core.store import RunStore
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        store = RunStore(Path(runs_dir))   # one runs folder: the images are decoded once, by the first run
        for model in args.models:
            runs = {v: [] for v in args.variants}
            for r in range(args.repeats):
                for variant in (args.variants if r % 2 == 0 else list(reversed(args.variants))):
                    out = one_run(model, variant, args, store)
                    runs[variant].append(out)
                    print(f"  {model} {variant} repeat {r + 1}: {json.dumps(out)}", flush=True)
            rows.append((model, runs))
        store.close()
    print()
    print(table(rows, args))
    return 0 if all(not o.get("error") for _, runs in rows for outs in runs.values() for o in outs) else 1


def table(rows, args) -> str:
    lines = ["| model | variant | precision | last-epoch samples/s | first step s | step ms | peak GPU MiB | val acc "
             "| speed vs fp32-strict | speed vs fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, runs in rows:
        stats = {}
        for variant, outs in runs.items():
            good = [o for o in outs if not o.get("error")]
            if not good:
                lines.append(f"| {model} | {variant} | failed: {outs[0].get('error', '')[:80]} | | | | | | | |")
                continue
            med = lambda key: statistics.median(o[key] for o in good if o.get(key) is not None)   # noqa: E731
            stats[variant] = {"sps": statistics.median(o["num_train"] / o["last_epoch_s"] for o in good),
                              "first": med("first_step_s"), "step": med("step_s"),
                              "peak": statistics.median(o["hardware"]["peak_gpu_memory_mib"] for o in good),
                              "acc": med("val_accuracy"), "precision": good[0]["hardware"]["precision"]}
        for variant, s in stats.items():
            ratios = [f"{s['sps'] / stats[ref]['sps']:.2f}x" if ref in stats else "–" for ref in ("fp32-strict", "fp32")]
            lines.append(f"| {model} | {variant} | {s['precision']} | {s['sps']:.0f} | {s['first']:.3f} | "
                         f"{1000 * s['step']:.1f} | {s['peak']:.0f} | {s['acc']:.3f} | {ratios[0]} | {ratios[1]} |")
    num_train = next((o["num_train"] for _, runs in rows for outs in runs.values() for o in outs if "num_train" in o), "?")
    lines.append("")
    lines.append(f"{args.per_class * 10} Fashion-MNIST images at 224 px ({num_train} train), full fine-tuning "
                 f"from random weights, batch {args.batch_size}, {args.epochs} epochs, medians of {args.repeats}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
