"""The layout of a run's folder: the one place that names its files.

    runs/<run id>/  config.json          the run's settings (as given; `train.epochs` grows when a run is extended)
                    labels.json          class names, in the order of the model's outputs
                    weights.safetensors  the final model
                    best.safetensors     the best epoch's model (with early stopping)
                    checkpoints/last.pt  the state a resume continues from
                    data_report.json     the data report the run trained on
                    metrics.json         final metrics, per-class scores, confusion matrix, hardware
                    predictions.csv      validation predictions (test_predictions.csv: the test split's)
                    log.txt              what happened, one line per event

The trainer writes them; the store (rebuilding its list), runs.py, the `run:` models and the app read them.
"""
from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "weights.safetensors"
BEST_FILE = "best.safetensors"
CHECKPOINT_FILE = "checkpoints/last.pt"
REPORT_FILE = "data_report.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
TEST_PREDICTIONS_FILE = "test_predictions.csv"
LOG_FILE = "log.txt"

MODEL_FILES = (CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE)   # what a finished run needs to serve as a model


def default_runs_dir() -> Path:
    """`$TRANSFER_CORE_RUNS`, default `runs/` (relative to the working folder): the command line's and the
    app's runs folder, so runs started from either show up in both."""
    return Path(os.environ.get("TRANSFER_CORE_RUNS", "runs")).expanduser()
