"""Where a run reports: its events go to the run store, to log.txt (all but the per-batch ones, which the
store keeps as step metrics) and to any observers; its JSON files go into the run folder."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ..atomic import write_json
from ..events import BatchEnded, Event, Notice
from ..run_files import LOG_FILE
from ..store import RunStore

Observer = Callable[[Event], None]


class RunOutput:
    def __init__(self, store: RunStore, run_id: str, run_dir: Path, observers: list[Observer]):
        self.store, self.run_id, self.run_dir, self.observers = store, run_id, run_dir, observers

    def emit(self, event: Event) -> None:
        self.store.record_event(event)
        if not isinstance(event, BatchEnded):
            self.log(json.dumps(event.to_dict(), default=str))
        for observer in self.observers:
            observer(event)

    def notify(self, message: str) -> None:
        """A Notice: one line for the user, on the Train page and in the log."""
        self.emit(Notice(self.run_id, time.time(), message=message))

    def log(self, line: str) -> None:
        with open(self.run_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def write_json(self, filename: str, obj) -> None:
        write_json(self.run_dir / filename, obj)
