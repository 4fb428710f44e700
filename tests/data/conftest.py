"""Data tests: isolate the cache; make the repo and the helper module importable."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for p in (HERE.parents[1], HERE):  # run from anywhere, without installing the package
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache so nothing is written to the real home folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRANSFER_CORE_CACHE", str(cache))
    return cache
