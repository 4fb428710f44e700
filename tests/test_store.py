"""The run store: runs, metrics, event log, reconciliation, concurrency and failure handling."""
from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from transfer_core.errors import RunError
from transfer_core.events import (BatchEnded, EpochEnded, Notice, RunEnded, RunFailed, RunStarted,
                                  RunStatus, event_from_dict)
from transfer_core.liveness import process_start_time
from transfer_core.store import INTERRUPTED_MESSAGE, RunRecord, RunStore


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs") as s:
        yield s


def _new_run(store: RunStore, **kwargs) -> str:
    args = dict(modality="text", model="minilm", dataset="demo:bbc-news")
    args.update(kwargs)
    return store.create_run({"train": {"epochs": 2}}, **args)


def _started(run_id, start_epoch=0):
    return RunStarted(run_id=run_id, time=time.time(), epochs=3, steps_per_epoch=4, start_epoch=start_epoch,
                      num_train=40, num_val=10, classes=("a", "b"), device="cpu",
                      trainable_params=10, total_params=100)


def _batch(run_id, epoch, step, loss=1.0):
    return BatchEnded(run_id=run_id, time=time.time(), epoch=epoch, step=step, step_in_epoch=(step - 1) % 4 + 1,
                      loss=loss, lr=0.01, samples_per_second=100.0)


def _epoch(run_id, epoch, val_accuracy):
    return EpochEnded(run_id=run_id, time=time.time(), epoch=epoch, step=(epoch + 1) * 4, train_loss=1.0 / (epoch + 1),
                      train_accuracy=0.5 + epoch / 10, val_loss=0.9 / (epoch + 1), val_accuracy=val_accuracy,
                      val_macro_f1=val_accuracy - 0.05, lr=0.01, seconds=2.0)


def _simulate(store, run_id, accuracies=(0.6, 0.8, 0.7), start_epoch=0):
    store.record_event(_started(run_id, start_epoch))
    for epoch in range(start_epoch, len(accuracies)):
        for i in range(4):
            step = epoch * 4 + i + 1
            store.record_event(_batch(run_id, epoch, step, loss=1.0 / step))
        store.record_event(_epoch(run_id, epoch, accuracies[epoch]))


def test_create_get_list_and_prefix(store, tmp_path):
    first = _new_run(store)
    second = _new_run(store, model="efficientnet_lite0", dataset="/data/flowers.zip", modality="image",
                      dataset_fingerprint="abc")
    assert first != second
    assert store.run_dir(first) == tmp_path / "runs" / first
    assert store.run_dir(first).is_dir()

    record = store.get_run(second)
    assert isinstance(record, RunRecord)
    assert record.name == "efficientnet_lite0 on flowers"
    assert store.get_run(first).name == "minilm on BBC News"
    assert record.status == RunStatus.QUEUED
    assert record.config == {"train": {"epochs": 2}}
    assert record.best_metrics == {}
    assert (record.modality, record.model, record.dataset_fingerprint) == ("image", "efficientnet_lite0", "abc")
    assert record.pid == os.getpid()
    assert record.duration >= 0

    assert [r.id for r in store.list_runs()] == [second, first]
    assert [r.id for r in store.list_runs(limit=1)] == [second]
    store.set_status(first, RunStatus.COMPLETED)
    assert [r.id for r in store.list_runs(status=RunStatus.COMPLETED)] == [first]

    # A unique prefix works; the random suffix makes a full-id-minus-one-char prefix unique.
    assert store.get_run(first[:-1]).id == first
    assert store.run_dir(first[:-1]) == store.run_dir(first)
    with pytest.raises(RunError, match="no run 'nope'; list runs with `python -m transfer_core runs`"):
        store.get_run("nope")
    if first[:15] == second[:15]:
        with pytest.raises(RunError, match="matches several runs"):
            store.get_run(first[:15])

    named = store.create_run({}, name="my run", modality="text", model="m", dataset="d.csv")
    assert store.get_run(named).name == "my run"


