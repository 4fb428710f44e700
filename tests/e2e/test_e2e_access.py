"""The launch token in a real browser (app/access.py): no page without it, the printed address signs the browser
in, page changes and reloads keep working, and a page served by another program on this machine cannot use
the app's websocket even in the signed-in browser. The server's proxy variables point at a trap and the
browser records every request its pages make (tests/e2e/conftest.py): nothing may go outside."""
from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest
from e2ehelpers import no_error_boxes, open_page, screenshot, sign_in, wait_until_idle
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Another local program's page (a notebook, a dev server): it tries the app's websocket and says what happened,
# and tries to show the app in a frame (to trick clicks on it).
PROBE = """<!doctype html><title>probing</title>
<iframe id="app" src="http://127.0.0.1:{port}/runs" width="800" height="600"></iframe><script>
const ws = new WebSocket("ws://127.0.0.1:{port}/_stcore/stream", "streamlit");
ws.onopen = () => {{ document.title = "connected"; }};
ws.onerror = () => {{ document.title = "refused"; }};
</script>"""


@pytest.fixture
def bare_context(browser):
    """A browser that has never seen the app's address with its token."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    yield ctx
    ctx.close()


@pytest.fixture
def other_local_server(tmp_path, app_server):
    """A plain HTTP server on another loopback port, serving the probing page."""
    port = int(app_server["url"].rsplit(":", 1)[1])
    (tmp_path / "probe.html").write_text(PROBE.format(port=port))
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{free}"
    server.shutdown()


def test_without_the_token_the_browser_gets_a_page_saying_where_to_find_it(app_server, bare_context):
    page = bare_context.new_page()
    response = page.goto(app_server["url"] + "/runs")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Transfer Studio needs its access token")).to_be_visible()
    expect(page.get_by_text("printed in the terminal")).to_be_visible()
    assert page.locator("[data-testid='stApp']").count() == 0
    screenshot(page, "40_access_token_needed")

    page.goto(app_server["url"] + "/?token=not-this-apps-token-0123")
    expect(page.get_by_role("heading", name="That is not this app's access token")).to_be_visible()


def test_the_printed_address_opens_the_app_and_page_changes_and_reloads_keep_it(app_server, bare_context):
    page = bare_context.new_page()
    page.goto(app_server["address"])
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    expect(page.get_by_role("heading", name="Transfer Studio", level=1)).to_be_visible(timeout=60_000)
    assert "token=" not in page.url                              # out of the address bar and the history
    page.get_by_test_id("stSidebarNav").get_by_text("Runs", exact=True).click()
    expect(page.get_by_role("heading", name="Runs", level=1)).to_be_visible(timeout=60_000)
    wait_until_idle(page)
    page.reload()
    expect(page.get_by_role("heading", name="Runs", level=1)).to_be_visible(timeout=60_000)
    deep = bare_context.new_page()                               # a bookmark of a page, in a new tab
    deep.goto(app_server["url"] + "/data")
    expect(deep.get_by_role("heading", name="Data", level=1)).to_be_visible(timeout=60_000)
    no_error_boxes(deep)
    cookie = next(c for c in bare_context.cookies() if c["name"].startswith("transfer_studio_"))
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("transfer_studio_") == -1   # page scripts cannot read it


def test_a_page_of_another_local_server_cannot_open_the_websocket_or_frame_the_app(app_server, bare_context,
                                                                                  other_local_server):
    """The browser holds the access cookie, and cookies ignore ports, so it sends it along; the origin of
    the other server's page is what the app refuses, and its answers may be framed by its own pages only."""
    context = bare_context
    sign_in(context, app_server)
    assert any(c["name"].startswith("transfer_studio_") for c in context.cookies())
    page = context.new_page()
    page.goto(other_local_server + "/probe.html")
    expect(page).to_have_title("refused", timeout=30_000)
    page.wait_for_timeout(3000)                                  # time for the frame to load, were it allowed
    assert all(f.locator("[data-testid='stApp']").count() == 0 for f in page.frames), "the app was framed"
    own = open_page(context, app_server["url"], "runs")          # while the app's own pages still work
    expect(own.get_by_role("heading", name="Runs", level=1)).to_be_visible(timeout=60_000)


def test_every_page_loads_without_sending_anything_out(app_server, context, outbound_trap):
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = open_page(context, app_server["url"])
    for title in ("Data", "Model and layers", "Train", "Results", "Try and export", "Runs", "Home"):
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        wait_until_idle(page)
        no_error_boxes(page)
    page.reload()
    wait_until_idle(page)
    outside = [u for u in requests if not u.startswith((app_server["url"] + "/", "data:", "blob:"))]
    print(f"\n{len(requests)} requests by the pages, {len(outside)} outside the app; "
          f"{len(outbound_trap.arrivals)} outside requests by the server")
    assert requests and outside == [], outside
    assert outbound_trap.arrivals == [], outbound_trap.arrivals
