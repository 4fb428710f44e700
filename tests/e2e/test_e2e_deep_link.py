"""A deep link opened first on a freshly started server runs through the router: Streamlit's main script
(app/router.py) does not sit beside pages/, so Streamlit never runs a page script on its own."""
from __future__ import annotations

import pytest
from e2ehelpers import no_error_boxes, screenshot
from playwright.sync_api import expect

import app_latency  # noqa: F401  (on sys.path through tests/e2e/conftest.py)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory, outbound_trap):
    base = tmp_path_factory.mktemp("fresh")
    with app_latency.app_server(base, cache=str(base / "cache"), ready_timeout=90,
                                env=outbound_trap.proxy_env()) as address:
        yield address


def test_a_deep_link_on_a_fresh_server_finds_the_routers_page(fresh_server, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        base, token = fresh_server.split("/?token=")
        page.goto(f"{base}/runs?token={token}")               # the first page any session of this server runs
        expect(page.get_by_role("heading", name="Runs", level=1)).to_be_visible(timeout=90_000)
        nav = page.get_by_test_id("stSidebarNav")
        for title in ("Home", "Data", "Model and layers", "Train", "Results", "Try and export", "Runs"):
            expect(nav.get_by_text(title, exact=True)).to_be_visible()   # the router's titles, not file names
        no_error_boxes(page)
        screenshot(page, "41_deep_link_fresh_server")
    finally:
        ctx.close()