def test_events_become_metrics_best_and_status(store):
    run_id = _new_run(store)
    _simulate(store, run_id)
    store.record_event(Notice(run_id=run_id, time=time.time(), message="fell back to cpu"))
    store.record_event(RunEnded(run_id=run_id, time=time.time(), status=RunStatus.COMPLETED, epochs_done=3,
                                best_epoch=1, metrics={"test_accuracy": 0.75}, train_seconds=6.0))

    record = store.get_run(run_id)
    assert record.status == RunStatus.COMPLETED
    assert record.epochs_done == 3
    # The model's numbers (here the last epoch's: the event names no other), and the best epoch by
    # validation loss, the metric early stopping watches by default.
    assert record.best_metrics["model_epoch"] == 2
    assert record.best_metrics["val_accuracy"] == pytest.approx(0.7)
    assert record.best_metrics["test_accuracy"] == 0.75
    assert (record.best_metrics["best_epoch"], record.best_metrics["best_metric"]) == (2, "val_loss")
    assert record.heartbeat is not None

    epochs = store.metrics(run_id)
    assert list(epochs["epoch"]) == [0, 1, 2]
    assert list(epochs["step"]) == [4, 8, 12]
    assert list(epochs.columns[:3]) == ["step", "epoch", "time"]
    assert epochs["val_accuracy"].tolist() == pytest.approx([0.6, 0.8, 0.7])
    assert {"train_loss", "train_accuracy", "val_loss", "val_macro_f1", "lr", "seconds"} <= set(epochs.columns)

    steps = store.metrics(run_id, scope="step")
    assert list(steps["step"]) == list(range(1, 13))
    assert list(steps["epoch"]) == [0] * 4 + [1] * 4 + [2] * 4
    assert steps["loss"].tolist() == pytest.approx([1.0 / s for s in range(1, 13)])
    assert {"lr", "samples_per_second"} <= set(steps.columns)

    log = store.events(run_id)
    assert [e.kind for e in log] == ["RunStarted", "EpochEnded", "EpochEnded", "EpochEnded", "Notice", "RunEnded"]
    assert [e.kind for e in store.events(run_id, since_seq=4)] == ["Notice", "RunEnded"]
    started = log[0]   # typed, as fit() emitted it
    assert isinstance(started, RunStarted) and started.classes == ("a", "b")
    assert event_from_dict(started.to_dict()) == started

    both = store.metrics_for_runs([run_id, _new_run(store)], scope="epoch")
    assert list(both.columns[:2]) == ["run_id", "step"]
    assert set(both["run_id"]) == {run_id}

    empty = store.metrics(_new_run(store), scope="step")
    assert empty.empty and {"step", "epoch", "loss"} <= set(empty.columns)


def test_run_ended_keeps_the_numbers_of_the_model_you_get(store):
    run_id = _new_run(store)
    _simulate(store, run_id, accuracies=(0.6, 0.8, 0.7))
    # Early stopping restored epoch 1's weights; the trainer's final evaluation of them wins, and that
    # epoch's logged training numbers fill in the rest.
    store.record_event(RunEnded(run_id=run_id, time=time.time(), status=RunStatus.COMPLETED, epochs_done=3,
                                best_epoch=1, metrics={"val_accuracy": 0.81, "model_epoch": 1, "best_epoch": 1,
                                                       "best_metric": "val_accuracy", "best_value": 0.8}))
    best = store.get_run(run_id).best_metrics
    assert best["model_epoch"] == 1 and best["step"] == 8
    assert best["val_accuracy"] == 0.81 and best["train_loss"] == pytest.approx(0.5)
    assert (best["best_epoch"], best["best_metric"]) == (1, "val_accuracy")


def test_best_epoch_is_ranked_by_the_metric_early_stopping_watches(store):
    """Issue 12: the store ranked by val_accuracy while early stopping watched val_loss."""
    by_accuracy = store.create_run({"train": {"early_stopping_metric": "val_accuracy"}}, modality="text",
                                   model="m", dataset="d.csv")
    by_loss = _new_run(store)   # the default: val_loss
    for run_id in (by_accuracy, by_loss):
        _simulate(store, run_id, accuracies=(0.6, 0.8, 0.7))   # val_loss falls every epoch
    while_training = store.get_run(by_accuracy).best_metrics
    assert while_training["model_epoch"] == 2 and while_training["val_accuracy"] == pytest.approx(0.7)
    assert (while_training["best_epoch"], while_training["best_value"]) == (1, pytest.approx(0.8))
    assert store.get_run(by_loss).best_metrics["best_epoch"] == 2


