"""End-to-end fixtures: the real app served by `streamlit run` on a free loopback port, and a headless
Chromium (Debian's /usr/bin/chromium) driven by Playwright. Screenshots go to test-artifacts/screenshots/."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from e2ehelpers import CHROMIUM, CHROMIUM_ARGS, ROOT, sign_in
from outbound import OutboundTrap

sys.path.insert(0, str(ROOT / "benchmarks"))
import app_latency  # noqa: E402  (benchmarks/app_latency.py starts the server the same way for its measurements)


@pytest.fixture(scope="session")
def outbound_trap():
    """Every proxy variable of the server points here: whatever it tries to send out during the whole browser
    suite arrives here instead (tests/outbound.py), and fails the suite. (What the pages fetch is checked in
    the browser: see `context`.)"""
    trap = OutboundTrap()
    yield trap
    trap.close()
    assert trap.arrivals == [], f"outside requests during the browser tests: {trap.arrivals}"


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, outbound_trap):
    """`streamlit run streamlit_app.py` with its runs, uploads and caches in temporary folders."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium); Playwright's own browser download is not used")
    base = tmp_path_factory.mktemp("e2e")
    # Stopped with SIGTERM at the end: running jobs stop and checkpoint on the way out.
    with app_latency.app_server(base, cache=str(base / "cache"), ready_timeout=90,
                                env=outbound_trap.proxy_env()) as address:
        # url: the app's base address; address: the one it prints, with the access token (app/access.py)
        yield {"url": app_latency.sign_in(address)[0], "address": address, "base": base, "log": base / "server.log"}
    text = (base / "server.log").read_text()
    assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser, app_server):
    """A browser that has opened the app's printed address once, as its user does: it holds the access cookie."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    sign_in(ctx, app_server)
    # Every request the app's pages make goes to the app itself: no fonts, icons or images from elsewhere.
    outside: list[str] = []
    ctx.on("request", lambda r: None if r.url.startswith((app_server["url"] + "/", "data:", "blob:"))
           else outside.append(r.url))
    yield ctx
    ctx.close()
    assert outside == [], f"the pages fetched from outside the app: {outside[:5]}"
