"""Training checkpoints: written atomically, read back with weights_only=True (no pickled code runs)."""
from __future__ import annotations

import threading
from pathlib import Path

import torch

from .atomic import atomic_path
from .errors import RunError


def save_checkpoint(path: Path, state: dict) -> None:
    """A crash mid-write never leaves a torn checkpoint; a full disk leaves the last good one."""
    with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise RunError("this run has no checkpoint yet (none was written before it stopped); start it again instead of resuming")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"the checkpoint {path} cannot be read ({type(exc).__name__}); start the run again") from None


class CheckpointWriter:
    """Writes checkpoints in a background thread, so training goes on while the file is written.

    `save` copies the state first (every tensor to a new CPU tensor), so the steps that follow
    cannot change what is being written. One write at a time: `save` and `wait` first let the
    previous write finish, and `wait` re-raises its error (a full disk), so a failed write is
    reported at the next save, before a checkpoint is read, and when the run ends.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._kept: dict | None = None

    def keep(self, state: dict) -> None:
        """Hold a copy of `state` in memory instead of writing it; `latest` returns it until the next save,
        and `write_kept` writes it when it must not be lost."""
        self._kept = None   # the old copy goes first: never two copies of a large model at once
        self._kept = _copy_to_cpu(state)

    def write_kept(self, path: Path) -> None:
        """Write the state `keep` holds, in the background as `save` does (it stays what `latest` returns)."""
        if self._kept is None:
            return
        self.wait()
        self._start(path, self._kept)   # a private copy nothing changes: no second copy needed

    def latest(self, path: Path) -> dict:
        """The newest state (a copy the caller may change): the one kept in memory, else the file at
        `path` once its write is done."""
        self.wait()
        return _copy_to_cpu(self._kept) if self._kept is not None else load_checkpoint(path)

    def save(self, path: Path, state: dict) -> None:
        self.wait()
        self._kept = None
        self._start(path, _copy_to_cpu(state))

    def _start(self, path: Path, snapshot: dict) -> None:
        self._thread = threading.Thread(target=self._write, args=(path, snapshot), name="checkpoint-writer", daemon=True)
        self._thread.start()

    def _write(self, path: Path, state: dict) -> None:
        try:
            save_checkpoint(path, state)
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc


def _copy_to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _copy_to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_to_cpu(v) for v in obj)
    return obj
