"""What a run's outcome says, and that it can be trusted (issue 12): one meaning of a run's numbers,
nonsense settings that fail with advice instead of completing, failed runs that cannot be resumed
when resuming cannot help, and failures that reach the terminal. Tiny random models on the CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from transfer_core.cli import main, to_json
from transfer_core.config import ConfigError, RunConfig
from transfer_core.errors import RunError
from transfer_core.events import RunFailed, RunStatus
from transfer_core.freezing import frozen_gap
from transfer_core.summary import best_note
from transfer_core.run_files import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE
from transfer_core.trainer import fit

ROOT = Path(__file__).resolve().parents[1]


def tiny_image_config(folder, **sets) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = str(folder)
    cfg.model.name, cfg.model.pretrained, cfg.model.image_size = "tiny_cnn", False, 16
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 3, 8, "cpu"
    cfg.optim.lr = 0.01
    for key, value in sets.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.check()


def not_a_zip(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "photos.zip"
    path.write_text("these are my photos")
    return path


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON parser outside Python does."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


# ---- 1. "Best" means one thing ---------------------------------------------------------------------------

def test_a_runs_numbers_are_those_of_the_model_you_get_everywhere(digits_folder, store):
    result = fit(tiny_image_config(digits_folder, train__epochs=4, optim__lr=0.05), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    history = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())["history"]
    summary = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())["summary"]
    # Without early stopping the model is the last epoch's, and its final evaluation repeats that epoch's.
    assert summary["model_epoch"] == 3
    assert summary["val_accuracy"] == pytest.approx(history[-1]["val_accuracy"])
    # The best epoch is ranked by the metric early stopping watches (val_loss by default).
    losses = [row["val_loss"] for row in history]
    assert summary["best_metric"] == "val_loss" and summary["best_epoch"] == losses.index(min(losses))
    assert summary["best_value"] == pytest.approx(min(losses))
    # The store (runs table, app), the CLI's JSON and metrics.json agree.
    record = store.get_run(result.run_id).best_metrics
    cli = result.summary()
    for key in ("model_epoch", "val_accuracy", "val_loss", "best_epoch", "best_metric", "best_value"):
        assert record[key] == pytest.approx(summary[key]) and cli[key] == pytest.approx(summary[key]), key
    assert (best_note(summary) == "") == (summary["best_epoch"] == summary["model_epoch"])


def test_early_stopping_gives_the_best_epochs_model_and_says_so(digits_folder, store):
    result = fit(tiny_image_config(digits_folder, train__epochs=6, optim__lr=0.05, train__early_stopping_patience=1,
                                   train__early_stopping_metric="val_accuracy"), store=store)
    summary = store.get_run(result.run_id).best_metrics
    assert summary["best_metric"] == "val_accuracy"
    assert summary["model_epoch"] == summary["best_epoch"] == result.best_epoch
    assert summary["val_accuracy"] == pytest.approx(summary["best_value"])   # the restored weights, evaluated again
    assert best_note(summary) == ""


def test_best_note_names_the_best_epoch_and_the_models_epoch():
    summary = {"model_epoch": 4, "best_epoch": 1, "best_metric": "val_loss", "best_value": 0.4123,
               "best_val_accuracy": 0.792, "val_accuracy": 0.767}
    assert best_note(summary) == ("best epoch 2 by validation loss (0.412; validation accuracy 79.2 %); "
                                  "the model is epoch 5's")
    assert best_note({**summary, "model_epoch": 1}) == ""
    assert best_note({"val_accuracy": 0.5}) == ""            # a run recorded before these fields existed
    assert "part-way" in best_note({**summary, "model_epoch": None})


# ---- 2. Nonsense does not train to a green "completed" ------------------------------------------------------

def test_exploding_loss_fails_the_run_with_advice(digits_folder, store):
    """Learning rate 10 with a batch larger than the data: the loss explodes in the second epoch."""
    result = fit(tiny_image_config(digits_folder, optim__lr=10, train__batch_size=4096, freeze__preset="full",
                                   train__epochs=4), store=store)
    assert result.status == RunStatus.FAILED
    assert "training diverged in epoch 2" in result.message and "guessing at random" in result.message
    assert "optim.lr is 10; try 1" in result.advice and "optim.grad_clip" in result.advice
    record = store.get_run(result.run_id)
    assert (record.status, record.advice) == (RunStatus.FAILED, result.advice)
    assert not (store.run_dir(result.run_id) / WEIGHTS_FILE).exists(), "no model is offered from a diverged run"


def test_non_finite_loss_fails_at_once(digits_folder, store, monkeypatch):
    calls = []

    def nan_loss(self, logits, targets):
        calls.append(1)
        return torch.nn.functional.cross_entropy(logits, targets) * float("nan")
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", nan_loss)
    result = fit(tiny_image_config(digits_folder), store=store)
    assert result.status == RunStatus.FAILED
    assert result.message == "training diverged in epoch 1, step 1: the loss became nan"
    assert len(calls) == 1, "no step after the first NaN"


def test_batch_larger_than_the_training_set_is_noticed_and_the_config_kept(digits_folder, store):
    result = fit(tiny_image_config(digits_folder, train__batch_size=4096, train__epochs=1), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    notices = [e.message for e in store.events(result.run_id) if e.kind == "Notice"]
    n_train = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())["hardware"]["batch_size"]
    assert n_train < 60
    assert f"batch size 4096 is more than the {n_train} training samples, so each step uses all {n_train} " \
           "(one step per epoch)" in notices
    saved = json.loads((store.run_dir(result.run_id) / CONFIG_FILE).read_text())
    assert saved["train"]["batch_size"] == 4096 == store.get_run(result.run_id).config["train"]["batch_size"]


def test_frozen_group_between_trained_groups_is_warned_about(digits_folder, store):
    names = ["block1", "block2", "block3", "head"]
    assert frozen_gap(names, ("block3", "head")) == "" and frozen_gap(names, ("head",)) == ""
    warning = frozen_gap(names, ("block1", "block3", "head"))
    assert warning.startswith("frozen between trained groups: block2. That is unusual: training block1 changes")
    assert warning.endswith("train block2 too, or freeze block1") and "\n" not in warning
    result = fit(tiny_image_config(digits_folder, train__epochs=1, freeze__preset="custom",
                                   freeze__trainable_groups="block1,block3,head"), store=store)
    notices = [e.message for e in store.events(result.run_id) if e.kind == "Notice"]
    assert warning in notices


@pytest.mark.parametrize("setting, value", [("optim.weight_decay", "nan"), ("optim.lr", "nan"), ("optim.lr", "inf"),
                                            ("optim.momentum", "-inf"), ("augment.rotation", "nan")])
def test_non_finite_settings_are_refused_before_a_run_exists(setting, value, digits_folder, store):
    cfg = tiny_image_config(digits_folder)
    cfg.set(setting, value)
    with pytest.raises(ConfigError, match=rf"{setting.replace('.', '[.]')} is -?(nan|inf); give a finite number"):
        fit(cfg, store=store)
    assert store.list_runs() == []


def test_cli_json_is_strict_json(digits_folder, store, tmp_path, capsys):
    assert to_json({"a": float("nan"), "b": [np.float32("inf"), 1, np.int64(2)], "c": "x"}) == \
        '{"a": null, "b": [null, 1, 2], "c": "x"}'
    # A model whose weights went NaN (as a run trained with NaN settings used to leave) predicts NaN.
    result = fit(tiny_image_config(digits_folder, train__epochs=1), store=store)
    weights = store.run_dir(result.run_id) / WEIGHTS_FILE
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
               for k, v in load_file(str(weights)).items()}, str(weights))
    image = next((digits_folder / "digit_1").iterdir())
    assert main(["--runs-dir", str(store.root), "predict", "--run", result.run_id, str(image)]) == 0
    row = strict_json(capsys.readouterr().out.strip())
    assert all(p["probability"] is None for p in row["top"])


# ---- 3. A run that failed on its data or settings offers no resume ------------------------------------------

def assert_refused_as_data_failure(store, run_id: str, reason: str) -> None:
    """The run's failure is recorded as not resumable (a DataError), and a resume is refused in one line naming `reason`."""
    failed = [e for e in store.events(run_id) if e.kind == "RunFailed"][-1]
    assert failed.resumable is False and failed.error_type == "DataError"
    refusal = store.resume_refusal(run_id)
    assert refusal.startswith(f"run {run_id} failed because of its data or settings ({reason}")
    assert "\n" not in refusal and ".." not in refusal
    with pytest.raises(RunError, match="failed because of its data or settings"):
        fit(None, store=store, run_id=run_id, resume=True)


