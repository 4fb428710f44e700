"""A run's summary as its epochs arrive: while it trains, its numbers are the latest epoch's, and its best
epoch is ranked by the metric early stopping watches (summary.py says what the numbers mean)."""
from __future__ import annotations

import sqlite3

from .store_sql import EPOCH_METRICS, loads, number, query_metrics
from .summary import METRIC_WORDS, best_fields, is_better

WATCHED_DEFAULT = "val_loss"   # train.early_stopping_metric's default: a run's best epoch is ranked by it


def epoch_summary(row: dict) -> dict:
    """An epoch's logged numbers as the summary of the model at that epoch's end."""
    return {"model_epoch": int(row["epoch"]), "step": int(row["step"]),
            **{name: number(row.get(name)) for name in EPOCH_METRICS if name != "seconds"}}


def after_epoch(summary: dict, row: dict, metric: str) -> dict:
    """The run's summary (see summary.py) once another epoch has ended: while a run trains, its numbers
    are the latest epoch's, and its best epoch is ranked by the metric early stopping watches."""
    best = {k: v for k, v in summary.items() if k.startswith("best_")}
    if best.get("best_metric") != metric:
        best = best_fields(None, metric)
    if is_better(row.get(metric), best.get("best_value"), metric):
        best = best_fields(row, metric)
    return {**epoch_summary(row), **best}


def watched_metric(conn: sqlite3.Connection, run_id: str) -> str:
    row = conn.execute("SELECT config_json FROM runs WHERE id = ?", (run_id,)).fetchone()
    train = loads(row[0] if row else None).get("train")
    metric = train.get("early_stopping_metric") if isinstance(train, dict) else None
    return metric if metric in METRIC_WORDS else WATCHED_DEFAULT


def best_from_db(conn: sqlite3.Connection, run_id: str) -> dict:
    """The summary rebuilt from the epoch metrics still stored (after a resume trimmed the rest)."""
    summary: dict = {}
    metric = watched_metric(conn, run_id)
    for record in query_metrics(conn, run_id, "epoch").to_dict("records"):
        summary = after_epoch(summary, record, metric)
    return summary
