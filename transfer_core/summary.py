"""What "a run's numbers" mean, in one place for the trainer, the store, the CLI, the app and export.

A run's summary holds the numbers of the model the run gives you (`weights.safetensors`): its
validation (and test) metrics, measured at the end, and `model_epoch`, the epoch those weights come
from (None when a stop left them part-way through an epoch). Beside them it names the best epoch by
the metric the run watches (`train.early_stopping_metric`, the same one early stopping uses):
`best_epoch`, `best_metric`, `best_value` and that epoch's `best_val_accuracy`. Without early
stopping the model is the last epoch's, which may not be the best one; the note says so.
Epochs count from 0 in the data and from 1 in text meant for people.
"""
from __future__ import annotations

import math

METRIC_WORDS = {"val_loss": "validation loss", "val_accuracy": "validation accuracy",
                "val_macro_f1": "validation macro F1"}


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_better(value, than, metric: str) -> bool:
    """Whether `value` beats `than` on `metric`; a missing or non-finite value never does."""
    if not finite(value):
        return False
    if not finite(than):
        return True
    return value < than if lower_is_better(metric) else value > than


def best_row(rows: list[dict], metric: str) -> dict | None:
    """The first row with the best finite value of `metric` (ties keep the earlier epoch, as early stopping does)."""
    best = None
    for row in rows:
        if is_better(row.get(metric), None if best is None else best.get(metric), metric):
            best = row
    return best


def best_fields(row: dict | None, metric: str) -> dict:
    """The summary's best_* entries for an epoch row (of the history or the metrics table)."""
    if row is None:
        return {"best_epoch": None, "best_metric": metric, "best_value": None, "best_val_accuracy": None}
    return {"best_epoch": int(row["epoch"]), "best_metric": metric, "best_value": _plain(row.get(metric)),
            "best_val_accuracy": _plain(row.get("val_accuracy"))}


def format_metric(metric: str, value) -> str:
    if not finite(value):
        return "-"
    return f"{value:.3f}" if lower_is_better(metric) else f"{100 * value:.1f} %"


def best_note(summary: dict) -> str:
    """'' when the model is the best epoch's (or nothing is known); else one clause naming the best epoch,
    its metric, and the epoch the model comes from, e.g.
    'best epoch 2 by validation loss (0.412; validation accuracy 79.2 %); the model is epoch 5's'."""
    best, model = summary.get("best_epoch"), summary.get("model_epoch")
    if "model_epoch" not in summary or not isinstance(best, int) or best < 0 or best == model:
        return ""
    metric = summary.get("best_metric") or "val_loss"
    detail = format_metric(metric, summary.get("best_value"))
    if metric != "val_accuracy" and finite(summary.get("best_val_accuracy")):
        detail += f"; validation accuracy {format_metric('val_accuracy', summary['best_val_accuracy'])}"
    where = (f"the model is epoch {model + 1}'s" if isinstance(model, int) and model >= 0
             else "the model was stopped part-way through an epoch")
    return f"best epoch {best + 1} by {METRIC_WORDS.get(metric, metric)} ({detail}); {where}"


def _plain(value):
    return float(value) if finite(value) else None
