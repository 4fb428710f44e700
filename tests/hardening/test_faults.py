"""Hardening, faults: what happens to a run, its checkpoint and the run store when things go wrong.

Each test names one fault. All run on the CPU with tiny random-initialised models (tiny_cnn on the
8x8 digits from tests/conftest.py). Where a fault cannot happen for real on this machine, the test
simulates it and says so: there is no GPU (CUDA out of memory is raised by a hook), the tests may
run as root (chmod does not stop root), and nobody fills the disk for a test (ENOSPC is raised by
a patched write).
"""
from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import Recorder, image_config as trainer_image_config

import transfer_core.trainer as trainer_module
from transfer_core.checkpoint import load_checkpoint
from transfer_core.config import RunConfig
from transfer_core.events import BatchEnded, EpochEnded, RunEnded, RunStarted, RunStatus
from transfer_core.jobs import JobManager
from transfer_core.store import INTERRUPTED_MESSAGE, RunStore
from transfer_core.run_files import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE
from transfer_core.trainer import fit

ROOT = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parent / "faultinject"   # sitecustomize.py for CLI subprocesses


# ---------------------------------------------------------------- helpers

def image_config(folder, **sets) -> RunConfig:
    """The trainer tests' tiny config with every layer training: every step goes through the whole net (no feature cache)."""
    return trainer_image_config(folder, **{"freeze__preset": "full", **sets})


class NetFault:
    """Installs a forward pre-hook on every net fit() builds; `fault(batch_size)` may raise.

    Counts training forward passes per epoch (read from the run's own BatchEnded events, which the
    test forwards with `observe`), so a fault can hit "epoch 2, step 2" of an attempt.
    """

    def __init__(self, monkeypatch, fault):
        self.fault = fault
        self.train_batches: list[int] = []     # batch size of every training forward pass
        self.epoch, self.step_in_epoch = 0, 0  # position of the next step
        build = trainer_module.build_model

        def build_with_hook(*args, **kwargs):
            built = build(*args, **kwargs)
            built.net.register_forward_pre_hook(self._hook, with_kwargs=True)
            return built
        monkeypatch.setattr(trainer_module, "build_model", build_with_hook)

    def _hook(self, module, args, kwargs):
        if not module.training:
            return None
        tensor = next(t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor))
        self.fault(self, len(tensor))
        self.train_batches.append(len(tensor))
        return None

    def observe(self, event):
        if event.kind == "BatchEnded":
            self.epoch, self.step_in_epoch = event.epoch, event.step_in_epoch
        elif event.kind in ("EpochEnded", "RunStarted"):
            self.epoch = event.epoch + 1 if event.kind == "EpochEnded" else event.start_epoch
            self.step_in_epoch = 0


def cuda_oom(batch_size):
    # What PyTorch raises on a GPU that runs out of memory (simulated: this machine has no GPU).
    return torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {batch_size * 512} MiB (simulated)")


