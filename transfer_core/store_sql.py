"""The run database's tables, and the SQL that writes and reads their metrics (store.py holds the connections)."""
from __future__ import annotations

import functools
import itertools
import json
import math
import sqlite3
from typing import Any

import pandas as pd

DB_NAME = "runs.sqlite"
SCHEMA_VERSION = 2
STEP_METRICS = ("loss", "lr", "samples_per_second")
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "lr", "seconds",
                 "target_accuracy")
ROWS_PER_INSERT = 512   # x 7 parameters, well under SQLite's 32,766 limit

# Each entry upgrades the schema from version i to i + 1; append, never edit.
# metrics is clustered on (run_id, scope, step, ...): a run's curve is one contiguous range
# (this key is the (run_id, scope, step) index), and a step logged again replaces the old value.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        status TEXT NOT NULL,
        modality TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        dataset TEXT NOT NULL DEFAULT '',
        dataset_fingerprint TEXT NOT NULL DEFAULT '',
        config_json TEXT NOT NULL DEFAULT '{}',
        best_metrics_json TEXT NOT NULL DEFAULT '{}',
        message TEXT NOT NULL DEFAULT '',
        advice TEXT NOT NULL DEFAULT '',
        pid INTEGER,
        host TEXT,
        epochs_done INTEGER NOT NULL DEFAULT 0,
        heartbeat REAL
    );
    CREATE INDEX runs_created ON runs(created);
    CREATE INDEX runs_status ON runs(status);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        scope TEXT NOT NULL CHECK (scope IN ('step', 'epoch')),
        step INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        time REAL NOT NULL,
        PRIMARY KEY (run_id, scope, step, epoch, name)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        time REAL NOT NULL,
        payload_json TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """,
    # What the run decided on the way (loop/state.py), from its RunStarted events: the planned epochs
    # (train.epochs plus extensions) and the batch size it trains with (smaller after running out of memory).
    """
    ALTER TABLE runs ADD COLUMN epochs_planned INTEGER;
    ALTER TABLE runs ADD COLUMN batch_size INTEGER
    """,
]

COLUMNS = ("id", "name", "created", "updated", "status", "modality", "model", "dataset",
            "dataset_fingerprint", "config_json", "best_metrics_json", "message", "advice",
            "pid", "host", "epochs_done", "heartbeat", "epochs_planned", "batch_size")
# update_run takes the parsed names for the JSON columns.
UPDATABLE = {"name": "name", "status": "status", "modality": "modality", "model": "model",
              "dataset": "dataset", "dataset_fingerprint": "dataset_fingerprint",
              "config": "config_json", "best_metrics": "best_metrics_json", "message": "message",
              "advice": "advice", "pid": "pid", "host": "host", "epochs_done": "epochs_done",
              "heartbeat": "heartbeat"}


@functools.lru_cache(maxsize=8)
def metrics_insert_sql(count: int) -> str:
    return ("INSERT OR REPLACE INTO metrics (run_id, scope, step, epoch, name, value, time) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count))


def insert_metrics(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    # Many rows per statement, not executemany: sqlite3 releases the GIL around every
    # statement step, and with reader threads busy each re-acquire can wait milliseconds.
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start:start + ROWS_PER_INSERT]
        conn.execute(metrics_insert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))


def query_metrics(conn: sqlite3.Connection, run_id: str, scope: str, since: int | None = None,
                   max_points: int | None = None) -> pd.DataFrame:
    # Pivoted in SQL: far fewer Python objects than fetching the long rows.
    key, other = ("step", "epoch") if scope == "step" else ("epoch", "step")
    names = STEP_METRICS if scope == "step" else EPOCH_METRICS
    where = "run_id = ? AND scope = ?"
    params: list[object] = [run_id, scope]
    if since is not None:
        where += f" AND {key} > ?"
        params.append(int(since))
    if max_points is not None and max_points > 0:
        low, high = conn.execute(f"SELECT MIN({key}), MAX({key}) FROM metrics WHERE {where}", params).fetchone()
        stride = 0 if low is None else -(-(high - low + 1) // max_points)
        if stride > 1:
            where += f" AND (({key} - ?) % ? = 0 OR {key} = ?)"
            params += [low, stride, high]
    pivots = ", ".join(f"MAX(CASE WHEN name = '{name}' THEN value END)" for name in names)
    rows = conn.execute(f"SELECT {key}, MAX({other}), MAX(time), {pivots} FROM metrics WHERE {where} "
                        f"GROUP BY {key} ORDER BY {key}", params).fetchall()
    frame = pd.DataFrame(rows, columns=[key, other, "time", *names])
    frame = frame.astype({key: "int64", other: "int64", "time": "float64", **{n: "float64" for n in names}})
    return frame[["step", "epoch", "time", *names]]


def check_scope(scope: str) -> None:
    if scope not in ("step", "epoch"):
        raise ValueError(f"unknown metrics scope {scope!r}; 'step' or 'epoch'")


def number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def loads(text: str | None) -> dict:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}
