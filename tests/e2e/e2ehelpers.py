"""Helpers for the browser tests: page opening, full-page screenshots, error checks."""
from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def sign_in(ctx, server: dict) -> None:
    """Open the address the app printed (with its token) in this browser context: the server answers with
    the access cookie, which every later page, reload and websocket of the context sends."""
    response = ctx.request.get(server["address"])
    assert response.ok, (response.status, response.url)


def open_page(ctx, url: str, path: str = ""):
    page = ctx.new_page()
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    return page


def wait_until_idle(page, timeout_ms: int = 60_000) -> None:
    """Until the page's script run is over (Streamlit marks its root with the run's state). A widget
    change reaches the server in a run of its own; a click made during that run can act on the
    page's previous choice."""
    from playwright.sync_api import expect
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning",
                                                          timeout=timeout_ms)


def screenshot(page, name: str) -> Path:
    """The whole page (Streamlit scrolls inside its main block, so the viewport is stretched to fit)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.8)
    height = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m ? m.scrollHeight : document.body.scrollHeight; }")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height + 40), 8000)})
    time.sleep(0.8)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def no_error_boxes(page) -> None:
    """No traceback and no unexpected-error message anywhere on the page."""
    assert page.locator("[data-testid='stException']").count() == 0
    texts = page.locator("[data-testid='stAlertContentError']").all_inner_texts()
    assert not [t for t in texts if "unexpected" in t or "Traceback" in t], texts
