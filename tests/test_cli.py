"""`python -m transfer_core`: the commands a user types, run as a user would (subprocess, real files)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def cli(*args, runs_dir, check=True):
    proc = subprocess.run([sys.executable, "-m", "transfer_core", "--runs-dir", str(runs_dir), *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def trained(digits_folder, tmp_path_factory):
    runs = tmp_path_factory.mktemp("cli-runs")
    proc = cli("train", "--data", digits_folder, "--model", "tiny_cnn", "--epochs", 2, "--image-size", 16,
               "--batch-size", 8, "--set", "model.pretrained=false", "--set", "optim.lr=0.01", runs_dir=runs)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return runs, summary


def test_train_prints_summary_json_last(trained):
    _, summary = trained
    assert summary["status"] == "completed"
    assert summary["epochs"] == 2
    for key in ("run_id", "train_seconds", "val_accuracy", "val_macro_f1"):
        assert summary[key] is not None


def test_runs_lists_the_run(trained):
    runs, summary = trained
    out = cli("runs", "--json", runs_dir=runs).stdout
    assert summary["run_id"] in [r["id"] for r in json.loads(out)]


def test_runs_dir_may_follow_the_command(trained, tmp_path):
    runs, summary = trained
    proc = subprocess.run([sys.executable, "-m", "transfer_core", "runs", "--json", "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=600, check=True)
    assert summary["run_id"] in [r["id"] for r in json.loads(proc.stdout)]
    # Given on both sides, the one after the command wins (it is the one closest to what it configures).
    out = cli("runs", "--json", "--runs-dir", tmp_path / "empty", runs_dir=runs).stdout
    assert json.loads(out) == []


def test_evaluate_predict_export(trained, digits_folder, tmp_path):
    runs, summary = trained
    metrics = json.loads(cli("evaluate", "--run", summary["run_id"], "--data", digits_folder, runs_dir=runs).stdout)
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(metrics)
    assert len(metrics["confusion_matrix"]) == 4
    image = next((digits_folder / "digit_1").iterdir())
    rows = [json.loads(line) for line in cli("predict", "--run", summary["run_id"], image, runs_dir=runs).stdout.splitlines()]
    assert rows[0]["top"][0]["label"].startswith("digit_")
    out = json.loads(cli("export", "--run", summary["run_id"], "--out", tmp_path / "bundle", "--zip", runs_dir=runs).stdout)
    assert "torchscript" in out["formats"]
    assert (tmp_path / "bundle" / "predict.py").exists()


def test_resume_extends_finished_run(trained):
    runs, summary = trained
    done = cli("resume", "--run", summary["run_id"], "--epochs", 1, "--quiet", runs_dir=runs)
    assert json.loads(done.stdout.strip().splitlines()[-1])["epochs"] == 3


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "--data", "demo:bbc-news", "--set", "optim.lr=-1"], "optim.lr"),
    (["train", "--data", "demo:bbc-news", "--batch-size", "0"], "train.batch_size"),
    (["train", "--data", "demo:bbc-news", "--set", "optim.nope=1"], "optim.nope"),
    (["train", "--data", "demo:bbc-news", "--model", "no_such_model"], "no_such_model"),
    (["evaluate", "--run", "nope", "--data", "x"], "nope"),
    (["resume", "--run", "nope"], "nope"),
])
def test_user_errors_exit_nonzero_with_one_line(args, needle, tmp_path):
    proc = cli(*args, runs_dir=tmp_path / "runs", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_every_setting_has_an_option_made_from_the_config():
    """The options come from the typed config (help, range, choices, default), so a new setting needs no
    hand-written flag; the short names are aliases of the same options."""
    import argparse

    from transfer_core.cli import build_parser, config_from_args, explicit_settings
    from transfer_core.config import RunConfig, iter_fields

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    text = train.format_help()
    for dotted, f, _ in iter_fields(RunConfig()):
        assert f"--{dotted}" in text, dotted
    args = parser.parse_args(["train", "--data", "demo:bbc-news", "--train.early_stopping_patience", "3",
                              "--optim.scheduler", "cosine", "--epochs", "4", "--freeze.trainable_groups", "head,stage7"])
    cfg = config_from_args(args)
    assert (cfg.train.early_stopping_patience, cfg.optim.scheduler, cfg.train.epochs) == (3, "cosine", 4)
    assert cfg.freeze.trainable_groups == ["head", "stage7"] and cfg.data.path == "demo:bbc-news"
    assert {"train.early_stopping_patience", "optim.scheduler", "train.epochs"} <= explicit_settings(args)
    with pytest.raises(SystemExit):          # choices come from the config too
        parser.parse_args(["train", "--optim.scheduler", "sometimes"])
