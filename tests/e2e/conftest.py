"""End-to-end fixtures: the real app served by `streamlit run` on a free loopback port, and a headless
Chromium (Debian's /usr/bin/chromium) driven by Playwright. Screenshots go to test-artifacts/screenshots/."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from e2ehelpers import CHROMIUM, CHROMIUM_ARGS, ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`streamlit run streamlit_app.py` with its runs, uploads and caches in temporary folders."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium); never `playwright install`")
    base = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    env = {**os.environ, "TRANSFER_CORE_RUNS": str(base / "runs"), "TRANSFER_APP_DATA": str(base / "data"),
           "TRANSFER_CORE_CACHE": str(base / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start; see {base / 'server.log'}:\n{(base / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)
    yield {"url": url, "base": base, "log": base / "server.log"}
    proc.send_signal(signal.SIGTERM)       # running jobs stop and checkpoint on the way out
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
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
