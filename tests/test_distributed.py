"""One run on two processes (torchrun, gloo on the CPU), through the command line as a user starts it:
the same numbers as one process with the same global batch size and seed (full fine-tuning, and a head-only
run on the frozen-feature cache); Ctrl-C stops both processes at the same step with a checkpoint, and one
process resumes the run to the numbers of an uninterrupted run; a process that dies ends the run as failed
with advice, never hung."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli import cli

from transfer_core.events import RunStatus
from transfer_core.run_files import CHECKPOINT_FILE, METRICS_FILE
from transfer_core.store import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TEXT_RUN = ("--model", "tiny_bert", "--freeze", "full", "--max-length", 16, "--lr", 0.01, "--set",
            "freeze.body_lr_factor=1", "--set", "model.pretrained=false")

IMAGE_HEAD_RUN = ("--model", "tiny_cnn", "--freeze", "feature_extraction", "--image-size", 16, "--lr", 0.05, "--set",
                  "model.pretrained=false")
EPOCHS = 200   # long enough to be stopped in the middle


def summary(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def history(runs: Path, run_id: str) -> list[dict]:
    return json.loads((runs / run_id / METRICS_FILE).read_text())["history"]


def assert_same_training(one: tuple[Path, dict], two: tuple[Path, dict], val_tolerance: float,
                         train_tolerance: float) -> None:
    (runs1, first), (runs2, second) = one, two
    assert first["world_size"] == 1 and second["world_size"] == 2
    assert second["val_accuracy"] == first["val_accuracy"]
    assert second["val_loss"] == pytest.approx(first["val_loss"], abs=val_tolerance)
    for a, b in zip(history(runs1, first["run_id"]), history(runs2, second["run_id"]), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=train_tolerance)


def test_two_processes_train_as_one_does(topics_csv, tmp_path):
    args = ("train", "--data", topics_csv, *TEXT_RUN, "--epochs", 6, "--batch-size", 8, "--quiet")
    one = cli(*args, runs_dir=tmp_path / "one")
    two = cli(*args, "--devices", 2, runs_dir=tmp_path / "two")
    # The transformer's dropout draws its masks per process, so the training losses differ a little (measured:
    # 0.024 at most); the trained models agree (validation loss 0.47855 and 0.47887).
    assert_same_training((tmp_path / "one", summary(one)), (tmp_path / "two", summary(two)), val_tolerance=2e-3,
                         train_tolerance=0.05)


def test_a_head_only_run_shards_the_frozen_features(digits_folder, tmp_path):
    args = ("train", "--data", digits_folder, *IMAGE_HEAD_RUN, "--epochs", 5, "--batch-size", 8, "--quiet")
    one = cli(*args, runs_dir=tmp_path / "one")
    two = cli(*args, "--devices", 2, runs_dir=tmp_path / "two")
    assert_same_training((tmp_path / "one", summary(one)), (tmp_path / "two", summary(two)), val_tolerance=1e-5,
                         train_tolerance=1e-5)
    log = (tmp_path / "two" / summary(two)["run_id"] / "log.txt").read_text()
    assert "each sample went through it once" in log


# ---- stopping, resuming, dying -------------------------------------------------------------------

def start(runs: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "transfer_core", "--runs-dir", str(runs), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(runs: Path, launcher: subprocess.Popen, epochs: int = 1, timeout: float = 180) -> str:
    """The run's id once it has trained `epochs` epochs."""
    store = RunStore(runs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()
        records = store.list_runs()
        if records and len(store.metrics(records[0].id, "epoch")) >= epochs:
            return records[0].id
        time.sleep(0.2)
    raise AssertionError("the run did not train its first epoch in time")


def processes_of(run_id: str) -> list[int]:
    """Live processes started for the run (their command line names it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and run_id in (proc / "cmdline").read_bytes().decode(errors="replace"):
                if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def local_rank(pid: int) -> int | None:
    """A training process's LOCAL_RANK (torchrun's agent has none)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next((int(v.split(b"=", 1)[1]) for v in environ if v.startswith(b"LOCAL_RANK=")), None)


