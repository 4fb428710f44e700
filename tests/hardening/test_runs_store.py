"""Hardening, runs and the store: mistaken commands, damaged or missing files, and leftovers.

Each test names one problem a hostile trial found (issue 13, "Runs and the store"). Runs are written
through the store's API where their files do not matter, and trained with tiny_cnn where they do.
"""
from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import pytest
from test_safe_defaults import tiny_hf_folder

from transfer_core import cli
from transfer_core.errors import ModelError, RunError, RunFilesMissing, StoreDamaged
from transfer_core.events import EpochEnded, RunEnded, RunFailed, RunStarted, RunStatus
from transfer_core.jobs import JobManager
from transfer_core.store import DB_NAME, RunStore, rebuild_run_list
from transfer_core.trainer import fit


def run_cli(capsys, runs_dir, *args) -> tuple[int, str, list[str]]:
    code = cli.main(["--runs-dir", str(runs_dir), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def completed_run(store, epochs=1, asked_epochs=None) -> str:
    """A finished run written through the store's API, with its folder (no weights: nothing here loads them).
    `asked_epochs`: train.epochs in its config, when extensions brought it to `epochs`."""
    config = {"model": {"name": "tiny_cnn"}, "data": {"path": "elsewhere"}, "train": {"epochs": asked_epochs or epochs}}
    run_id = store.create_run(config, modality="image", model="tiny_cnn", dataset="elsewhere")
    (store.run_dir(run_id) / "config.json").write_text(json.dumps(config))
    now = time.time()
    store.record_event(RunStarted(run_id, now, epochs=epochs, steps_per_epoch=1, start_epoch=0, num_train=4,
                                  num_val=2, classes=("a", "b"), device="cpu", trainable_params=1, total_params=1))
    store.record_event(EpochEnded(run_id, now, epoch=epochs - 1, step=epochs, train_loss=0.5, train_accuracy=0.75,
                                  val_loss=0.6, val_accuracy=0.5, val_macro_f1=0.5, lr=0.01, seconds=1.0))
    store.record_event(RunEnded(run_id, now, status=RunStatus.COMPLETED, epochs_done=epochs, best_epoch=epochs - 1,
                                metrics={"val_accuracy": 0.5}))
    return run_id


def unchanged(store, run_id, before) -> None:
    after = store.get_run(run_id)
    assert (after.status, after.message, after.epochs_done, after.best_metrics, after.config) == \
        (before.status, before.message, before.epochs_done, before.best_metrics, before.config)


def tiny_config(folder, **train):
    from transfer_core.config import RunConfig
    cfg = RunConfig()
    cfg.data.path, cfg.model.name, cfg.model.pretrained, cfg.model.image_size = str(folder), "tiny_cnn", False, 16
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 1, 16, "cpu"
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def test_runs_table_shows_a_run_without_validation_accuracy(store, capsys):
    run_id = store.create_run({}, modality="image", model="tiny_cnn", dataset="x.zip")
    store.record_event(RunFailed(run_id, time.time(), message="x.zip is not a zip file", advice="", error_type="DataError"))
    code, out, err = run_cli(capsys, store.root, "runs")
    assert code == 0 and not err, err
    line = next(line for line in out.splitlines() if line.startswith(run_id))
    assert line.split()[1:4] == ["failed", "tiny_cnn", "-"], line


def test_extending_past_the_epoch_limit_is_refused_before_anything_changes(store, capsys):
    run_id = completed_run(store, epochs=998)
    before = store.get_run(run_id)
    with pytest.raises(RunError, match="limit of 1000; add at most 2"):
        fit(None, store=store, run_id=run_id, resume=True, extra_epochs=3)
    with pytest.raises(RunError, match="limit of 1000"):
        JobManager(store).resume(run_id, extra_epochs=3)
    code, out, err = run_cli(capsys, store.root, "resume", "--run", run_id, "--epochs", 100000, "--quiet")
    assert code == 2 and len(err) == 1 and "limit of 1000" in err[0], err
    unchanged(store, run_id, before)


def test_the_limit_counts_the_epochs_of_earlier_extensions(store):
    # Asked for 990 epochs, extended to 998: the run's state, not its config, says how many it has.
    run_id = completed_run(store, epochs=998, asked_epochs=990)
    before = store.get_run(run_id)
    assert (before.total_epochs, before.config["train"]["epochs"]) == (998, 990)
    with pytest.raises(RunError, match="has 998 epochs and 3 more would pass the limit of 1000; add at most 2"):
        fit(None, store=store, run_id=run_id, resume=True, extra_epochs=3)
    unchanged(store, run_id, before)


def test_empty_database_beside_run_folders_is_refused_and_rebuilt(digits_folder, tmp_path, capsys):
    root = tmp_path / "runs"
    with RunStore(root) as store:
        done = fit(tiny_config(digits_folder, epochs=2), store=store)
        assert done.status == RunStatus.COMPLETED, done.message
        failed_id = store.create_run({"model": {"name": "tiny_cnn"}}, modality="image", model="tiny_cnn", dataset="gone")
        (store.run_dir(failed_id) / "config.json").write_text(json.dumps({"model": {"name": "tiny_cnn"}}))
        before = store.get_run(done.run_id)
    for suffix in ("-wal", "-shm"):
        (root / (DB_NAME + suffix)).unlink(missing_ok=True)
    (root / DB_NAME).write_bytes(b"")                     # the database truncated to 0 bytes
    with pytest.raises(StoreDamaged) as caught:
        RunStore(root)
    assert "is empty" in str(caught.value) and "--" not in str(caught.value)   # the app's line names no flag
    code, out, err = run_cli(capsys, root, "runs")
    assert code == 2 and len(err) == 1 and "python -m transfer_core runs --rebuild" in err[0], err
    code, out, err = run_cli(capsys, root, "runs", "--rebuild")
    assert code == 0, err
    kept = [p for p in root.iterdir() if p.name.startswith(DB_NAME + ".damaged-")]
    assert len(kept) == 1 and kept[0].stat().st_size == 0   # the damaged file is kept
    with RunStore(root) as store:
        record = store.get_run(done.run_id)
        assert record.status == RunStatus.COMPLETED and record.epochs_done == 2
        assert record.best_metrics["val_accuracy"] == pytest.approx(before.best_metrics["val_accuracy"])
        assert len(store.metrics(done.run_id, "epoch")) == 2
        assert store.get_run(failed_id).status == RunStatus.INTERRUPTED   # its log ends with no outcome
    assert rebuild_run_list(root).added == []   # everything is listed: a second rebuild adds nothing


def test_a_run_whose_folder_was_deleted_says_its_files_are_gone(store, capsys):
    import shutil

    from transfer_core.runs import predict_run
    run_id = completed_run(store)
    before = store.get_run(run_id)
    shutil.rmtree(store.run_dir(run_id))
    with pytest.raises(RunFilesMissing, match="files of run .* are gone"):
        fit(None, store=store, run_id=run_id, resume=True, extra_epochs=1)
    with pytest.raises(RunFilesMissing, match="Remove button"):
        JobManager(store).resume(run_id, extra_epochs=1)
    with pytest.raises(RunFilesMissing):
        predict_run(store, run_id, ["some text"])
    unchanged(store, run_id, before)
    for args in (("resume", "--run", run_id, "--epochs", 1, "--quiet"), ("predict", "--run", run_id, "x")):
        code, out, err = run_cli(capsys, store.root, *args)
        assert code == 2 and len(err) == 1, err
        assert f"python -m transfer_core runs --remove {run_id}" in err[0] and "resume" not in err[0], err
    code, out, err = run_cli(capsys, store.root, "runs", "--remove", run_id)
    assert code == 0, err
    assert not store.list_runs()


def test_resume_of_a_finished_run_without_epochs_leaves_it_finished(store, capsys):
    run_id = completed_run(store)
    before = store.get_run(run_id)
    with pytest.raises(RunError, match="already finished all its epochs"):
        fit(None, store=store, run_id=run_id, resume=True)
    with pytest.raises(RunError, match="already finished"):
        JobManager(store).resume(run_id)
    with pytest.raises(RunError, match="0 or more"):
        fit(None, store=store, run_id=run_id, resume=True, extra_epochs=-2)
    code, out, err = run_cli(capsys, store.root, "resume", "--run", run_id, "--quiet")
    assert code == 2 and len(err) == 1 and "already finished all its epochs" in err[0], err
    unchanged(store, run_id, before)


def test_a_killed_exports_leftover_is_removed_by_the_next_export(tmp_path):
    from transfer_core.export import LEFTOVER_AGE_S, export_bundle
    from transfer_core.models import build_model
    built = build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16)
    out = tmp_path / "bundle"
    dead = tmp_path / ".bundle.999999999.k1ll3d00"        # a build folder whose process is gone
    old = tmp_path / ".bundle.oldstyle"                   # one named by an earlier version, long abandoned
    live = tmp_path / f".bundle.{os.getpid()}.running"    # one that another export in this process is writing
    for folder in (dead, old, live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    stale = time.time() - LEFTOVER_AGE_S - 60
    os.utime(old, (stale, stale))
    export_bundle(built, out)
    assert out.is_dir()
    assert not dead.exists() and not old.exists()
    assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name])


def test_predict_top_k_below_one_is_refused(store, capsys):
    run_id = completed_run(store)
    code, out, err = run_cli(capsys, store.root, "predict", "--run", run_id, "--top-k", -1, "x")
    assert code == 2 and len(err) == 1 and "--top-k must be 1 or more" in err[0], err
    from transfer_core.runs import predict_run
    with pytest.raises(RunError, match="top-k must be"):
        predict_run(store, run_id, ["x"], top_k=0)


def test_a_bin_pickle_refused_by_the_safe_loader_is_one_line(tmp_path):
    folder = tiny_hf_folder(tmp_path / "tiny")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code_ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weight": Evil()}, f)
    from transfer_core.models import build_model
    with pytest.raises(ModelError) as caught:
        build_model(str(folder), ["a", "b"], pretrained=True, max_length=16)
    text = str(caught.value)
    assert "\n" not in text and "pickle" in text and "safetensors" in text
    assert "weights_only" not in text and "False" not in text   # no advice to turn the protection off
    assert not marker.exists()
