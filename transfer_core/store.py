"""The run store: every run's record, metrics and event log in one SQLite database.

Layout under the runs root:

    runs.sqlite          runs, metrics (long format) and the raw event log
    <run_id>/            one directory per run, written by the trainer (run_files.py names its files
                         and reads its listing and log back when the database is rebuilt)

Whether a run's process still lives is liveness.py's question.

SQLite runs in WAL mode, so the training process writes while the UI, the CLI
and other browser tabs read, in this process or in others. The store's parts:
store_sql.py (the tables and the metrics SQL), store_flusher.py (per-batch
metrics written in batches by a background thread), store_ranking.py (a run's
summary and best epoch as epochs arrive), liveness.py (whether a run's process
still lives). This module holds the connections and the run records.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from .errors import RunError, StoreDamaged
from .events import BatchEnded, EpochEnded, Event, RunEnded, RunFailed, RunStarted, RunStatus, event_from_dict
from .liveness import pid_alive, process_start_time
from .run_files import CONFIG_FILE, METRICS_FILE, REPORT_FILE, RUN_ID_RE, created_of, read_logged_events, run_folders
from .store_flusher import OPEN_STORES, Flusher, MetricsBuffer
from .store_ranking import after_epoch, best_from_db, epoch_summary, watched_metric
from .store_sql import (
    COLUMNS,
    DB_NAME,
    EPOCH_METRICS,
    MIGRATIONS,
    SCHEMA_VERSION,
    STEP_METRICS,
    UPDATABLE,
    check_scope,
    insert_metrics,
    loads,
    number,
    query_metrics,
)

BUSY_TIMEOUT_S = 10.0
MAX_IDLE_READERS = 4          # reader connections kept open between reads
PID_START_SLACK_S = 2.0       # clock-tick rounding when comparing process start times

# Failures recorded before RunFailed said whether a resume could help: these were the data's or the settings'.
NOT_RESUMABLE_ERRORS = ("DataError", "ConfigError", "TrainingDiverged")
INTERRUPTED_MESSAGE = "the process running it stopped unexpectedly; resume it to continue from its last checkpoint"
ALL_STATUSES = tuple(RunStatus)


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    created: float
    updated: float
    status: RunStatus
    modality: str
    model: str
    dataset: str
    dataset_fingerprint: str
    config: dict = field(default_factory=dict)
    best_metrics: dict = field(default_factory=dict)
    message: str = ""
    advice: str = ""
    pid: int | None = None
    host: str | None = None
    epochs_done: int = 0
    heartbeat: float | None = None
    epochs_planned: int | None = None   # None until the run starts
    batch_size: int | None = None       # what a step trains on; None until the run starts

    @property
    def total_epochs(self) -> int:
        """The epochs the run plans to train: train.epochs plus any extension."""
        return self.epochs_planned or int((self.config.get("train") or {}).get("epochs") or 0)

    @property
    def is_active(self) -> bool:
        return self.status in RunStatus.ACTIVE

    @property
    def duration(self) -> float:
        """Seconds from creation to the last sign of life (now, while it is active)."""
        if self.is_active:
            end = time.time()
        else:
            end = max(self.updated, self.heartbeat or 0.0)
        return max(0.0, end - self.created)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "duration": self.duration}

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple) -> "RunRecord":
        values = dict(zip(COLUMNS, row))
        values["config"] = loads(values.pop("config_json"))
        values["best_metrics"] = loads(values.pop("best_metrics_json"))
        values["status"] = RunStatus(values["status"])
        return cls(**values)


def _dumps(value: Any) -> str:
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.dumps(value, default=str)


def new_run_id(now: float | None = None) -> str:
    """`20261125-193012-ab12cd`: sorts by creation time, readable, unique enough to type a prefix."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def default_run_name(model: str, dataset: str) -> str:
    """The name of a run nobody named, the same from the app and the command line: e.g. "efficientnet_lite0 on
    Fashion-MNIST (60 per class)", "minilm_l6 on reviews", "bert-base-uncased on photos" (a hub id or a model
    folder by its last part, a file without its extension)."""
    from .data.demo import DEMO_TITLES

    model_part = model.rstrip("/\\").replace("\\", "/").split("/")[-1] or model
    if dataset.startswith("demo:"):
        name, _, query = dataset.removeprefix("demo:").partition("?")
        title = DEMO_TITLES.get(name, name)
        data_part = f"{title} ({query.removeprefix('per_class=')} per class)" if query else title
    else:
        data_part = dataset.rstrip("/\\").replace("\\", "/").split("/")[-1]
        if "." in data_part:
            data_part = data_part.rsplit(".", 1)[0]
    return f"{model_part} on {data_part}" if data_part else model_part


