"""Where a run reports: its events go to the run store, to log.txt (all but the per-batch ones, which the
store keeps as step metrics) and to any observers; its JSON files go into the run folder."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ..atomic import write_json
from ..events import BatchEnded, Event, Notice, RunStatus
from ..run_files import LOG_FILE
from ..store import RunStore

Observer = Callable[[Event], None]


class RunOutput:
    """`quiet`: a process of a distributed run other than rank 0, which reports nothing (loop/distributed.py)."""

    def __init__(self, store: RunStore, run_id: str, run_dir: Path, observers: list[Observer], quiet: bool = False):
        self.store, self.run_id, self.run_dir, self.observers = store, run_id, run_dir, observers
        self.quiet = quiet

    def emit(self, event: Event) -> None:
        if self.quiet:
            return
        self.store.record_event(event)
        if not isinstance(event, BatchEnded):
            self.log(json.dumps(event.to_dict(), default=str))
        for observer in self.observers:
            observer(event)

    def notify(self, message: str) -> None:
        """A Notice: one line for the user, on the Train page and in the log."""
        self.emit(Notice(self.run_id, time.time(), message=message))

    def set_status(self, status: RunStatus, **fields) -> None:
        if not self.quiet:
            self.store.set_status(self.run_id, status, **fields)

    def update_run(self, **fields) -> None:
        if not self.quiet:
            self.store.update_run(self.run_id, **fields)

    def log(self, line: str) -> None:
        if self.quiet:
            return
        with open(self.run_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def write_json(self, filename: str, obj) -> None:
        if not self.quiet:
            write_json(self.run_dir / filename, obj)
