"""Files written whole or not at all: write to a temporary file beside the target, then rename it over.

A crash, a kill or a full disk mid-write leaves the last good file (or none), never a torn one; the
temporary file is removed when the write fails. Temporary names carry the process and thread, so two
writers of the same file never write into each other's temporary file.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """A temporary path to write the new content to; it replaces `path` when the block ends without error.
    `durable` also flushes the file to the disk before the rename (checkpoints: they must survive a power cut)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The target's suffix stays last: some writers (numpy's .npy) look at it.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj, *, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False))
