"""Training checkpoints: written atomically, read back with weights_only=True (no pickled code runs)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import RunError


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file and rename, so a crash mid-write never leaves a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)   # a full disk leaves the last good checkpoint, and no torn copy


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise RunError("this run has no checkpoint yet (it stopped before its first epoch ended); start it again instead of resuming")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"the checkpoint {path} cannot be read ({type(exc).__name__}); start the run again") from None
