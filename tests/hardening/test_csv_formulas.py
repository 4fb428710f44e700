"""Labels, ids and texts that a spreadsheet would run as formulas are neutralised in every CSV written.

Each file is read back with the csv module, as a spreadsheet would see its cells; the app and the engine
read predictions.csv back and must get the original labels and ids.
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from apphelpers import ROOT, no_exceptions, open_app
from hostile import FORMULA, text_csv

from transfer_core.csvsafe import neutralise, restore
from transfer_core.evaluate import Predictions, load_predictions, save_predictions

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = (FORMULA, "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
           "\t=1+1", "\r=1+1", "'=already quoted", "'plain quoted")
HARMLESS = ("cat", "-1", "+1", "-0.5", "1e-3", "a=b")


def assert_no_formula_cells(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            if cell.startswith(DANGEROUS):
                assert cell in HARMLESS, f"a spreadsheet would run {cell!r}"


@pytest.mark.parametrize("value", HOSTILE + HARMLESS)
def test_neutralise_and_restore(value):
    cell = neutralise(value)
    assert restore(cell) == value
    if value in HARMLESS and not value.startswith("'"):
        assert cell == value, "plain numbers and ordinary text are written as they are"
    else:
        assert cell == "'" + value


def _predictions(labels: list[str], ids: list[str]) -> Predictions:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(ids), len(labels)))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    true = np.arange(len(ids)) % len(labels)
    return Predictions(ids=ids, classes=labels, probs=probs.astype(np.float32), true=true)


def test_predictions_csv_has_no_formula_cells_and_reads_back(tmp_path):
    labels = list(HOSTILE + HARMLESS)
    ids = [f"{label}.png" if i % 2 else label for i, label in enumerate(labels)]
    path = save_predictions(_predictions(labels, ids), tmp_path / "predictions.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert_no_formula_cells(rows)
    assert "'" + FORMULA in {cell for row in rows for cell in row}, "the OWASP recipe: a leading single quote"
    back = load_predictions(path)
    assert list(back["id"]) == ids
    assert list(back["true"]) == [labels[i % len(labels)] for i in range(len(ids))]
    assert set(back["predicted"]) <= set(labels)


def test_a_cli_run_writes_neutralised_predictions(tmp_path):
    data = text_csv(tmp_path / "hostile.csv")
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "TRANSFER_CORE_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    cli = subprocess.run([sys.executable, "-m", "transfer_core", "--runs-dir", str(tmp_path / "runs"), "train",
                          "--data", str(data), "--model", "tiny_bert", "--epochs", "1", "--set", "model.max_length=16",
                          "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 0, cli.stderr
    written = list((tmp_path / "runs").glob("*/predictions.csv"))
    assert len(written) == 1
    with open(written[0], newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert_no_formula_cells(rows)
    assert FORMULA in set(load_predictions(written[0])["true"]), "read back as the label it is"


def test_the_tables_own_csv_export_is_off():
    """Streamlit's "Download as CSV" on a table writes cells as they are; the pages offer downloads
    that neutralise them instead."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["client"]["disableDataExport"] is True


def downloads(monkeypatch) -> dict[str, bytes]:
    """What the browser would download from the pages, by file name, filled as the pages run."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    sent: dict[str, bytes] = {}
    keep = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        sent[filename] = path_or_data
        return keep(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return sent


def test_results_downloads_have_no_formula_cells(app_env, tmp_path, monkeypatch):
    from apphelpers import train_run

    sent = downloads(monkeypatch)
    data = text_csv(tmp_path / "hostile.csv")
    run_id = train_run(app_env / "runs", str(data), "tiny_bert", **{"model.max_length": 16, "train.epochs": 1})
    at = open_app("4_results")
    no_exceptions(at)
    for name in (f"{run_id}-per-class.csv", f"{run_id}-predictions.csv"):
        assert name in sent, list(sent)
        rows = list(csv.reader(io.StringIO(sent[name].decode("utf-8"))))
        assert_no_formula_cells(rows)
        assert "'" + FORMULA in {cell for row in rows for cell in row}, name


def test_the_runs_list_downloads_with_no_formula_cells(app_env, tmp_path, monkeypatch):
    """The Runs page's table has its own export off; its download button writes run names as text."""
    from apphelpers import train_run
    from transfer_core.store import RunStore

    sent = downloads(monkeypatch)
    run_id = train_run(app_env / "runs", str(text_csv(tmp_path / "hostile.csv")), "tiny_bert",
                       **{"model.max_length": 16, "train.epochs": 1})
    with RunStore(app_env / "runs") as store:
        store.update_run(run_id, name=FORMULA)
    at = open_app("6_runs")
    no_exceptions(at)
    rows = list(csv.reader(io.StringIO(sent["runs.csv"].decode("utf-8"))))
    assert_no_formula_cells(rows)
    assert "'" + FORMULA in {cell for row in rows for cell in row}
