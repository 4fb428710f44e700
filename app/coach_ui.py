"""The coach beside the live curves: the notes of transfer_core/coach.py for the run shown, from its epochs so
far and, once it has ended, its final validation confusion matrix."""
from __future__ import annotations

import pandas as pd

from transfer_core.coach import CoachNote, coach_notes
from transfer_core.run_files import METRICS_FILE

from .resources import get_store
from .results_ui import run_metrics


def notes(record, epochs: pd.DataFrame, num_classes: int) -> list[CoachNote]:
    history = epochs.to_dict("records") if len(epochs) else []
    confusion, classes = None, None
    run_dir = get_store().run_dir(record.id)
    if not record.is_active and (run_dir / METRICS_FILE).is_file():
        val = run_metrics(run_dir).get("val") or {}
        confusion, classes = val.get("confusion_matrix"), val.get("classes")
        num_classes = num_classes or len(classes or [])
    return coach_notes(history, num_classes, confusion, classes)
