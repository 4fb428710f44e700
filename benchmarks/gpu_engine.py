"""The engine's own full fine-tuning on a CUDA GPU: mixed precision against fp32, through fit().

    python benchmarks/gpu_engine.py [--models resnet50 vit_b_16] [--per-class 500] [--epochs 2] [--batch-size 256] [--repeats 2]

Where `train_speed.py --scenario gpu-amp` times bare training steps on synthetic data,
this trains the way a user's run does: Fashion-MNIST (Debian's dataset-fashion-mnist)
decoded once to 224 px, the engine's data pipeline, per-epoch validation and
checkpoints, and `train.mixed_precision` on or off, nothing else changed. Models
start from random weights (no ResNet or ViT weights install offline). Throughput is
training samples per second of the last epoch (the first also pays for cuDNN's
autotuning); the peak is the run's own torch.cuda.max_memory_allocated, as the
engine records it in metrics.json. Runs alternate precision and share one runs
folder (so only the first decodes the images); the table shows medians over the repeats.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def one_run(model: str, mixed_precision: bool, args, store) -> dict:
    from train_speed import engine_config
    from transfer_core.trainer import METRICS_FILE, fit
    cfg = engine_config({"data": f"demo:fashion-mnist?per_class={args.per_class}", "model": model, "freeze": "full",
                         "epochs": args.epochs, "image_size": 224, "lr": 1e-4, "batch_size": args.batch_size})
    for key, value in (("model.pretrained", False), ("train.mixed_precision", mixed_precision), ("train.device", "cuda")):
        cfg.set(key, value)
    started = []
    t0 = time.perf_counter()
    result = fit(cfg.check(), store=store, observers=[lambda e: e.kind == "RunStarted" and started.append(e)])
    wall = time.perf_counter() - t0
    if result.status != "completed":
        return {"error": result.message}
    metrics = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())
    return {"wall_s": wall, "last_epoch_s": metrics["history"][-1]["seconds"], "hardware": metrics["hardware"],
            "val_accuracy": metrics["summary"]["val_accuracy"], "num_train": started[-1].num_train}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "vit_b_16"])
    p.add_argument("--per-class", type=int, default=500, help="Fashion-MNIST images per class (default 500: 5,000)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
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
            runs = {True: [], False: []}
            for r in range(args.repeats):
                for mp in ((False, True) if r % 2 == 0 else (True, False)):
                    out = one_run(model, mp, args, store)
                    runs[mp].append(out)
                    print(f"  {model} {'mixed' if mp else 'fp32'} repeat {r + 1}: {json.dumps(out)}", flush=True)
            rows.append((model, runs))
        store.close()
    print()
    print(table(rows, args))
    return 0 if all(not o.get("error") for _, runs in rows for outs in runs.values() for o in outs) else 1


def table(rows, args) -> str:
    lines = ["| model | precision | last-epoch samples/s (median) | peak GPU MiB | val acc | speed vs fp32 |",
             "|---|---|---|---|---|---|"]
    for model, runs in rows:
        stats = {}
        for mp, outs in runs.items():
            good = [o for o in outs if not o.get("error")]
            if not good:
                lines.append(f"| {model} | {'mixed' if mp else 'fp32'} | failed: {outs[0].get('error', '')[:80]} | | | |")
                continue
            sps = statistics.median(o["num_train"] / o["last_epoch_s"] for o in good)
            stats[mp] = (sps, statistics.median(o["hardware"]["peak_gpu_memory_mib"] for o in good),
                         statistics.median(o["val_accuracy"] for o in good), good[0]["hardware"]["precision"])
        for mp in (False, True):
            if mp not in stats:
                continue
            sps, peak, acc, precision = stats[mp]
            ratio = f"{sps / stats[False][0]:.2f}x" if False in stats else "–"
            lines.append(f"| {model} | {precision} | {sps:.0f} | {peak:.0f} | {acc:.3f} | {ratio} |")
    num_train = next((o["num_train"] for _, runs in rows for outs in runs.values() for o in outs if "num_train" in o), "?")
    lines.append("")
    lines.append(f"{args.per_class * 10} Fashion-MNIST images at 224 px ({num_train} train), full fine-tuning "
                 f"from random weights, batch {args.batch_size}, {args.epochs} epochs, medians of {args.repeats}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
