"""A quick reachability probe, so an offline machine fails in seconds instead of hanging or retrying."""
from __future__ import annotations

import socket
import time

# The tail of every "could not download" error: what works with no network.
OFFLINE_HINT = "use an offline model: efficientnet_lite0 (images) or minilm_l6 (texts)"

_seen: dict[str, tuple[float, bool]] = {}


def reachable(host: str, port: int = 443, timeout: float = 3.0, ttl: float = 60.0) -> bool:
    """One TCP connect to host:port, remembered for `ttl` seconds."""
    now = time.monotonic()
    hit = _seen.get(host)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        ok = True
    except OSError:
        ok = False
    _seen[host] = (now, ok)
    return ok