def test_run_started_failed_and_updates(store):
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    record = store.get_run(run_id)
    assert record.status == RunStatus.RUNNING and record.pid == os.getpid() and record.host

    store.record_event(RunFailed(run_id=run_id, time=time.time(), message="out of memory",
                                 advice="lower the batch size", error_type="OutOfMemoryError"))
    record = store.get_run(run_id)
    assert (record.status, record.message, record.advice) == (RunStatus.FAILED, "out of memory", "lower the batch size")

    store.update_run(run_id, name="renamed", config={"x": 1}, epochs_done=2)
    record = store.get_run(run_id)
    assert (record.name, record.config, record.epochs_done) == ("renamed", {"x": 1}, 2)
    with pytest.raises(TypeError):
        store.update_run(run_id, id="other")
    with pytest.raises(ValueError):
        store.set_status(run_id, "exploded")
    with pytest.raises(RunError, match="no run"):
        store.record_event(_batch("missing-run", 0, 1))


def test_resume_trims_metrics_past_the_restart_point(store):
    run_id = _new_run(store)
    _simulate(store, run_id, accuracies=(0.6, 0.9, 0.7))
    # Resumed from the checkpoint after epoch 0: epochs 1-2 are redone with other results.
    _simulate(store, run_id, accuracies=(0.6, 0.65, 0.66), start_epoch=1)
    epochs = store.metrics(run_id)
    assert epochs["val_accuracy"].tolist() == pytest.approx([0.6, 0.65, 0.66])
    assert store.get_run(run_id).best_metrics["model_epoch"] == 2
    assert len(store.metrics(run_id, scope="step")) == 12


def test_resume_mid_epoch_keeps_the_steps_before_the_checkpoint(store):
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    for step in range(1, 5):
        store.record_event(_batch(run_id, 0, step))
    store.record_event(_epoch(run_id, 0, 0.6))
    for step in (5, 6, 7):   # stopped after step 6; step 7 was logged before the process died
        store.record_event(_batch(run_id, 1, step, loss=9.0))
    store.record_event(_started(run_id, start_epoch=1))
    for step in (7, 8):
        store.record_event(_batch(run_id, 1, step, loss=0.5))
    store.record_event(_epoch(run_id, 1, 0.7))
    steps = store.metrics(run_id, scope="step")
    assert steps["step"].tolist() == list(range(1, 9))
    assert steps["loss"].tolist()[-2:] == [0.5, 0.5]
    assert store.metrics(run_id)["epoch"].tolist() == [0, 1]


def test_nan_metrics_are_stored_as_missing(store):
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    store.record_event(_epoch(run_id, 0, float("nan")))
    epochs = store.metrics(run_id)
    assert math.isnan(epochs["val_accuracy"][0])
    summary = store.get_run(run_id).best_metrics
    assert summary["model_epoch"] == 0 and summary["val_accuracy"] is None


def test_delete(store):
    run_id = _new_run(store)
    _simulate(store, run_id)
    (store.run_dir(run_id) / "log.txt").write_text("hello")
    with pytest.raises(RunError, match="stop it first"):
        store.delete_run(run_id)
    store.set_status(run_id, RunStatus.STOPPED)
    keep = _new_run(store)
    store.delete_run(run_id)
    assert not store.run_dir(keep).parent.joinpath(run_id).exists()
    with pytest.raises(RunError, match="no run"):
        store.get_run(run_id)
    assert store.metrics(run_id).empty and store.events(run_id) == []
    assert [r.id for r in store.list_runs()] == [keep]


def test_reconcile_marks_dead_processes_interrupted(store):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead_run, live_run, reused, mine_active, mine_orphan, done = (_new_run(store) for _ in range(6))
        store.update_run(dead_run, status=RunStatus.RUNNING, pid=dead_pid)
        store.update_run(live_run, status=RunStatus.RUNNING, pid=live.pid)
        # Last written an hour before the live process started: that pid now belongs to someone else.
        store.update_run(reused, status=RunStatus.RUNNING, pid=live.pid)
        with store._write() as conn:
            conn.execute("UPDATE runs SET updated = ?, heartbeat = ? WHERE id = ?",
                         (time.time() - 3600, time.time() - 3600, reused))
        store.update_run(mine_active, status=RunStatus.RUNNING)   # pid: this process
        store.set_status(mine_orphan, RunStatus.QUEUED)
        store.update_run(done, status=RunStatus.COMPLETED, pid=dead_pid)

        marked = store.reconcile_interrupted(active_run_ids=[mine_active])
        expected = [dead_run, mine_orphan] + ([reused] if process_start_time(live.pid) else [])
        assert sorted(marked) == sorted(expected)
        dead = store.get_run(dead_run)
        assert dead.status == RunStatus.INTERRUPTED and dead.message == INTERRUPTED_MESSAGE
        assert store.get_run(live_run).status == RunStatus.RUNNING
        assert store.get_run(mine_active).status == RunStatus.RUNNING
        assert store.get_run(done).status == RunStatus.COMPLETED
        assert store.reconcile_interrupted(active_run_ids=[mine_active]) == []
    finally:
        live.kill()
        live.wait()