class RunStore:
    """Runs, metrics and event logs under one root directory. Safe to share between threads."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        self.db_path = self.root / DB_NAME
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(exc) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise self._unwritable("permission denied")
        self._closed = False
        self._init_process_state()
        self._check_not_emptied()
        with self._translate_errors():
            self._migrate()
        OPEN_STORES.add(self)

    # ---------------------------------------------------------------- connections

    def _init_process_state(self) -> None:
        # Connections and locks must not cross a fork; this is (re)built per process.
        self._pid = os.getpid()
        self._connections: list[sqlite3.Connection] = []
        self._idle_readers: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._buffer = MetricsBuffer()
        self._pending_error: RunError | None = None
        self._known_runs: set[str] = set()
        self._writer: sqlite3.Connection | None = None
        self._flusher = Flusher()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit, so readers never hold a stale snapshot.
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise RunError(f"the run store at {self.root} is closed; open a new RunStore")
        if self._pid != os.getpid():
            self._init_process_state()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A pooled reader connection; a pool rather than one per thread, because UI frameworks
        run each page refresh in a fresh thread and per-thread connections would pile up."""
        self._check_open()
        with self._connections_lock:
            conn = self._idle_readers.pop() if self._idle_readers else None
        if conn is None:
            with self._translate_errors():
                conn = self._connect()
        try:
            with self._translate_errors():
                yield conn
        finally:
            with self._connections_lock:
                keep = not self._closed and conn in self._connections and len(self._idle_readers) < MAX_IDLE_READERS
                if keep:
                    self._idle_readers.append(conn)
                elif conn in self._connections:
                    self._connections.remove(conn)
            if not keep:
                conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short IMMEDIATE transaction: takes the write lock up front, so busy_timeout applies."""
        self._check_open()
        with self._write_lock, self._translate_errors():
            if self._writer is None:
                self._writer = self._connect()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise RunError(f"the run database {self.db_path} was written by a newer version of "
                                   f"transfer_core (schema {version}); upgrade transfer_core or choose "
                                   f"another runs directory with --runs-dir")
                for script in MIGRATIONS[version:]:
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                if version < SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
            with self._connections_lock:
                self._connections.remove(conn)

    def _check_not_emptied(self) -> None:
        # SQLite takes an empty file for a new database, so a truncated runs.sqlite would silently
        # start an empty history beside run folders it no longer lists. A database this class made
        # is never empty (setting WAL mode writes its header), so an empty one beside run folders is damage.
        try:
            emptied = self.db_path.stat().st_size == 0
        except FileNotFoundError:
            return
        if emptied:
            folders = run_folders(self.root)
            if folders:
                raise StoreDamaged(self.db_path, f"the file is empty while {len(folders)} run folder(s) are beside it")

    def _unwritable(self, reason: Any) -> RunError:
        return RunError(f"cannot write to runs directory {self.root} ({reason}); choose another with --runs-dir")

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        """Turns SQLite failures a user can fix into one-line RunErrors; the DB stays consistent."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            text = str(exc).lower()
            if "is full" in text:
                raise RunError(f"cannot save run data: the disk holding {self.root} is full ({exc}); "
                               f"free some space or choose another runs directory with --runs-dir") from None
            if "locked" in text or "busy" in text:
                raise RunError(f"the run database {self.db_path} stayed locked by another process for over "
                               f"{BUSY_TIMEOUT_S:g} s; close other programs using it and try again") from None
            if "readonly" in text or "read-only" in text or "unable to open" in text or "disk i/o" in text:
                raise self._unwritable(exc) from None
            if "malformed" in text or "not a database" in text:
                raise StoreDamaged(self.db_path, str(exc)) from None
            raise

    # ---------------------------------------------------------------- runs

    def create_run(self, config: dict, *, name: str | None = None, modality: str, model: str,
                   dataset: str, dataset_fingerprint: str = "", status: RunStatus = RunStatus.QUEUED) -> str:
        """Adds a run and its directory; returns its id.

        pid/host are the creating process until the run starts, so a queued run whose
        owner died is recognised by reconcile_interrupted().
        """
        _check_status(status)
        now = time.time()
        config_json = _dumps(config)
        for _ in range(5):
            run_id = new_run_id(now)
            try:
                with self._write() as conn:
                    conn.execute(
                        "INSERT INTO runs (id, name, created, updated, status, modality, model, dataset, "
                        "dataset_fingerprint, config_json, best_metrics_json, pid, host, heartbeat) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?)",
                        (run_id, name or default_run_name(model, dataset), now, now, status, modality,
                         model, dataset, dataset_fingerprint, config_json, os.getpid(),
                         socket.gethostname(), now))
                    # Inside the transaction: a directory that cannot be made leaves no row behind.
                    try:
                        self.run_dir(run_id, resolve=False).mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise self._unwritable(exc) from None
            except sqlite3.IntegrityError:
                continue   # random suffix collided within the same second
            self._known_runs.add(run_id)
            return run_id
        raise RunError("could not pick a unique run id; try again")

    def run_dir(self, run_id: str, *, resolve: bool = True) -> Path:
        """The run's directory (accepts a unique id prefix)."""
        if resolve:
            run_id = self._resolve_id(run_id)
        elif not RUN_ID_RE.match(run_id or ""):
            raise RunError(f"'{run_id}' is not a valid run id; list runs with `python -m transfer_core runs`")
        return self.root / run_id

    def _resolve_id(self, run_id: str) -> str:
        return self.get_run(run_id).id

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or with this unique id prefix."""
        columns = ", ".join(COLUMNS)
        with self._read() as conn:
            row = conn.execute(f"SELECT {columns} FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None and run_id and RUN_ID_RE.match(run_id):
                rows = conn.execute(f"SELECT {columns} FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                                    (run_id, run_id + "\U0010ffff")).fetchall()
                if len(rows) > 1:
                    shown = ", ".join(r[0] for r in rows[:5])
                    raise RunError(f"run id prefix '{run_id}' matches several runs ({shown}"
                                   f"{', ...' if len(rows) > 5 else ''}); give more characters")
                row = rows[0] if rows else None
        if row is None:
            raise RunError(f"no run '{run_id}'; list runs with `python -m transfer_core runs`")
        return RunRecord.from_row(row)

    def list_runs(self, status: str | Iterable[str] | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs newest first, optionally only those with the given status(es)."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM runs"
        params: list[Any] = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            sql += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            params += statuses
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    def set_status(self, run_id: str, status: RunStatus, message: str = "", advice: str = "") -> None:
        _check_status(status)
        self.update_run(run_id, status=status, message=message, advice=advice)

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Sets the given columns (config and best_metrics take dicts).

        Making a run active (queued/running/paused) without naming a pid makes this
        process its owner, so reconcile_interrupted() judges it by a live pid.
        """
        unknown = sorted(set(fields) - set(UPDATABLE))
        if unknown:
            raise TypeError(f"update_run() cannot set {', '.join(unknown)}; settable: {', '.join(UPDATABLE)}")
        if "status" in fields:
            _check_status(fields["status"])
            if fields["status"] in RunStatus.ACTIVE and "pid" not in fields:
                fields.update(pid=os.getpid(), host=socket.gethostname())
        run_id = self._resolve_id(run_id)
        assignments, params = ["updated = ?"], [time.time()]
        for key, value in fields.items():
            if key in ("config", "best_metrics"):
                value = _dumps(value)
            assignments.append(f"{UPDATABLE[key]} = ?")
            params.append(value)
        with self._write() as conn:
            # Buffered steps land with the status change, so no reader sees "paused" before the last step.
            self._write_buffer(conn)
            conn.execute(f"UPDATE runs SET {', '.join(assignments)} WHERE id = ?", (*params, run_id))

    def resume_refusal(self, run_id: str) -> str:
        """Why this run cannot be resumed, in one line; '' when it can be. A run that failed because of its
        data or its settings (RunFailed.resumable is false) would fail the same way again."""
        record = self.get_run(run_id)
        if record.status != RunStatus.FAILED:
            return ""
        with self._read() as conn:
            row = conn.execute("SELECT payload_json FROM events WHERE run_id = ? AND kind = 'RunFailed' "
                               "ORDER BY seq DESC LIMIT 1", (record.id,)).fetchone()
        failed = loads(row[0] if row else None)
        if failed.get("resumable", failed.get("error_type") not in NOT_RESUMABLE_ERRORS):
            return ""
        reason = record.message.strip().rstrip(".") or "its data or settings"
        return (f"run {record.id} failed because of its data or settings ({reason}), so a resume would fail "
                f"the same way; fix them and start a new run")

    def delete_run(self, run_id: str) -> None:
        """Removes the run's rows and its directory; refuses a run that is still active."""
        record = self.get_run(run_id)
        if record.is_active:
            raise RunError(f"run '{record.id}' is {record.status}; stop it first")
        self.flush()
        with self._write() as conn:
            # Re-checked inside the transaction: another process may have resumed it meanwhile.
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (record.id,)).fetchone()
            if row is not None and row[0] in RunStatus.ACTIVE:
                raise RunError(f"run '{record.id}' is {row[0]}; stop it first")
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (record.id,))
            conn.execute("DELETE FROM events WHERE run_id = ?", (record.id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (record.id,))
        self._known_runs.discard(record.id)
        directory = self.run_dir(record.id, resolve=False)
        # Never follow a link or a crafted id out of the root.
        if directory.is_symlink() or directory.resolve().parent != self.root.resolve():
            raise RunError(f"deleted run '{record.id}' but left {directory} because it is not a directory "
                           f"inside {self.root}; remove it by hand if it is no longer needed")
        if directory.exists():
            try:
                shutil.rmtree(directory)
            except OSError as exc:
                raise RunError(f"deleted run '{record.id}' but could not remove {directory} ({exc}); "
                               f"remove it by hand") from None

    def reconcile_interrupted(self, active_run_ids: Iterable[str] = ()) -> list[str]:
        """Marks active runs whose process is gone as interrupted; returns their ids.

        A run owned by this process counts as alive only if listed in active_run_ids
        (the job manager's own runs). Runs on other hosts are left alone: their pid
        cannot be checked from here.
        """
        active = set(active_run_ids)
        me, host = os.getpid(), socket.gethostname()
        statuses = RunStatus.ACTIVE
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT id, pid, host, MAX(updated, COALESCE(heartbeat, 0)) FROM runs "
                f"WHERE status IN ({', '.join('?' * len(statuses))})", statuses).fetchall()
        dead = []
        for run_id, pid, run_host, last_write in rows:
            if run_host and run_host != host:
                continue
            if pid == me:
                alive = run_id in active
            else:
                # A process that started after the run was last written cannot be its owner:
                # the pid was reused (after a reboot or a container restart).
                started = process_start_time(pid) if pid else None
                alive = pid_alive(pid) and (started is None or started <= last_write + PID_START_SLACK_S)
            if not alive:
                dead.append(run_id)
        if not dead:
            return []
        marked = []
        now = time.time()
        with self._write() as conn:
            for run_id in dead:
                # Only if still active: its process may have finished it since we looked.
                cursor = conn.execute(
                    f"UPDATE runs SET status = ?, message = ?, advice = '', updated = ? "
                    f"WHERE id = ? AND status IN ({', '.join('?' * len(statuses))})",
                    (RunStatus.INTERRUPTED, INTERRUPTED_MESSAGE, now, run_id, *statuses))
                if cursor.rowcount:
                    marked.append(run_id)
        return marked

    def _import_folder(self, folder: Path) -> None:
        """Adds the run of a folder that the database does not list (see rebuild_run_list)."""
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("config.json does not hold a run configuration")
        model = str((config.get("model") or {}).get("name") or "")
        dataset = str((config.get("data") or {}).get("path") or "")
        report = loads((folder / REPORT_FILE).read_text(encoding="utf-8")) if (folder / REPORT_FILE).is_file() else {}
        metrics = loads((folder / METRICS_FILE).read_text(encoding="utf-8")) if (folder / METRICS_FILE).is_file() else {}
        events = read_logged_events(folder)
        created = created_of(folder)
        run_id = folder.name
        with self._write() as conn:
            conn.execute("INSERT INTO runs (id, name, created, updated, status, modality, model, dataset, config_json, "
                         "message, pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                         (run_id, default_run_name(model, dataset), created, created, RunStatus.INTERRUPTED,
                          str(report.get("modality") or ""), model, dataset, json.dumps(config), INTERRUPTED_MESSAGE))
            # Replayed as they were recorded: the store derives the status, epochs and best numbers as it did then.
            for event in events:
                self._write_event(conn, event)
            if not events and isinstance(metrics.get("summary"), dict):
                summary = metrics["summary"]   # a run whose log is gone but whose final numbers were written
                conn.execute("UPDATE runs SET status = ?, message = '', epochs_done = ?, best_metrics_json = ? WHERE id = ?",
                             (RunStatus.COMPLETED, int(summary.get("epochs") or 0), json.dumps(summary), run_id))
            last = max([e.time for e in events] + [created])
            # No process owns a rebuilt run; one that was still going when its log ends is resumable as interrupted.
            conn.execute(f"UPDATE runs SET status = CASE WHEN status IN ({', '.join('?' * len(RunStatus.ACTIVE))}) "
                         f"THEN ? ELSE status END, message = CASE WHEN status IN ({', '.join('?' * len(RunStatus.ACTIVE))}) "
                         f"THEN ? ELSE message END, pid = NULL, host = NULL, updated = ?, heartbeat = ? WHERE id = ?",
                         (*RunStatus.ACTIVE, RunStatus.INTERRUPTED, *RunStatus.ACTIVE, INTERRUPTED_MESSAGE, last, last, run_id))
        self._known_runs.add(run_id)

    # ---------------------------------------------------------------- events

    def record_event(self, event: Event) -> None:
        """Persists an event: batch metrics are buffered, everything else is written at once."""
        self._check_open()
        self._raise_pending_error()
        self._check_known(event.run_id)
        if isinstance(event, BatchEnded):
            rows = [(event.run_id, "step", event.step, event.epoch, name, number(getattr(event, name)), event.time)
                    for name in STEP_METRICS]
            if self._buffer.add(event.run_id, rows):
                self.flush()
            else:
                self._flusher.ensure_running(self)
            return
        with self._write() as conn:
            self._write_buffer(conn)
            self._write_event(conn, event)

    def _check_known(self, run_id: str) -> None:
        # Caught here, in the caller, rather than later as a failed background write.
        if run_id in self._known_runs:
            return
        with self._read() as conn:
            row = conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"no run '{run_id}'; list runs with `python -m transfer_core runs`")
        self._known_runs.add(run_id)

    def _write_event(self, conn: sqlite3.Connection, event: Event) -> None:
        now = time.time()
        run_id = event.run_id
        conn.execute(
            "INSERT INTO events (run_id, seq, kind, time, payload_json) "
            "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM events WHERE run_id = ?",
            (run_id, event.kind, event.time, json.dumps(event.to_dict(), default=str), run_id))
        if isinstance(event, RunStarted):
            # A fresh start or a resume: drop what the previous attempt logged past the restart point.
            # The resumed epoch may restart mid-way, so its steps stay; re-logged steps replace them.
            conn.execute("DELETE FROM metrics WHERE run_id = ? AND ((scope = 'epoch' AND epoch >= ?) "
                         "OR (scope = 'step' AND epoch > ?))", (run_id, event.start_epoch, event.start_epoch))
            conn.execute("UPDATE runs SET status = ?, pid = ?, host = ?, message = '', advice = '', "
                         "epochs_done = ?, best_metrics_json = ?, updated = ?, heartbeat = ?, epochs_planned = ?, "
                         "batch_size = COALESCE(?, batch_size) WHERE id = ?",
                         (RunStatus.RUNNING, os.getpid(), socket.gethostname(), event.start_epoch,
                          json.dumps(best_from_db(conn, run_id)), now, now, event.epochs, event.batch_size or None,
                          run_id))
        elif isinstance(event, EpochEnded):
            insert_metrics(conn, [(run_id, "epoch", event.step, event.epoch, name, number(getattr(event, name)),
                                    event.time) for name in EPOCH_METRICS if getattr(event, name) is not None])
            summary = loads(conn.execute("SELECT best_metrics_json FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            row = {"epoch": event.epoch, "step": event.step, **{name: getattr(event, name) for name in EPOCH_METRICS}}
            summary = after_epoch(summary, row, watched_metric(conn, run_id))
            conn.execute("UPDATE runs SET epochs_done = ?, best_metrics_json = ?, updated = ?, heartbeat = ? "
                         "WHERE id = ?", (event.epoch + 1, json.dumps(summary), now, now, run_id))
        elif isinstance(event, RunEnded):
            best = loads(conn.execute("SELECT best_metrics_json FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            # The trainer's final evaluation of the model you get wins; when that model is not the last
            # epoch's (early stopping restored the best), that epoch's logged training numbers fill in the rest.
            model_epoch = event.metrics.get("model_epoch")
            if isinstance(model_epoch, int) and model_epoch >= 0 and best.get("model_epoch") != model_epoch:
                rows = query_metrics(conn, run_id, "epoch", since=model_epoch - 1).to_dict("records")
                if rows and rows[0]["epoch"] == model_epoch:
                    best.update(epoch_summary(rows[0]))
            best.update(event.metrics)
            best["train_seconds"] = event.train_seconds
            conn.execute("UPDATE runs SET status = ?, epochs_done = ?, best_metrics_json = ?, message = '', "
                         "advice = '', updated = ?, heartbeat = ? WHERE id = ?",
                         (event.status, event.epochs_done, json.dumps(best, default=str), now, now, run_id))
        elif isinstance(event, RunFailed):
            conn.execute("UPDATE runs SET status = ?, message = ?, advice = ?, updated = ?, heartbeat = ? "
                         "WHERE id = ?", (RunStatus.FAILED, event.message, event.advice, now, now, run_id))
        else:   # Notice and anything newer: the log only
            conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id))

    def _write_buffer(self, conn: sqlite3.Connection) -> None:
        """Writes buffered batch rows inside the caller's transaction (write lock held)."""
        rows, runs = self._buffer.take()
        if not rows:
            return
        try:
            # A run deleted meanwhile (by another process) would fail the whole batch on its foreign key.
            existing = {row[0] for row in conn.execute(
                f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(runs))})", tuple(runs))}
            if existing != runs:
                rows = [row for row in rows if row[0] in existing]
                runs = existing
            insert_metrics(conn, rows)
            now = time.time()
            conn.executemany("UPDATE runs SET heartbeat = ? WHERE id = ?", [(now, run_id) for run_id in runs])
        except BaseException:
            # The transaction rolls back; keep the rows so a later flush can retry them.
            self._buffer.put_back(rows, runs)
            raise

    def flush(self) -> None:
        """Writes buffered batch metrics now."""
        self._check_open()
        self._raise_pending_error()
        if self._buffer:
            with self._write() as conn:
                self._write_buffer(conn)

    def _background_flush(self) -> None:
        if self._closed or not self._buffer or self._pid != os.getpid():
            return
        try:
            with self._write() as conn:
                self._write_buffer(conn)
        except RunError as exc:
            self._pending_error = exc   # raised to the training loop on its next event
        except Exception as exc:        # keep the flusher alive; surface the failure to the writer
            self._pending_error = RunError(f"cannot save run metrics to {self.db_path} ({exc})")

    def _raise_pending_error(self) -> None:
        error, self._pending_error = self._pending_error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Flushes and closes every connection. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._pid == os.getpid():
                self._flusher.stop()
                if self._buffer:
                    with self._write() as conn:
                        self._write_buffer(conn)
        finally:
            self._closed = True
            OPEN_STORES.discard(self)
            with self._connections_lock:
                connections, self._connections, self._idle_readers = self._connections, [], []
            for conn in connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._writer = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # ---------------------------------------------------------------- readers

    def metrics(self, run_id: str, scope: str = "epoch", *, since: int | None = None,
                max_points: int | None = None) -> pd.DataFrame:
        """One row per epoch (scope='epoch') or per optimizer step (scope='step'), one column per metric.

        Columns: step, epoch, time, then the metrics (NaN where not logged).
        since: only epochs/steps after this one, for cheap incremental polling.
        max_points: keep about this many evenly spaced rows (always the last), for charts of long runs.
        """
        check_scope(scope)
        with self._read() as conn:
            return query_metrics(conn, run_id, scope, since, max_points)

    def metrics_for_runs(self, run_ids: Iterable[str], scope: str = "epoch", *,
                         max_points: int | None = None) -> pd.DataFrame:
        """metrics() of several runs stacked, with a leading run_id column (for overlay charts)."""
        check_scope(scope)
        frames = []
        for run_id in dict.fromkeys(run_ids):
            frame = self.metrics(run_id, scope, max_points=max_points)
            frame.insert(0, "run_id", pd.Series([run_id] * len(frame), dtype=object))
            frames.append(frame)
        if not frames:
            empty = self.metrics("", scope)
            empty.insert(0, "run_id", pd.Series(dtype=object))
            return empty
        return pd.concat(frames, ignore_index=True)

    def events(self, run_id: str, since_seq: int = 0) -> list[Event]:
        """The logged events after the since_seq-th (counting from 1), oldest first, as the typed events
        fit() emitted. Batch events are kept as step metrics only (see metrics(scope='step')), so the log
        stays small enough to replay. An event this version cannot read (a newer version's) is left out."""
        with self._read() as conn:
            rows = conn.execute("SELECT payload_json FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
                                (run_id, since_seq)).fetchall()
        events = []
        for (payload,) in rows:
            try:
                events.append(event_from_dict(json.loads(payload)))
            except (KeyError, TypeError, ValueError):
                continue
        return events


# -------------------------------------------------------------------- rebuilding the run list

@dataclass(frozen=True)
class Rebuilt:
    added: list            # run ids listed again
    skipped: list          # (folder name, reason) of run folders that could not be read
    kept: Path | None      # where the damaged database was moved, if it was


def rebuild_run_list(root: str | os.PathLike) -> Rebuilt:
    """Lists again every run folder the run database does not list, from the files the trainer wrote in it
    (config.json, and the events in log.txt: epochs, the final numbers, a failure). A damaged database is
    first moved aside (kept, never deleted) and a fresh one started. Per-batch curves are not in the
    folders, so rebuilt runs have their epoch curves only."""
    root = Path(root).expanduser()
    kept = None
    try:
        store = RunStore(root)
    except StoreDamaged:
        kept = _move_aside(root / DB_NAME)
        store = RunStore(root)
    added, skipped = [], []
    try:
        listed = {r.id for r in store.list_runs()}
        for folder in run_folders(root):
            if folder.name in listed:
                continue
            try:
                store._import_folder(folder)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                skipped.append((folder.name, f"{type(exc).__name__}: {exc}"))
            else:
                added.append(folder.name)
    finally:
        store.close()
    return Rebuilt(added, skipped, kept)


def _move_aside(db_path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db_path.with_name(f"{db_path.name}.damaged-{stamp}")
    while target.exists():
        target = db_path.with_name(f"{db_path.name}.damaged-{stamp}-{secrets.token_hex(2)}")
    # The WAL and shared-memory files belong to the damaged database: a fresh one must not pick them up.
    for suffix in ("-wal", "-shm"):
        companion = db_path.with_name(db_path.name + suffix)
        if companion.exists():
            companion.replace(target.with_name(target.name + suffix))
    db_path.replace(target)
    return target


# -------------------------------------------------------------------- helpers

def _check_status(status: str) -> None:
    if status not in ALL_STATUSES:
        raise ValueError(f"unknown run status {status!r}; one of {', '.join(ALL_STATUSES)}")
