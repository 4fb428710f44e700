"""Per-batch metrics arrive far faster than one SQLite transaction each could keep up with: they wait in a
buffer, and a background thread writes them at least every FLUSH_INTERVAL seconds (store.py writes every
other event at once, after what the buffer holds). Stores still open at a normal exit are flushed then."""
from __future__ import annotations

import atexit
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import RunStore

FLUSH_INTERVAL = 0.5          # readers see batch metrics at most this late
MAX_BUFFERED_ROWS = 20_000    # beyond this the caller flushes itself (back-pressure)


class MetricsBuffer:
    """Metric rows waiting for the next write, added from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rows: list[tuple] = []
        self._runs: set[str] = set()

    def add(self, run_id: str, rows: list[tuple]) -> bool:
        """True when the buffer is full and the caller should write it now."""
        with self._lock:
            self._rows.extend(rows)
            self._runs.add(run_id)
            return len(self._rows) >= MAX_BUFFERED_ROWS

    def take(self) -> tuple[list[tuple], set[str]]:
        """Everything buffered, and the runs it belongs to; the buffer is empty after."""
        with self._lock:
            rows, self._rows = self._rows, []
            runs, self._runs = self._runs, set()
        return rows, runs

    def put_back(self, rows: list[tuple], runs: set[str]) -> None:
        """Rows a failed write took, ahead of any added since, for the next write to retry."""
        with self._lock:
            self._rows[:0] = rows
            self._runs |= runs

    def __bool__(self) -> bool:
        return bool(self._rows)


class Flusher:
    """A daemon thread that calls the store's background flush every FLUSH_INTERVAL seconds. It holds the
    store only weakly, so a store dropped without close() can still be freed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def ensure_running(self, store: RunStore) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=_flush_every_interval, args=(weakref.ref(store), self._stop),
                                                name="RunStore-flusher", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _flush_every_interval(store_ref: weakref.ref[RunStore], stop: threading.Event) -> None:
    while not stop.wait(FLUSH_INTERVAL):
        store = store_ref()
        if store is None:
            return
        store._background_flush()
        del store


# Stores with unflushed rows are flushed when the interpreter exits normally.
OPEN_STORES: weakref.WeakSet[RunStore] = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    for store in list(OPEN_STORES):
        try:
            store.close()
        except Exception:   # at exit nothing can be reported: a store whose disk went away loses its last rows
            pass