def test_buffered_metrics_reach_other_stores(store, tmp_path):
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    for step in range(1, 51):
        store.record_event(_batch(run_id, 0, step))
    with RunStore(tmp_path / "runs") as other:
        # Visible through the background flush within about half a second, without an explicit flush.
        deadline = time.time() + 5
        while len(other.metrics(run_id, scope="step")) < 50 and time.time() < deadline:
            time.sleep(0.05)
        assert len(other.metrics(run_id, scope="step")) == 50
        store.record_event(_batch(run_id, 0, 51))
        store.flush()
        assert len(other.metrics(run_id, scope="step")) == 51
        assert other.get_run(run_id[:-2]).status == RunStatus.RUNNING


def test_status_change_carries_buffered_steps_with_it(store, tmp_path):
    # A reader that sees "paused" must also see every step taken before the pause.
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    store.record_event(_batch(run_id, 0, 1))
    store.set_status(run_id, RunStatus.PAUSED)
    with RunStore(tmp_path / "runs") as other:
        assert other.get_run(run_id).status == RunStatus.PAUSED
        assert list(other.metrics(run_id, scope="step")["step"].unique()) == [1]


def test_reopen_existing_database(tmp_path):
    with RunStore(tmp_path / "runs") as first:
        run_id = _new_run(first)
        first.record_event(_started(run_id))
        first.record_event(_batch(run_id, 0, 1))
    # close() flushed the buffered batch.
    with RunStore(tmp_path / "runs") as again:
        assert again.get_run(run_id).status == RunStatus.RUNNING
        assert len(again.metrics(run_id, scope="step")) == 1
        conn = sqlite3.connect(tmp_path / "runs" / "runs.sqlite")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        conn.close()


def test_a_database_of_the_first_schema_is_upgraded_in_place(tmp_path):
    # A runs.sqlite written before the run's state had columns: an extended run's config counted its epochs.
    from transfer_core.store_sql import MIGRATIONS
    (tmp_path / "runs").mkdir()
    conn = sqlite3.connect(tmp_path / "runs" / "runs.sqlite")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO runs (id, name, created, updated, status, config_json) VALUES "
                 "('20261101-120000-aaaaaa', 'old run', 1.0, 1.0, 'completed', '{\"train\": {\"epochs\": 7}}')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with RunStore(tmp_path / "runs") as store:
        old = store.get_run("20261101-120000-aaaaaa")
        assert (old.name, old.epochs_planned, old.batch_size, old.total_epochs) == ("old run", None, None, 7)
        store.record_event(RunStarted(old.id, 2.0, epochs=9, steps_per_epoch=1, start_epoch=7, num_train=4, num_val=2,
                                      classes=("a", "b"), device="cpu", trainable_params=1, total_params=1,
                                      batch_size=16))
        assert (store.get_run(old.id).total_epochs, store.get_run(old.id).batch_size) == (9, 16)


def test_newer_schema_is_refused(tmp_path):
    RunStore(tmp_path / "runs").close()
    conn = sqlite3.connect(tmp_path / "runs" / "runs.sqlite")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(RunError, match="newer version"):
        RunStore(tmp_path / "runs")


def test_damaged_database_is_a_run_error(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunError, match="damaged.*Rebuild button"):
        RunStore(tmp_path / "runs")


