"""Content keys: two samples with the same key are the same example, whatever their ids."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache

from .types import Sample


@lru_cache(maxsize=200_000)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the cache key so an edited file is hashed again.
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def content_key(sample: Sample, modality: str) -> str:
    """Text: the text without surrounding whitespace; image: sha256 of the file bytes
    (an unreadable file gets a key of its own, so it never counts as a duplicate)."""
    if modality == "text":
        return "t:" + hashlib.sha256(sample.input.strip().encode("utf-8", "surrogatepass")).hexdigest()
    try:
        st = os.stat(sample.input)
        return "i:" + _file_digest(sample.input, st.st_size, st.st_mtime_ns)
    except OSError:
        return "missing:" + sample.input
