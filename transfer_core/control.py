"""Stop and pause flags, set from any thread and honoured by fit() at the next batch boundary; or asked for
by another process (the launcher of a distributed run, the web app) through a request file in the run folder."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from .atomic import atomic_path

REQUESTS = ("stop", "pause", "run")
POLL_SECONDS = 0.25   # how often a watched request file is read at most


class RunControl:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._file: Path | None = None
        self._polled = 0.0
        self._seen: float | None = None   # the request file's modification time when it was last read

    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        if not self._stop.is_set():
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def watch(self, path: Path, since: float | None = None) -> None:
        """Also follow the requests written to `path` (see request()): those written from `since` on (epoch
        seconds; None: from now on). One written before was for an earlier session of the run."""
        self._file = path
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if since is None or mtime < since:
            self._seen = mtime

    @property
    def stop_requested(self) -> bool:
        self._poll()
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        self._poll()
        return not self._running.is_set()

    def wait_while_paused(self, timeout: float = 0.5) -> bool:
        """Block up to `timeout` seconds while paused; True once running again."""
        if self._file is not None:   # a file is not an event to wait on: look at it again after a nap
            if self._running.wait(min(timeout, POLL_SECONDS)):
                return True
            return not self.paused
        return self._running.wait(timeout)

    def _poll(self) -> None:
        if self._file is None or time.monotonic() - self._polled < POLL_SECONDS:
            return
        self._polled = time.monotonic()
        try:
            stat = self._file.stat()
            if stat.st_mtime == self._seen:
                return
            self._seen = stat.st_mtime
            what = self._file.read_text(encoding="utf-8").strip()
        except OSError:
            return
        {"stop": self.request_stop, "pause": self.pause, "run": self.resume}.get(what, lambda: None)()


def request(path: Path, what: str) -> None:
    """Ask the run watching `path` (its folder's CONTROL_FILE) to stop, pause or run on."""
    if what not in REQUESTS:
        raise ValueError(f"a run can be asked to {', '.join(REQUESTS)}, not {what!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(what, encoding="utf-8")
