"""Where derived data (extracted zips, demo images) is kept between runs."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    """`$TRANSFER_CORE_CACHE`, else `~/.cache/transfer_core`."""
    configured = os.environ.get("TRANSFER_CORE_CACHE", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "transfer_core"


def write_folder_once(final: Path, fill: Callable[[Path], None]) -> Path:
    """`final`, filled by `fill(folder)` the first time and reused after: written in a temporary folder beside
    it and renamed into place, so a crash or a concurrent writer never leaves a half-written folder."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # anything but "another process finished first"
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