def test_unwritable_root(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    with pytest.raises(RunError, match=r"cannot write to runs directory .*file\.txt.*choose another with --runs-dir"):
        RunStore(blocker / "runs")


def test_disk_full_is_a_run_error_and_keeps_the_db_consistent(store):
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    store.flush()
    before = len(store.events(run_id))
    # Cap the database at its current size: the next growth fails as a full disk would.
    with store._write() as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    store._writer.execute(f"PRAGMA max_page_count = {pages}")
    big = "x" * 200_000
    with pytest.raises(RunError, match="full.*free some space"):
        store.record_event(Notice(run_id=run_id, time=time.time(), message=big))
    assert len(store.events(run_id)) == before
    assert store.get_run(run_id).status == RunStatus.RUNNING
    with store._read() as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store._writer.execute("PRAGMA max_page_count = 1073741823")
    store.record_event(Notice(run_id=run_id, time=time.time(), message="space again"))
    assert store.events(run_id)[-1].message == "space again"


def test_closed_store_refuses(tmp_path):
    s = RunStore(tmp_path / "runs")
    s.close()
    s.close()
    with pytest.raises(RunError, match="closed"):
        s.list_runs()


def test_incremental_and_downsampled_reads(store):
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    for step in range(1, 1001):
        store.record_event(_batch(run_id, (step - 1) // 100, step))
    store.flush()
    assert store.metrics(run_id, scope="step", since=990)["step"].tolist() == list(range(991, 1001))
    sampled = store.metrics(run_id, scope="step", max_points=50)
    assert 40 <= len(sampled) <= 60
    assert sampled["step"].iloc[0] == 1 and sampled["step"].iloc[-1] == 1000
    overlay = store.metrics_for_runs([run_id], scope="step", max_points=10)
    assert set(overlay["run_id"]) == {run_id} and len(overlay) <= 12
    assert store.metrics_for_runs([], scope="epoch").empty


def test_making_a_run_active_claims_it_for_this_process(store):
    run_id = _new_run(store)
    store.update_run(run_id, status=RunStatus.FAILED, pid=1)
    store.set_status(run_id, RunStatus.QUEUED)   # e.g. queued again to resume
    assert store.get_run(run_id).pid == os.getpid()


def test_metrics_frame_types(store):
    run_id = _new_run(store)
    _simulate(store, run_id)
    store.flush()
    frame = store.metrics(run_id, scope="step")
    assert isinstance(frame, pd.DataFrame)
    assert frame["step"].dtype.kind == "i" and frame["loss"].dtype.kind == "f"


def test_one_default_run_name_for_the_app_and_the_command_line():
    """Both leave the name to the store: a demo by its title and size, a hub id or a file by its last part."""
    from transfer_core.store import default_run_name
    assert default_run_name("efficientnet_lite0", "demo:fashion-mnist?per_class=60") == \
        "efficientnet_lite0 on Fashion-MNIST (60 per class)"
    assert default_run_name("sentence-transformers/all-MiniLM-L6-v2", "/home/me/reviews.csv") == \
        "all-MiniLM-L6-v2 on reviews"
    assert default_run_name("tiny_cnn", "photos/") == "tiny_cnn on photos"


def test_run_status_is_an_enum_that_reads_and_stores_as_its_name(tmp_path):
    """RunStatus members are str too: the database, JSON and pages see "running"; the store gives members back."""
    import json

    from transfer_core.events import RunEnded, event_from_dict
    assert [s.value for s in RunStatus] == ["queued", "running", "paused", "stopped", "completed", "failed",
                                            "interrupted"]
    assert f"{RunStatus.RUNNING}" == str(RunStatus.RUNNING) == "running" and json.dumps(RunStatus.FAILED) == '"failed"'
    assert "paused" in RunStatus.ACTIVE and RunStatus.COMPLETED not in RunStatus.RESUMABLE
    store = RunStore(tmp_path / "runs")
    run_id = _new_run(store)
    store.set_status(run_id, RunStatus.RUNNING)
    assert store.get_run(run_id).status is RunStatus.RUNNING
    ended = event_from_dict(json.loads(json.dumps(RunEnded(run_id, 1.0, status=RunStatus.COMPLETED, epochs_done=1,
                                                           best_epoch=0).to_dict())))
    assert ended.status is RunStatus.COMPLETED
    store.close()


def test_events_a_newer_version_logged_are_left_out_and_extra_fields_ignored(store):
    run_id = _new_run(store)
    store.record_event(_started(run_id))
    with store._write() as conn:   # as a newer version might have logged them
        conn.execute("INSERT INTO events (run_id, seq, kind, time, payload_json) VALUES (?, 2, 'LayerProbed', 1.0, ?)",
                     (run_id, '{"kind": "LayerProbed", "run_id": "%s", "time": 1.0}' % run_id))
        conn.execute("INSERT INTO events (run_id, seq, kind, time, payload_json) VALUES (?, 3, 'Notice', 2.0, ?)",
                     (run_id, '{"kind": "Notice", "run_id": "%s", "time": 2.0, "message": "hi", "level": "info"}' % run_id))
    assert [(e.kind, getattr(e, "message", None)) for e in store.events(run_id)] == [("RunStarted", None), ("Notice", "hi")]
