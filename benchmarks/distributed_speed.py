"""Training throughput against the number of processes (train --devices N, torchrun): samples per second of
training (the run's own train_seconds, without start-up and validation) for 1, 2, ... processes on the same
run, and each one's ratio to one process in the same session. On the CPU (gloo) it shows what the
processes' messages cost; on a machine with N GPUs (NCCL), the speed-up.

    python benchmarks/distributed_speed.py [--processes 1 2] [--model tiny_cnn] [--epochs 3] [--size 64]
        [--images 512] [--batch-size 64] [--freeze full]

The data is synthetic (coloured shapes, 4 classes). Prints one line per process count and one JSON object last.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def shapes(root: Path, images: int, size: int) -> Path:
    """`images` random images in 4 classes: a bright square in one of the four quarters, on noise."""
    rng = np.random.default_rng(0)
    half = size // 2
    for k in range(4):
        (root / f"class_{k}").mkdir(parents=True)
    for i in range(images):
        k = i % 4
        pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
        top, left = (k // 2) * half, (k % 2) * half
        pixels[top + 2:top + half - 2, left + 2:left + half - 2] = 255
        Image.fromarray(pixels).save(root / f"class_{k}" / f"{i}.png")
    return root


def train(runs: Path, data: Path, processes: int, args) -> dict:
    command = [sys.executable, "-m", "transfer_core", "--runs-dir", str(runs), "train", "--data", str(data),
               "--model", args.model, "--image-size", str(args.size), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--freeze", args.freeze, "--quiet",
               "--set", f"model.pretrained={str(args.model != 'tiny_cnn').lower()}", "--devices", str(processes)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    metrics = json.loads((runs / summary["run_id"] / "metrics.json").read_text())
    trained = len(metrics["history"]) * num_train(runs / summary["run_id"])
    seconds = metrics["hardware"]["train_seconds"]
    return {"processes": processes, "world_size": summary["world_size"], "train_seconds": seconds,
            "samples_per_second": round(trained / seconds, 1), "val_accuracy": summary["val_accuracy"],
            "device": metrics["hardware"]["device"]}


def num_train(run_dir: Path) -> int:
    """The training samples, from the run's RunStarted line in log.txt."""
    for line in (run_dir / "log.txt").read_text().splitlines():
        event = json.loads(line.split(" ", 2)[2])
        if event.get("kind") == "RunStarted":
            return int(event["num_train"])
    raise RuntimeError(f"no RunStarted in {run_dir / 'log.txt'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--freeze", default="full")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        data = shapes(Path(scratch) / "data", args.images, args.size)
        for n in args.processes:
            row = train(Path(scratch) / f"runs{n}", data, n, args)
            row["ratio_to_one"] = round(row["samples_per_second"] / rows[0]["samples_per_second"], 2) if rows else 1.0
            rows.append(row)
            print(f"{n} process(es) on {row['device']}: {row['samples_per_second']} samples/s "
                  f"(x{row['ratio_to_one']} of the first), validation accuracy {row['val_accuracy']:.3f}", flush=True)
    print(json.dumps({"distributed": rows, "model": args.model, "freeze": args.freeze, "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
