"""`train ... --devices N` and `resume ... --devices N`: the same command on N processes through torchrun
(torch.distributed.run), on this machine or, with --nnodes and a rendezvous, on several.

The launcher creates the run (so the run exists and is listed before any process starts), starts torchrun
in a session of its own and waits. Ctrl-C is turned into a stop request in the run folder (control.py), so
every process stops at the same step and rank 0 writes a checkpoint; a second Ctrl-C ends them at once.
When torchrun ends with an error (a process died or failed) and the run is still marked active, the
launcher marks it failed with advice: a distributed run never stays "running" without processes.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import torch

from .atomic import write_json
from .control import request
from .events import RunStatus
from .loop.distributed import LAUNCHED_AT
from .run_files import CONFIG_FILE, CONTROL_FILE
from .store import RunStore

# Options of the launcher, not of the processes it starts: (option, takes a value).
LAUNCH_OPTIONS = {"--devices": True, "--nnodes": True, "--node-rank": True, "--master-addr": True,
                  "--master-port": True, "--rdzv-endpoint": True, "--run-id": True}


def add_launch_options(parser) -> None:
    group = parser.add_argument_group("several processes (torchrun; docs/distributed.md)")
    group.add_argument("--devices", type=int, default=1, metavar="N",
                       help="processes on this machine, one per GPU (on the CPU: gloo; default 1)")
    group.add_argument("--nnodes", type=int, default=1, help="machines taking part (default 1)")
    group.add_argument("--node-rank", type=int, default=0, help="this machine's number, 0 to nnodes-1")
    group.add_argument("--master-addr", help="address of machine 0 (with --master-port), for several machines")
    group.add_argument("--master-port", type=int, help="a free port on machine 0")
    group.add_argument("--rdzv-endpoint", help="HOST:PORT of a c10d rendezvous, instead of --master-addr/--master-port")
    group.add_argument("--run-id", help=argparse.SUPPRESS)   # the run the launcher created, for its processes
    # The web app's folders: a run it launched reads data only under them (paths.py), as its own runs do.
    group.add_argument("--allowed-root", action="append", help=argparse.SUPPRESS)


def inside_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def wanted(args) -> bool:
    """The command asks for several processes and is not one of them already."""
    return (args.devices > 1 or args.nnodes > 1) and not inside_torchrun()


def check_options(args, device_type: str) -> str | None:
    """What is wrong with the launch options for a run on `device_type` ("cuda", "cpu"...), in one line
    (None: nothing)."""
    if args.devices < 1:
        return f"--devices must be 1 or more, not {args.devices}"
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        return f"--node-rank must be between 0 and --nnodes - 1 ({args.nnodes - 1}), not {args.node_rank}"
    if args.nnodes > 1 and not (args.rdzv_endpoint or (args.master_addr and args.master_port)):
        return "several machines need --master-addr and --master-port of machine 0 (or --rdzv-endpoint HOST:PORT)"
    if device_type == "cuda" and args.devices > torch.cuda.device_count():
        return (f"--devices {args.devices} asks for more GPUs than this machine has ({torch.cuda.device_count()}); "
                f"give --devices {torch.cuda.device_count()} or fewer")
    return None


def torchrun_command(args, argv: list[str], run_id: str | None) -> list[str]:
    """torchrun with this command's own arguments (without the launch options) for each process."""
    launch = ["--nproc-per-node", str(args.devices)]
    if args.nnodes == 1 and not args.master_addr and not args.rdzv_endpoint:
        launch.append("--standalone")   # a free port on this machine
    else:
        launch += ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank)]
        if args.rdzv_endpoint:
            launch += ["--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint]
        else:
            launch += ["--master-addr", args.master_addr, "--master-port", str(args.master_port)]
    own = strip_launch_options(argv) + (["--run-id", run_id] if run_id else [])
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "transfer_core", *own]


def strip_launch_options(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = LAUNCH_OPTIONS[name] and "=" not in arg
            continue
        out.append(arg)
    return out


def launch(args, argv: list[str], store: RunStore, run_id: str | None) -> int:
    """Run torchrun for `run_id` (None: on a machine other than 0, where rank 0 is not) and wait; returns its
    exit code (the run failed when it is not 0)."""
    control = store.run_dir(run_id) / CONTROL_FILE if run_id is not None else None
    process = subprocess.Popen(torchrun_command(args, argv, run_id if args.command == "train" else None),
                               env=launch_env(), start_new_session=True)   # signals reach this process only
    interrupts = 0

    def on_signal(signum, _frame) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and control is not None:
            print("stopping: every process stops at the same step and a checkpoint is written "
                  "(Ctrl-C again ends them at once)", file=sys.stderr)
            request(control, "stop")
        else:
            os.killpg(process.pid, signal.SIGTERM)

    # Ctrl-C, and a terminal closed or a job killed politely: the processes stop with a checkpoint.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0 and run_id is not None:
        _fail_if_active(store, run_id, code, args.devices * args.nnodes)
    return code


def _fail_if_active(store: RunStore, run_id: str, code: int, processes: int) -> None:
    """torchrun ended with an error, so none of the run's processes is left; rank 0 may not have had the time
    to record it (still marked active), or the store already says interrupted."""
    try:
        record = store.get_run(run_id)
    except Exception:   # noqa: BLE001 (the store is what failed: the message above is all there is)
        return
    if record.status in RunStatus.ACTIVE or record.status == RunStatus.INTERRUPTED:
        of = f" (of {processes})" if processes else ""
        message = f"a training process{of} ended with exit code {code} before the run finished"
        advice = (f"the lines above say why; resume it with `python -m transfer_core resume --run {run_id}` "
                  "(with any number of --devices)")
        store.set_status(run_id, RunStatus.FAILED, message=message, advice=advice)
        print(f"error: {message}; {advice}", file=sys.stderr)


def launch_env() -> dict[str, str]:
    """The processes' environment: ours, and when they were launched (a stop asked for from then on counts)."""
    return {**os.environ, LAUNCHED_AT: repr(time.time())}


class LaunchedRun:
    """A run the web app started on several processes: `train --devices N` in a process of its own, which the
    app follows through the run store like any command-line run, and controls through the run folder's
    request file (control.py)."""

    def __init__(self, store: RunStore, run_id: str, config, processes: int, allowed_roots: list | None = None):
        self.run_id = run_id
        run_dir = store.run_dir(run_id)
        self.control = run_dir / CONTROL_FILE
        write_json(run_dir / CONFIG_FILE, config.to_dict())   # (the run rewrites it, the same, as it starts)
        roots = [arg for root in allowed_roots or [] for arg in ("--allowed-root", str(root))]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "transfer_core", "--runs-dir", str(store.root), "train", "--config",
             str(run_dir / CONFIG_FILE), "--devices", str(processes), "--run-id", run_id, "--quiet", *roots],
            stdin=subprocess.DEVNULL, env=launch_env())
        threading.Thread(target=self._watch, args=(store,), name=f"launched-{run_id}", daemon=True).start()

    def _watch(self, store: RunStore) -> None:
        """A launcher that ended before its processes could record anything (a broken environment) must not
        leave the run queued: the app, which created it, owns it until then."""
        code = self.process.wait()
        if code != 0:
            _fail_if_active(store, self.run_id, code, processes=0)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, what: str) -> None:
        request(self.control, what)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
