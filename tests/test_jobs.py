"""The job manager: one job per device at a time, the rest queued; control by run id from any caller."""
from __future__ import annotations

import threading
import time

import pytest

from transfer_core.config import ConfigError, RunConfig
from transfer_core.events import RunStatus
from transfer_core.jobs import JobManager


def tiny_config(folder, epochs=2) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = str(folder)
    cfg.model.name = "tiny_cnn"
    cfg.model.pretrained = False
    cfg.model.image_size = 16
    cfg.train.epochs = epochs
    cfg.train.batch_size = 4
    cfg.train.device = "cpu"
    return cfg


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class Gate:
    """An observer that holds the training thread at its first batch until released (for deterministic tests)."""

    def __init__(self):
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, event):
        if event.kind == "BatchEnded" and not self.release.is_set():
            self.reached.set()
            self.release.wait(30)


def test_second_job_queues_and_stop_from_another_caller(digits_folder, store):
    gate = Gate()
    manager = JobManager(store, observers=[gate])
    first = manager.submit(tiny_config(digits_folder, epochs=50))
    second = manager.submit(tiny_config(digits_folder, epochs=1))
    assert gate.reached.wait(60)
    assert store.get_run(first).status == RunStatus.RUNNING
    assert store.get_run(second).status == RunStatus.QUEUED
    assert manager.queue_position(first) == 0 and manager.queue_position(second) == 1
    # Another caller (a second tab) only knows the run id.
    manager.stop(first)
    gate.release.set()
    assert manager.wait(first, 60).status == RunStatus.STOPPED
    assert manager.wait(second, 120).status == RunStatus.COMPLETED
    assert store.get_run(first).status == RunStatus.STOPPED
    manager.shutdown()


def test_pause_resume_and_continue_stopped_run(digits_folder, store):
    gate = Gate()
    manager = JobManager(store, observers=[gate])
    run_id = manager.submit(tiny_config(digits_folder, epochs=2))
    assert gate.reached.wait(60)
    manager.pause(run_id)
    gate.release.set()
    assert wait_for(lambda: store.get_run(run_id).status == RunStatus.PAUSED)
    manager.resume(run_id)
    assert wait_for(lambda: store.get_run(run_id).status != RunStatus.PAUSED)
    assert manager.wait(run_id, 120).status == RunStatus.COMPLETED
    # A finished run can be extended by more epochs.
    manager.resume(run_id, extra_epochs=1)
    assert manager.wait(run_id, 120).status == RunStatus.COMPLETED
    assert store.get_run(run_id).epochs_done == 3
    manager.shutdown()


def test_stopping_a_queued_job_never_starts_it(digits_folder, store):
    gate = Gate()
    manager = JobManager(store, observers=[gate])
    first = manager.submit(tiny_config(digits_folder, epochs=1))
    second = manager.submit(tiny_config(digits_folder, epochs=1))
    assert gate.reached.wait(60)
    manager.stop(second)
    gate.release.set()
    manager.wait(first, 120)
    assert store.get_run(second).status == RunStatus.STOPPED
    assert store.metrics(second, scope="step").empty
    manager.shutdown()


def test_invalid_config_is_rejected_before_a_run_exists(digits_folder, store):
    manager = JobManager(store)
    cfg = tiny_config(digits_folder)
    cfg.train.batch_size = 0
    with pytest.raises(ConfigError, match="train.batch_size"):
        manager.submit(cfg)
    assert store.list_runs() == []
    manager.shutdown()
