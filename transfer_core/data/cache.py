"""Where derived data (extracted zips, demo images) is kept between runs."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$TRANSFER_CORE_CACHE`, else `~/.cache/transfer_core`."""
    configured = os.environ.get("TRANSFER_CORE_CACHE", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "transfer_core"