def test_ctrl_c_stops_both_processes_and_one_resumes_to_the_uninterrupted_numbers(digits_folder, tmp_path):
    # A run without dropout or BatchNorm in training mode, so that one process and two take the same steps.
    args = ("train", "--data", digits_folder, *IMAGE_HEAD_RUN, "--epochs", EPOCHS, "--batch-size", 2, "--quiet")
    launcher = start(tmp_path / "two", *args, "--devices", 2)
    run_id = wait_for_epochs(tmp_path / "two", launcher)
    assert sorted(local_rank(pid) for pid in processes_of(run_id) if local_rank(pid) is not None) == [0, 1]
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=180)
    assert launcher.returncode == 0, err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert stopped["status"] == RunStatus.STOPPED and stopped["world_size"] == 2 and stopped["epochs"] < EPOCHS
    assert (tmp_path / "two" / run_id / CHECKPOINT_FILE).exists() and processes_of(run_id) == []

    resumed = summary(cli("resume", "--run", run_id, "--quiet", runs_dir=tmp_path / "two"))
    whole = summary(cli(*args, runs_dir=tmp_path / "one"))
    assert resumed["status"] == RunStatus.COMPLETED and resumed["world_size"] == 1 and resumed["epochs"] == EPOCHS
    assert resumed["val_accuracy"] == whole["val_accuracy"]
    assert resumed["val_loss"] == pytest.approx(whole["val_loss"], abs=1e-5)


def test_a_process_that_dies_ends_the_run_as_failed_with_advice(topics_csv, tmp_path):
    launcher = start(tmp_path, "train", "--data", topics_csv, *TEXT_RUN, "--epochs", 500, "--batch-size", 2,
                     "--quiet", "--devices", 2)
    run_id = wait_for_epochs(tmp_path, launcher)
    rank_one = next(pid for pid in processes_of(run_id) if local_rank(pid) == 1)
    os.kill(rank_one, signal.SIGKILL)
    _, err = launcher.communicate(timeout=240)
    assert launcher.returncode != 0
    record = RunStore(tmp_path).get_run(run_id)
    assert record.status == RunStatus.FAILED and record.advice, (record.message, err)
    assert processes_of(run_id) == []


# ---- the launcher's parts ----------------------------------------------------------------------------

def test_a_request_written_after_the_launch_counts_and_one_from_before_does_not(tmp_path):
    from transfer_core.control import RunControl, request
    path = tmp_path / "control.txt"
    request(path, "stop")
    old = RunControl()
    old.watch(path, since=time.time() + 5)   # written before this launch: an earlier session's
    assert not old.stop_requested
    early = RunControl()
    early.watch(path, since=time.time() - 5)   # written after the launch, before the run watched: honoured
    assert early.stop_requested
    paused = RunControl()
    paused.watch(path)
    time.sleep(0.3)
    request(path, "pause")
    time.sleep(0.3)   # (the file is read at most every POLL_SECONDS)
    assert paused.paused and not paused.stop_requested
    request(path, "run")
    time.sleep(0.3)
    assert not paused.paused


def test_launch_options_are_checked_and_stripped(monkeypatch):
    from types import SimpleNamespace

    from transfer_core.launch import check_options, strip_launch_options, torchrun_command
    args = SimpleNamespace(command="train", devices=4, nnodes=1, node_rank=0, master_addr=None, master_port=None,
                           rdzv_endpoint=None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)   # (no GPU here: two are pretended)
    assert "more GPUs than this machine has (2)" in check_options(args, "cuda")
    assert check_options(args, "cpu") is None
    assert "--master-addr" in check_options(SimpleNamespace(**{**vars(args), "nnodes": 2}), "cpu")
    argv = ["--runs-dir", "r", "train", "--devices", "4", "--data", "d", "--master-port=29500", "--run-id", "x"]
    assert strip_launch_options(argv) == ["--runs-dir", "r", "train", "--data", "d"]
    command = torchrun_command(args, argv, "run-1")
    assert command[-2:] == ["--run-id", "run-1"] and "--standalone" in command and "--nproc-per-node" in command


def test_a_launched_run_reads_only_under_the_apps_folders(digits_folder, tmp_path):
    proc = cli("train", "--data", digits_folder, *IMAGE_HEAD_RUN, "--epochs", 1, "--quiet", "--allowed-root",
               tmp_path / "elsewhere", runs_dir=tmp_path / "runs", check=False)
    assert proc.returncode != 0 and "outside" in proc.stderr
