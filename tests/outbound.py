"""A trap for outside requests: a local listener that every proxy variable points at.

urllib, requests, httpx, huggingface_hub and Chromium (given it as its proxy) send every outside request
through the proxy, so anything the app tries to send out arrives here instead of leaving the machine.
Tests assert that nothing arrived (tests/hardening/test_access.py, tests/e2e/conftest.py).
"""
from __future__ import annotations

import socket
import threading

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class OutboundTrap:
    def __init__(self) -> None:
        self.arrivals: list[str] = []   # the first line of each request (e.g. "CONNECT checkip.amazonaws.com:443")
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.5)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="outbound-trap", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def proxy_env(self) -> dict[str, str]:
        """Environment variables that send a process's outside requests here (and exempt nothing)."""
        return {**dict.fromkeys(PROXY_VARIABLES, self.url), "NO_PROXY": "", "no_proxy": ""}

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:   # the half-second timeout, or closed
                continue
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(300).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    first = ""
                self.arrivals.append(first or "(a connection that sent nothing)")

    def close(self) -> None:
        self._stopped.set()
        self._server.close()
        self._thread.join(timeout=5)
