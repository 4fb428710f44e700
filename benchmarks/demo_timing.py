"""How the built-in demos look while they train: how long the live curves move, and the total time.

    .venv/bin/python benchmarks/demo_timing.py                    # both demos, as the app runs them
    .venv/bin/python benchmarks/demo_timing.py --demo image --repeats 2 --threads 1

Each demo runs its Home-page config (app/demo.py) through fit() into a fresh, empty runs folder, so
nothing is reused from an earlier run (no feature cache): what a first-time user sees. Torch uses
as many threads as the app gives training (all cores but one, see app/resources.py), unless
--threads says otherwise.

Everything is read back from the run store, as the Train page reads it: the page polls the store
once a second (app/live.py REFRESH_SECONDS), so "curves moving" counts the seconds, from the run's
creation, in which new points (training steps or epochs) reached the store, and "moving span" is the
time from the first point to the last, "longest pause" the longest wait for a new point within it.
"first point" is when the chart stops being empty.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REFRESH_SECONDS = 1.0   # as app/live.py polls


def measure(modality: str, threads: int, overrides: dict | None = None) -> dict:
    import torch

    from app.demo import demo_config
    from transfer_core.store import RunStore
    from transfer_core.trainer import fit

    torch.set_num_threads(threads)
    cfg = demo_config(modality)
    for key, value in (overrides or {}).items():
        cfg.set(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        try:
            cpu = time.process_time()
            result = fit(cfg, store=store, name=f"{modality} demo timing")
            store.flush()
            # CPU seconds of this process: close to the wall time of an idle machine with one torch thread,
            # and unlike the wall time, hardly changed by other programs competing for the cores.
            return timings(store, result.run_id) | {"demo": modality, "threads": threads, "status": result.status,
                                                     "cpu_s": round(time.process_time() - cpu, 1),
                                                     "val_accuracy": result.metrics.get("val_accuracy"),
                                                     "preset": cfg.freeze.preset, "epochs": cfg.train.epochs,
                                                     "lr": cfg.optim.lr, "body_lr_factor": cfg.freeze.body_lr_factor}
        finally:
            store.close()


def timings(store, run_id: str) -> dict:
    """Seconds from the run's creation: when its curves start, how long they move, when it ends."""
    from transfer_core.events import RunEnded, RunFailed, RunStarted
    created = store.get_run(run_id).created
    events = store.events(run_id)
    points = sorted([*store.metrics(run_id, "step")["time"].tolist(), *store.metrics(run_id, "epoch")["time"].tolist()])
    ended = max(e.time for e in events if isinstance(e, (RunEnded, RunFailed)))
    started = min(e.time for e in events if isinstance(e, RunStarted))
    polls = {math.floor((t - created) / REFRESH_SECONDS) for t in points}
    gaps = [b - a for a, b in zip(points, points[1:])]
    return {"total_s": round(ended - created, 1), "run_started_s": round(started - created, 1),
            "first_point_s": round(points[0] - created, 1) if points else None,
            "moving_span_s": round(points[-1] - points[0], 1) if points else 0.0,
            "seconds_with_new_points": len(polls), "longest_pause_s": round(max(gaps, default=0.0), 1),
            "points": len(points)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", choices=("image", "text", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=1)
    default_threads = max(1, (os.cpu_count() or 2) - 1)
    parser.add_argument("--threads", type=int, default=default_threads,
                        help=f"torch threads (default {default_threads}: the app's, all cores but one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a demo setting, to try variants (e.g. --set freeze.top_k=3)")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    demos = ("image", "text") if args.demo == "both" else (args.demo,)
    print(f"{os.cpu_count()} CPU cores, {args.threads} torch thread(s), load average {os.getloadavg()[0]:.2f}")
    header = ("demo", "preset", "epochs", "total_s", "first_point_s", "moving_span_s", "seconds_with_new_points",
              "longest_pause_s", "cpu_s", "val_accuracy")
    print(" | ".join(header))
    for _ in range(args.repeats):
        for modality in demos:
            row = measure(modality, args.threads, overrides)
            print(" | ".join(str(row.get(h) if not isinstance(row.get(h), float) or h.endswith("_s")
                                 else f"{row[h]:.3f}") for h in header), flush=True)
            print("  " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
