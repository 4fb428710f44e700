"""A quick reachability probe, so an offline machine fails in seconds instead of hanging or retrying."""
from __future__ import annotations

import socket
import time

# The tail of every "could not download" error: what works with no network.
OFFLINE_HINT = "use an offline model: efficientnet_lite0 (images) or minilm_l6 (texts)"

_seen: dict[str, tuple[float, bool]] = {}


def reachable(host: str, port: int = 443, timeout: float = 3.0, ttl: float = 60.0) -> bool:
    """One TCP connect to host:port (to the HTTPS proxy instead, where one is set for it), remembered for
    `ttl` seconds."""
    host, port = _through_proxy(host, port)
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


def _through_proxy(host: str, port: int) -> tuple[str, int]:
    """Where a download from `host` connects first: the proxy of HTTPS_PROXY/https_proxy unless NO_PROXY
    exempts the host (the same rules urllib and requests follow)."""
    import urllib.request
    from urllib.parse import urlparse

    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return host, port
    parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    return parsed.hostname or host, parsed.port or 80


def check_downloadable(spec, pretrained: bool) -> None:
    """Before a run exists: refuse a model that must download files when nothing is cached and
    the source cannot be reached (the build would only fail later, inside the run)."""
    from ..errors import ModelError
    where = _missing_download(spec, pretrained)
    if where:
        raise ModelError(f"model.name {spec.name} must download from {where}, which cannot be reached "
                         f"(no network?) and nothing is cached; {OFFLINE_HINT}")


# What a model needs before it can train here (availability()).
READY = "ready"                # everything is on this machine (installed, downloaded before, local, random)
DOWNLOAD = "download"          # it downloads on first use, and its source answers now
UNREACHABLE = "unreachable"    # it must download, and its source cannot be reached now


def availability(spec, pretrained: bool = True, *, probe: bool = True) -> str:
    """READY, DOWNLOAD or UNREACHABLE for a build of `spec` right now (one quick connect per source,
    remembered for a minute, and only when nothing is cached). Without `probe` nothing leaves the
    machine: a model that must download is DOWNLOAD (pages use this; Start probes, check_downloadable)."""
    cached, source = _download_source(spec, pretrained)
    if cached:
        return READY
    if not probe:
        return DOWNLOAD
    return DOWNLOAD if source[1]() else UNREACHABLE


def _missing_download(spec, pretrained: bool) -> str | None:
    """The host a build of `spec` would have to download from right now, or None when it need not."""
    cached, source = _download_source(spec, pretrained)
    return None if cached or source[1]() else source[0]


def _download_source(spec, pretrained: bool):
    """(whether everything a build needs is on this machine, (where it downloads from, a reachability check))."""
    import os
    from urllib.parse import urlparse
    if spec.source == "torchvision" and pretrained:
        import torch
        import torchvision
        url = torchvision.models.get_model_weights(spec.name).DEFAULT.url
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
        host = urlparse(url).hostname or ""
        return os.path.exists(cached), (host, lambda: reachable(host))
    if spec.source == "huggingface":   # hub ids need the hub (config, tokenizer) even without pretrained weights
        from huggingface_hub import try_to_load_from_cache

        from .huggingface import hub_reachable
        repo = spec.hub_path or spec.name
        files = ["config.json"] + (["model.safetensors", "pytorch_model.bin"] if pretrained else [])
        found = [isinstance(try_to_load_from_cache(repo, f), str) for f in files]
        return found[0] and (not pretrained or any(found[1:])), ("the Hugging Face hub", hub_reachable)
    return True, ("", lambda: True)