def test_a_run_failed_on_its_data_cannot_be_resumed(tmp_path, store):
    cfg = tiny_image_config(tmp_path)   # a placeholder path, replaced below (check() needs one)
    cfg.data.path = str(not_a_zip(tmp_path / "data"))
    result = fit(cfg, store=store)
    assert result.status == RunStatus.FAILED and "is not a zip file" in result.message
    assert_refused_as_data_failure(store, result.run_id, "photos.zip is not a zip")
    from transfer_core.jobs import JobManager
    with pytest.raises(RunError, match="failed because of its data or settings"):
        JobManager(store).resume(result.run_id)
    assert store.get_run(result.run_id).status == RunStatus.FAILED


def test_a_run_whose_data_changed_cannot_be_resumed(digits_folder, tmp_path, store):
    import shutil
    data = tmp_path / "digits"
    shutil.copytree(digits_folder, data)
    done = fit(tiny_image_config(data, train__epochs=1), store=store)
    assert done.status == RunStatus.COMPLETED, done.message
    next((data / "digit_0").iterdir()).unlink()                  # the folder changes under the run
    result = fit(None, store=store, run_id=done.run_id, resume=True, extra_epochs=1)
    assert result.status == RunStatus.FAILED and result.message.startswith("the data changed since this run started")
    assert_refused_as_data_failure(store, result.run_id, "the data changed")


