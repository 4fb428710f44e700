"""The layout of a run's folder: the one place that names its files.

    runs/<run id>/  config.json          the run's settings, as given (what the run decided on the way is in its checkpoint)
                    labels.json          class names, in the order of the model's outputs
                    weights.safetensors  the final model
                    best.safetensors     the best epoch's model (with early stopping)
                    checkpoints/last.pt  the state a resume continues from
                    data_report.json     the data report the run trained on
                    metrics.json         final metrics, per-class scores, confusion matrix, hardware
                    predictions.csv      validation predictions (test_predictions.csv: the test split's)
                    decision.json        a two-class run's chosen decision threshold (decision.py), when one was set
                    log.txt              what happened, one line per event
                    control.txt          stop, pause or run: a request from another process (control.py)

The trainer writes them; the store (rebuilding its list), runs.py, the `run:` models and the app read them.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from .events import Event, event_from_dict

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "weights.safetensors"
BEST_FILE = "best.safetensors"
CHECKPOINT_FILE = "checkpoints/last.pt"
REPORT_FILE = "data_report.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
TEST_PREDICTIONS_FILE = "test_predictions.csv"
DECISION_FILE = "decision.json"
LOG_FILE = "log.txt"
CONTROL_FILE = "control.txt"

MODEL_FILES = (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE)   # what a finished run needs to serve as a model
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")   # a run id, and so its folder's name


def default_runs_dir() -> Path:
    """`$TRANSFER_CORE_RUNS`, default `runs/` (relative to the working folder): the command line's and the
    app's runs folder, so runs started from either show up in both."""
    return Path(os.environ.get("TRANSFER_CORE_RUNS", "runs")).expanduser()


# ---- reading run folders (the store lists the runs from them again when its database is lost) ----
def run_folders(root: str | os.PathLike) -> list[Path]:
    """The run folders under a runs root: named like a run id and holding the run's config.json."""
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if RUN_ID_RE.match(p.name) and not p.is_symlink() and (p / CONFIG_FILE).is_file())


def read_logged_events(folder: Path) -> list[Event]:
    """The events the trainer appended to log.txt, one JSON object a line after a time stamp
    (tracebacks and other lines are skipped)."""
    try:
        lines = (folder / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            data = json.loads(line[start:])
            if isinstance(data, dict) and data.get("run_id") == folder.name:
                events.append(event_from_dict(data))
        except (ValueError, TypeError, KeyError):
            continue
    return events


def created_of(folder: Path) -> float:
    try:   # the id starts with its creation time
        return time.mktime(time.strptime(folder.name[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return folder.stat().st_mtime
