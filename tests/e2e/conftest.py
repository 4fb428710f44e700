"""End-to-end fixtures: the real app served by `streamlit run` on a free loopback port, and a headless
Chromium (Debian's /usr/bin/chromium) driven by Playwright. Screenshots go to test-artifacts/screenshots/."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from e2ehelpers import CHROMIUM, CHROMIUM_ARGS, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import app_latency  # noqa: E402  (benchmarks/app_latency.py starts the server the same way for its measurements)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`streamlit run streamlit_app.py` with its runs, uploads and caches in temporary folders."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium); Playwright's own browser download is not used")
    base = tmp_path_factory.mktemp("e2e")
    # Stopped with SIGTERM at the end: running jobs stop and checkpoint on the way out.
    with app_latency.app_server(base, cache=str(base / "cache"), ready_timeout=90) as url:
        yield {"url": url, "base": base, "log": base / "server.log"}
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
def context(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield ctx
    ctx.close()