def test_resume_refusal_reads_runs_recorded_before_the_flag(store):
    import time
    run_id = store.create_run({}, modality="image", model="tiny_cnn", dataset="x.zip")
    # A RunFailed logged by an older version: no `resumable`, only the error's type.
    store.record_event(RunFailed(run_id, time.time(), message="x.zip is not a zip file", advice="", error_type="DataError"))
    with store._write() as conn:
        conn.execute("UPDATE events SET payload_json = ? WHERE run_id = ?",
                     (json.dumps({"kind": "RunFailed", "message": "x", "advice": "", "error_type": "DataError"}), run_id))
    assert "data or settings" in store.resume_refusal(run_id)
    other = store.create_run({}, modality="image", model="tiny_cnn", dataset="x.zip")
    store.record_event(RunFailed(other, time.time(), message="the disk is full", advice="free some space",
                                 error_type="OSError"))
    assert store.resume_refusal(other) == ""


def test_cli_resume_refuses_a_run_failed_on_its_data_in_one_line(tmp_path, store):
    cfg = tiny_image_config(tmp_path)
    cfg.data.path = str(not_a_zip(tmp_path / "data"))
    run_id = fit(cfg, store=store).run_id
    store.close()
    proc = subprocess.run([sys.executable, "-m", "transfer_core", "--runs-dir", str(store.root), "resume", "--run", run_id],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: run {run_id} failed because of its data or settings"), proc.stderr


# ---- 4. Failures reach the terminal -------------------------------------------------------------------------

APP_THREAD = textwrap.dedent('''
    import sys
    from app.resources import get_jobs
    from transfer_core.config import RunConfig
    cfg = RunConfig()
    cfg.data.path, cfg.model.name, cfg.model.pretrained, cfg.train.device = sys.argv[1], "tiny_cnn", False, "cpu"
    jobs = get_jobs()
    run_id = jobs.submit(cfg)
    jobs.wait(run_id, 120)
    print(run_id)
''')


def test_a_failed_app_run_is_logged_on_the_terminal(tmp_path):
    """The app's training thread, as the server runs it: a run that fails on its data prints its message
    (and the advice) on the server's stderr, not only in the page."""
    data = not_a_zip(tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRANSFER_CORE_RUNS": str(tmp_path / "runs"),
           "TRANSFER_APP_DATA": str(tmp_path / "appdata"), "TRANSFER_APP_EXTRA_ROOTS": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", APP_THREAD, str(data)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip().splitlines()[-1]
    failure = [line for line in proc.stderr.splitlines() if f"run {run_id} failed" in line]
    assert len(failure) == 1, proc.stderr
    assert "ERROR transfer_core.jobs" in failure[0] and "photos.zip is not a zip file" in failure[0]
    assert ".." not in failure[0]