def same_weights(store, run_a, run_b) -> bool:
    a = load_file(str(store.run_dir(run_a) / WEIGHTS_FILE))
    b = load_file(str(store.run_dir(run_b) / WEIGHTS_FILE))
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def integrity(db_path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def cli(*args, runs_dir, fault: str | None = None, wait=True, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("TRANSFER_TEST_FAULT", None)
    if fault:
        env["TRANSFER_TEST_FAULT"] = fault
        env["PYTHONPATH"] = os.pathsep.join([str(FAULTS), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "transfer_core", "--runs-dir", str(runs_dir), *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def summary_of(proc) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


def finished_run(store) -> str:
    """Another run in the same store (written through the store's API), to check it stays readable."""
    run_id = store.create_run({"train": {"epochs": 1}}, modality="image", model="tiny_cnn", dataset="elsewhere")
    now = time.time()
    store.record_event(RunStarted(run_id, now, epochs=1, steps_per_epoch=1, start_epoch=0, num_train=4, num_val=2,
                                  classes=("a", "b"), device="cpu", trainable_params=1, total_params=1))
    store.record_event(BatchEnded(run_id, now, epoch=0, step=1, step_in_epoch=1, loss=0.5, lr=0.01,
                                  samples_per_second=10.0))
    store.record_event(EpochEnded(run_id, now, epoch=0, step=1, train_loss=0.5, train_accuracy=0.75, val_loss=0.6,
                                  val_accuracy=0.5, val_macro_f1=0.5, lr=0.01, seconds=1.0))
    store.record_event(RunEnded(run_id, now, status=RunStatus.COMPLETED, epochs_done=1, best_epoch=0,
                                metrics={"val_accuracy": 0.5}))
    return run_id


def assert_other_run_intact(store, run_id) -> None:
    record = store.get_run(run_id)
    assert record.status == RunStatus.COMPLETED and record.best_metrics["val_accuracy"] == 0.5
    assert len(store.metrics(run_id, "epoch")) == 1 and len(store.metrics(run_id, "step")) == 1


# ---------------------------------------------------------------- 1. an exception inside an epoch

def test_exception_inside_epoch_fails_run_keeps_checkpoint_and_resume_finishes(digits_folder, store):
    cfg = image_config(digits_folder, train__epochs=2, optim__scheduler="onecycle", model__head_dropout=0.2)
    baseline = fit(cfg, store=store)

    def boom(fault, batch_size):
        if fault.epoch == 1 and fault.step_in_epoch == 1:   # the model itself fails at epoch 2, step 2
            raise RuntimeError("boom in epoch 2")
    mp = pytest.MonkeyPatch()
    fault = NetFault(mp, boom)
    failed = fit(cfg.copy(), store=store, observers=[fault.observe])
    mp.undo()
    assert failed.status == RunStatus.FAILED
    assert failed.message == "RuntimeError: boom in epoch 2" and "log.txt" in failed.advice
    record = store.get_run(failed.run_id)
    assert (record.status, record.message) == (RunStatus.FAILED, failed.message)
    assert "Traceback" in (store.run_dir(failed.run_id) / "log.txt").read_text()
    # The last checkpoint is the end of epoch 1, intact: nothing of the broken epoch 2 is in it. (That
    # short epoch's end was held in memory, train.checkpoint_every_s, and the failure wrote it.)
    state = load_checkpoint(store.run_dir(failed.run_id) / CHECKPOINT_FILE)
    assert (state["epoch"], state["step_in_epoch"], len(state["history"])) == (1, 0, 1)

    resumed = fit(None, store=store, run_id=failed.run_id, resume=True)
    assert resumed.status == RunStatus.COMPLETED, resumed.message
    assert resumed.epochs_done == 2
    assert store.get_run(failed.run_id).status == RunStatus.COMPLETED
    # ...and ends exactly where the run would have without the failure.
    assert resumed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=1e-6)
    assert resumed.metrics["val_accuracy"] == baseline.metrics["val_accuracy"]
    assert same_weights(store, baseline.run_id, failed.run_id)


# ---------------------------------------------------------------- 2. CUDA out of memory

def test_out_of_memory_retries_with_half_the_batch_size(digits_folder, store, monkeypatch):
    # Simulated (no GPU here): training batches larger than 4 raise torch.cuda.OutOfMemoryError
    # from the model, from epoch 2 on; epoch 1 trains at batch size 16.
    def oom(fault, batch_size):
        if fault.epoch >= 1 and batch_size > 4 and (fault.step_in_epoch >= fault.first_ok_steps):
            raise cuda_oom(batch_size)

    cfg = image_config(digits_folder, train__epochs=2, train__batch_size=16, optim__optimizer="adamw",
                       optim__scheduler="cosine")
    runs = {}
    for first_ok_steps in (1, 0):
        # 1: the optimizer takes one step of epoch 2 at batch size 16 before memory runs out;
        # 0: memory runs out at epoch 2's first step. Both must end identically: the retry restarts
        # epoch 2 from its checkpoint, so no step of the broken attempt survives.
        rec = Recorder()
        fault = NetFault(monkeypatch, oom)
        fault.first_ok_steps = first_ok_steps
        result = fit(cfg.copy(), store=store, observers=[fault.observe, rec])
        assert result.status == RunStatus.COMPLETED, result.message
        assert result.epochs_done == 2
        runs[first_ok_steps] = result
        assert rec.notices()[-2:] == ["Out of memory at batch size 16; retrying epoch 2 with batch size 8",
                                      "Out of memory at batch size 8; retrying epoch 2 with batch size 4"]
        started = [e for e in rec.events if e.kind == "RunStarted"]
        n = started[0].num_train
        assert [(s.start_epoch, s.steps_per_epoch) for s in started] == [(0, -(-n // 16)), (1, -(-n // 8)), (1, -(-n // 4))]
        after_retries = -(-n // 4)
        assert max(fault.train_batches[-after_retries:]) <= 4 < fault.train_batches[-after_retries - 1]
        # The config keeps what the user asked for; the run's state (store, checkpoint, events) what it trained with.
        record = store.get_run(result.run_id)
        assert (record.config["train"]["batch_size"], record.batch_size) == (16, 4)
        run_dir = store.run_dir(result.run_id)
        assert json.loads((run_dir / CONFIG_FILE).read_text())["train"]["batch_size"] == 16
        assert load_checkpoint(run_dir / CHECKPOINT_FILE)["batch_size"] == 4
        assert [s.batch_size for s in started] == [16, 8, 4]
        logged = [e.message for e in store.events(result.run_id) if e.kind == "Notice"]
        assert "Out of memory at batch size 8; retrying epoch 2 with batch size 4" in logged
        assert "retrying epoch 2 with batch size 4" in (run_dir / "log.txt").read_text()
    assert runs[1].metrics["val_loss"] == pytest.approx(runs[0].metrics["val_loss"], abs=1e-6)
    assert same_weights(store, runs[0].run_id, runs[1].run_id)

    # The Train page shows the notice (AppTest on the same runs directory).
    from streamlit.testing.v1 import AppTest
    import streamlit as st
    from app.resources import shutdown_all
    monkeypatch.setenv("TRANSFER_CORE_RUNS", str(store.root))
    monkeypatch.setenv("TRANSFER_APP_DATA", str(store.root.parent / "appdata"))
    monkeypatch.setenv("TRANSFER_APP_TORCH_THREADS", str(torch.get_num_threads()))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app" / "router.py"), default_timeout=60)
        at.session_state["current_run"] = runs[0].run_id
        at.run()
        at.switch_page("../pages/3_train.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Out of memory at batch size 8; retrying epoch 2 with batch size 4" in c.value for c in at.caption)
    finally:
        shutdown_all()
        st.cache_resource.clear()


def test_out_of_memory_down_to_batch_size_1_fails_with_advice(digits_folder, store, monkeypatch):
    # Simulated (no GPU here): every training forward pass runs out of memory.
    def oom(fault, batch_size):
        raise cuda_oom(batch_size)

    rec = Recorder()
    fault = NetFault(monkeypatch, oom)
    result = fit(image_config(digits_folder, train__batch_size=4), store=store, observers=[fault.observe, rec])
    assert result.status == RunStatus.FAILED
    assert rec.notices() == ["Out of memory at batch size 4; retrying epoch 1 with batch size 2",
                             "Out of memory at batch size 2; retrying epoch 1 with batch size 1"]
    assert fault.train_batches == []       # not one step was taken
    assert result.message == "the device ran out of memory even at batch size 1"
    for advice in ("mixed precision", "freeze more", "smaller"):
        assert advice in result.advice
    record = store.get_run(result.run_id)
    assert (record.status, record.message, record.advice) == (RunStatus.FAILED, result.message, result.advice)
    assert (record.config["train"]["batch_size"], record.batch_size) == (4, 1)
    state = load_checkpoint(store.run_dir(result.run_id) / CHECKPOINT_FILE)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 0, 0)


# ---------------------------------------------------------------- 3. SIGKILL in the middle of an epoch

def test_sigkill_mid_epoch_is_interrupted_and_resume_matches_uninterrupted(digits_folder, tmp_path):
    from transfer_core.cli import build_parser, config_from_args
    args = ["train", "--data", digits_folder, "--model", "tiny_cnn", "--epochs", 3, "--image-size", 16,
            "--batch-size", 4, "--seed", 7, "--set", "model.pretrained=false", "--set", "freeze.preset=full",
            "--set", "optim.lr=0.01", "--set", "optim.scheduler=onecycle", "--quiet",
            "--set", "train.checkpoint_every_s=0",   # these epochs take a second: checkpoint each one
            "--set", "freeze.body_lr_factor=1"]      # every rate given: `train` picks none, as config_from_args
    runs = tmp_path / "runs"
    # Each training step sleeps 0.15 s (same numbers, only slower) so the process can be caught mid-epoch.
    victim = cli(*args, runs_dir=runs, fault="slow_steps=0.15", wait=False)
    try:
        # Meanwhile the uninterrupted run, in this process, on exactly the config the CLI builds.
        with RunStore(tmp_path / "baseline") as baseline_store:
            expected = fit(config_from_args(build_parser().parse_args(["--runs-dir", "x", *map(str, args)])),
                           store=baseline_store)
        assert expected.status == RunStatus.COMPLETED, expected.message
        deadline = time.monotonic() + 180
        run_id = None
        watcher = None
        while time.monotonic() < deadline and victim.poll() is None:
            if watcher is None and (runs / "runs.sqlite").exists():
                watcher = RunStore(runs)
            listed = watcher.list_runs() if watcher else []
            if listed:
                run_id = listed[0].id
                epochs, steps = watcher.metrics(run_id, "epoch"), watcher.metrics(run_id, "step")
                if len(epochs) == 1 and (steps["epoch"] == 1).any():   # epoch 2 has begun
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"the run never reached epoch 2 (exit {victim.poll()}): {victim.stderr.read()}")
        watcher.close()
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(30) == -signal.SIGKILL
        victim.stdout.close()
        victim.stderr.close()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()

    with RunStore(runs) as store:
        assert store.get_run(run_id).status == RunStatus.RUNNING    # what the dead process left behind
        jobs = JobManager(store)                                     # a fresh app start reconciles
        record = store.get_run(run_id)
        assert (record.status, record.message) == (RunStatus.INTERRUPTED, INTERRUPTED_MESSAGE)
        assert record.epochs_done == 1
        jobs.shutdown()
    state = load_checkpoint(runs / run_id / CHECKPOINT_FILE)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)

    resumed = summary_of(cli("resume", "--run", run_id, "--quiet", runs_dir=runs))
    assert (resumed["status"], resumed["epochs"]) == ("completed", 3)
    assert resumed["val_accuracy"] == expected.metrics["val_accuracy"]
    assert resumed["val_loss"] == pytest.approx(expected.metrics["val_loss"], abs=1e-6)
    a = load_file(str(runs / run_id / WEIGHTS_FILE))
    b = load_file(str(tmp_path / "baseline" / expected.run_id / WEIGHTS_FILE))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with RunStore(runs) as store:
        assert store.get_run(run_id).status == RunStatus.COMPLETED
        assert list(store.metrics(run_id, "epoch")["epoch"]) == [0, 1, 2]


# ---------------------------------------------------------------- 4. unwritable runs directory, full disk

def test_unwritable_runs_directory_is_one_line_and_keeps_the_database(digits_folder, tmp_path):
    runs = tmp_path / "runs"
    with RunStore(runs) as store:
        other = finished_run(store)
    if os.geteuid() != 0:
        os.chmod(runs, 0o500)            # real: read-only for this user
        target = runs
    else:
        # chmod does not stop root, so use another real obstacle: the runs path's parent is a file.
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a regular file")
        target = blocker / "runs"
    try:
        proc = cli("train", "--data", digits_folder, "--model", "tiny_cnn", "--image-size", 16, "--quiet",
                   runs_dir=target)
        line = one_line_error(proc)
        assert line.startswith("error: cannot write to runs directory") and str(target) in line
        assert "choose another with --runs-dir" in line
    finally:
        os.chmod(runs, 0o700)
    assert integrity(runs / "runs.sqlite") == "ok"
    with RunStore(runs) as store:
        assert [r.id for r in store.list_runs()] == [other]
        assert_other_run_intact(store, other)


def test_disk_full_while_checkpointing_fails_run_with_advice_and_keeps_db(digits_folder, store, monkeypatch):
    other = finished_run(store)
    # Simulated ENOSPC (nobody fills the disk for a test): the second checkpoint write (end of epoch 2,
    # in the background) writes some bytes, then fails as a full disk does; the run learns it at the next save.
    real_save, calls = torch.save, []

    def full_disk_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr("transfer_core.checkpoint.torch.save", full_disk_save)
    result = fit(image_config(digits_folder, train__checkpoint_every_s=0), store=store)   # a checkpoint per epoch
    monkeypatch.undo()

    assert result.status == RunStatus.FAILED
    assert result.message.startswith("the disk is full") and "\n" not in result.message
    assert "free some disk space" in result.advice and "another runs directory" in result.advice
    record = store.get_run(result.run_id)
    assert (record.status, record.message, record.advice) == (RunStatus.FAILED, result.message, result.advice)
    assert integrity(store.db_path) == "ok"
    assert_other_run_intact(store, other)
    checkpoints = store.run_dir(result.run_id) / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]   # no torn temporary file
    assert load_checkpoint(checkpoints / "last.pt")["epoch"] == 1          # the last good one
    # Space is back: the run resumes from that checkpoint and finishes.
    resumed = fit(None, store=store, run_id=result.run_id, resume=True)
    assert resumed.status == RunStatus.COMPLETED and resumed.epochs_done == 3


def test_disk_full_writing_final_weights_then_resume_finishes(digits_folder, store, monkeypatch):
    # Simulated ENOSPC in the safetensors write of the final weights, after every epoch trained.
    def full_disk(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
    monkeypatch.setattr(trainer_module, "save_file", full_disk)
    result = fit(image_config(digits_folder, train__epochs=1), store=store)
    monkeypatch.undo()
    assert result.status == RunStatus.FAILED and result.message.startswith("the disk is full while writing")
    run_dir = store.run_dir(result.run_id)
    assert not list(run_dir.glob("*.safetensors*"))                       # nothing torn left behind
    assert store.get_run(result.run_id).status == RunStatus.FAILED
    assert integrity(store.db_path) == "ok"
    resumed = fit(None, store=store, run_id=result.run_id, resume=True)   # it only has to finish
    assert resumed.status == RunStatus.COMPLETED and resumed.epochs_done == 1
    assert (run_dir / WEIGHTS_FILE).exists()


def test_disk_full_in_the_cli_is_one_line(digits_folder, tmp_path):
    runs = tmp_path / "runs"
    with RunStore(runs) as store:
        other = finished_run(store)
    # Simulated ENOSPC in the CLI process: its only checkpoint write, after the last epoch, fails (see faultinject/).
    proc = cli("train", "--data", digits_folder, "--model", "tiny_cnn", "--image-size", 16, "--epochs", 2,
               "--set", "model.pretrained=false", "--quiet", runs_dir=runs, fault="enospc_save=1")
    line = one_line_error(proc)
    assert line.startswith("error: the disk is full") and "free some disk space" in line
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "failed"
    assert integrity(runs / "runs.sqlite") == "ok"
    with RunStore(runs) as store:
        failed = [r for r in store.list_runs() if r.id != other]
        assert [r.status for r in failed] == [RunStatus.FAILED]
        assert failed[0].message.startswith("the disk is full")
        assert_other_run_intact(store, other)


# ---------------------------------------------------------------- 5. the run store under load

READER_PROCESS = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from app.live import MAX_STEP_POINTS
    from app.progress import live_snapshot
    from transfer_core.store import RunStore
    root, run_id, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rounds, errors = 0, []
    with RunStore(root) as store:
        print("ready", flush=True)
        while not stop.exists():
            try:
                live_snapshot(store, run_id, MAX_STEP_POINTS)
                store.list_runs()
                rounds += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                break
    print(json.dumps({"rounds": rounds, "errors": errors}), flush=True)
""")


def test_store_under_load_readers_never_see_locked_and_writes_exceed_1000_per_second(store, tmp_path):
    from app.live import MAX_STEP_POINTS
    from app.progress import live_snapshot

    def ui_refresh():
        # What the Train page's live view reads on every refresh (app/live.py _draw), plus the runs list.
        live_snapshot(store, run_id, MAX_STEP_POINTS)
        store.list_runs()

    run_id = store.create_run({"train": {"epochs": 1000}}, modality="text", model="tiny_bert", dataset="load")
    store.record_event(RunStarted(run_id, time.time(), epochs=1000, steps_per_epoch=2000, start_epoch=0,
                                  num_train=64_000, num_val=100, classes=("a", "b"), device="cpu",
                                  trainable_params=10, total_params=100))
    stop_file = tmp_path / "stop"
    reader_proc = subprocess.Popen([sys.executable, "-c", READER_PROCESS, str(store.root), run_id, str(stop_file)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert reader_proc.stdout.readline().strip() == "ready", reader_proc.stderr.read()
        errors: list[BaseException] = []
        stop = threading.Event()
        written, reads = [0], [0, 0]

        def write():
            try:
                step = 0
                deadline = time.perf_counter() + 2.0
                while time.perf_counter() < deadline:
                    step += 1
                    store.record_event(BatchEnded(run_id, time.time(), epoch=(step - 1) // 2000, step=step,
                                                  step_in_epoch=(step - 1) % 2000 + 1, loss=1.0 / step, lr=0.01,
                                                  samples_per_second=1000.0))
                    if step % 2000 == 0:
                        store.record_event(EpochEnded(run_id, time.time(), epoch=step // 2000 - 1, step=step,
                                                      train_loss=0.5, train_accuracy=0.5, val_loss=0.5,
                                                      val_accuracy=0.5, val_macro_f1=0.5, lr=0.01, seconds=1.0))
                store.flush()
                written[0] = step
            except BaseException as exc:
                errors.append(exc)
            finally:
                stop.set()

        def read(i):
            try:
                while not stop.is_set():
                    ui_refresh()
                    reads[i] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(i,)) for i in range(2)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.perf_counter() - started
    finally:
        stop_file.write_text("stop")
        out, err = reader_proc.communicate(timeout=60)
    assert not errors, errors
    other = json.loads(out.strip().splitlines()[-1])
    assert other["errors"] == [], other["errors"]
    rate = written[0] / elapsed
    print(f"\nrun store: {rate:,.0f} BatchEnded events/s sustained, with 2 reader threads "
          f"({reads[0]} + {reads[1]} UI refreshes) and a reader process ({other['rounds']} refreshes)")
    assert min(reads) > 0 and other["rounds"] > 0
    assert len(store.metrics(run_id, scope="step")) == written[0]
    assert rate > 1000
