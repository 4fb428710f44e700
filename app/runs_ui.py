"""Runs page helpers: the table of all runs and the comparison of several."""
from __future__ import annotations

import time

import pandas as pd

from transfer_core.events import RunStatus
from transfer_core.summary import best_note

from .demo import describe_path

COMPARE_METRICS = {"val_accuracy": "Validation accuracy", "val_loss": "Validation loss",
                   "train_loss": "Training loss", "train_accuracy": "Training accuracy",
                   "val_macro_f1": "Validation macro F1", "lr": "Learning rate"}


# The accuracy, F1 and loss columns are of the model each run gives you; "best epoch" names another
# epoch only where that one scored better on the metric the run watches (transfer_core/summary.py).
def runs_table(runs: list) -> pd.DataFrame:
    return pd.DataFrame([{
        "status": r.status, "name": r.name, "model": r.model, "data": describe_path(r.dataset),
        "val accuracy": r.best_metrics.get("val_accuracy"), "best epoch": best_note(r.best_metrics) or None,
        "epochs": r.epochs_done,
        "duration (s)": round(r.duration), "started": pd.Timestamp(r.created, unit="s", tz="UTC").tz_convert(None),
        "id": r.id} for r in runs])


def comparison_table(runs: list) -> pd.DataFrame:
    rows = []
    for r in runs:
        cfg = r.config or {}
        rows.append({"name": r.name, "status": r.status, "model": r.model,
                     "layers": cfg.get("freeze", {}).get("preset"), "lr": cfg.get("optim", {}).get("lr"),
                     "epochs": r.epochs_done, "batch size": cfg.get("train", {}).get("batch_size"),
                     "val accuracy": r.best_metrics.get("val_accuracy"),
                     "val macro F1": r.best_metrics.get("val_macro_f1"), "val loss": r.best_metrics.get("val_loss"),
                     "best epoch": best_note(r.best_metrics) or None, "id": r.id})
    return pd.DataFrame(rows)


def settle_dead_runs(store, jobs) -> list[str]:
    """Mark runs whose process died (e.g. a killed CLI run) as interrupted so they can be resumed.
    Runs this app just created count as alive even before their job is registered."""
    recent = [r.id for r in store.list_runs(status=RunStatus.ACTIVE) if time.time() - r.created < 15]
    return store.reconcile_interrupted(jobs.active_runs() + recent)
