"""The launch token, the websocket's origin check and no outside requests (app/access.py), one named test
each, against the real server (`streamlit run streamlit_app.py`) started as scripts/demo.sh starts it (the
hub allowed), with every proxy variable pointed at a local trap (tests/outbound.py). No browser: HTTP
requests and websocket handshakes as a browser sends them; tests/e2e/test_e2e_access.py does it in Chromium."""
from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outbound import OutboundTrap

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import app_latency  # noqa: E402  (starts the server as the browser tests do; its websocket client)

PAGES = ("", "data", "model", "train", "results", "try", "runs")


@pytest.fixture(scope="module")
def trap():
    t = OutboundTrap()
    yield t
    t.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, trap):
    base = tmp_path_factory.mktemp("access")
    env = {**trap.proxy_env(), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}   # as scripts/demo.sh
    with app_latency.app_server(base, cache=str(base / "cache"), env=env) as address:
        url, headers = app_latency.sign_in(address)
        yield {"address": address, "url": url, "cookie": headers["Cookie"], "port": int(url.rsplit(":", 1)[1]),
               "token": address.split("token=", 1)[1], "log": base / "server.log"}


def run_async(coro):
    """asyncio.run in a thread of its own: Playwright's sync API (the browser tests, same process) keeps an
    event loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def get(server, path: str, headers: dict | None = None) -> tuple[int, dict, str]:
    """One GET to the server, redirects not followed: (status, headers in lower case, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{server['port']}", **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def websocket_opens(server, origin: str | None, cookie: bool, headers: dict | None = None) -> bool:
    """Whether the app's websocket accepts this handshake (Origin as given, the access cookie or not)."""
    import websockets

    async def attempt() -> bool:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{server['port']}/_stcore/stream", subprotocols=["streamlit"],
                                          origin=origin, open_timeout=30,
                                          additional_headers={**({"Cookie": server["cookie"]} if cookie else {}),
                                                              **(headers or {})}) as ws:
                await ws.ping()
                return True
        except (websockets.InvalidStatus, websockets.InvalidHandshake, websockets.ConnectionClosed):
            return False

    return run_async(attempt())


# ----------------------------------------------------------------------------------------- the token's settings
def test_a_random_token_is_made_at_each_launch_unless_one_is_chosen():
    from app.access import access_from_env

    first, second = access_from_env({}), access_from_env({})
    assert first.token != second.token and len(first.token) >= 40
    chosen = access_from_env({"TRANSFER_STUDIO_TOKEN": "my-own-token-0123456789"})
    assert chosen.token == "my-own-token-0123456789"
    assert chosen.url("http://127.0.0.1:8501") == "http://127.0.0.1:8501/?token=my-own-token-0123456789"


@pytest.mark.parametrize("environ, names", [
    ({"TRANSFER_STUDIO_TOKEN": "short"}, "TRANSFER_STUDIO_TOKEN must be 16 to 256"),
    ({"TRANSFER_STUDIO_TOKEN": "a token with spaces in it"}, "TRANSFER_STUDIO_TOKEN must be 16 to 256"),
    ({"TRANSFER_STUDIO_TOKEN": "my-own-token-0123456789", "TRANSFER_STUDIO_NO_TOKEN": "1"}, "unset one of them"),
    ({"TRANSFER_STUDIO_NO_TOKEN": "maybe"}, "set it to 1 to run without a token"),
])
def test_unusable_token_settings_are_refused_in_one_line(environ, names):
    from app.access import AccessSetupError, access_from_env

    with pytest.raises(AccessSetupError, match=names) as err:
        access_from_env(environ)
    assert "\n" not in str(err.value)


def test_the_server_refuses_to_start_with_an_unusable_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFER_STUDIO_")}
    env.update(TRANSFER_STUDIO_TOKEN="short", TRANSFER_CORE_RUNS=str(tmp_path / "runs"),
               TRANSFER_APP_DATA=str(tmp_path / "data"))
    out = subprocess.run([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", "1",
                          "--server.headless", "true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Transfer Studio cannot start: TRANSFER_STUDIO_TOKEN must be 16 to 256" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout


def test_the_opt_out_opens_the_pages_and_nothing_else_does(monkeypatch):
    from app import access

    monkeypatch.setattr(access, "_current", None)               # pages served without the gate
    assert not access.session_allowed({}, environ={})
    assert access.session_allowed({}, environ={"TRANSFER_STUDIO_NO_TOKEN": "1"})
    gate = access.Access("my-own-token-0123456789")
    monkeypatch.setattr(access, "_current", gate)
    assert not access.session_allowed({}, environ={"TRANSFER_STUDIO_NO_TOKEN": "1"})   # the server's setting rules
    assert access.session_allowed({gate.cookie_name: gate.cookie_value}, environ={})


# ----------------------------------------------------------------------------------------- the running server
def test_the_server_prints_the_address_with_its_token(server):
    assert f"Open Transfer Studio at: {server['address']}" in server["log"].read_text()
    assert server["address"].startswith(f"http://127.0.0.1:{server['port']}/?token=")


@pytest.mark.parametrize("path", ["/", "/data", "/runs?run=x", "/_stcore/upload_file/s/f", "/media/x.png",
                                  "/_stcore/host-config", "/static/index.html", "/healthz", "/_stcore/metrics"])
def test_nothing_is_served_without_the_token(server, path):
    status, headers, body = get(server, path)
    assert status == 403, (path, status)
    assert "needs its access token" in body and "?token=" in body
    assert "set-cookie" not in headers or "transfer_studio_" not in headers["set-cookie"]


def test_the_health_probe_answers_without_the_token(server):
    status, _, body = get(server, "/_stcore/health")
    assert (status, body.strip()) == (200, "ok")


def test_a_wrong_token_gets_its_own_page_and_no_cookie(server):
    status, headers, body = get(server, "/?token=not-the-token-0123456789")
    assert status == 403 and "not this app's access token" in body
    assert "transfer_studio_" not in headers.get("set-cookie", "")


def test_the_printed_address_sets_the_cookie_and_leaves_the_address_bar(server):
    status, headers, _ = get(server, f"/?token={server['token']}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith(server["cookie"] + ";")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    # A deep link keeps its own query, without the token.
    status, headers, _ = get(server, f"/runs?run=abc&token={server['token']}")
    assert status == 303 and headers["location"] == "/runs?run=abc"


@pytest.mark.parametrize("path", ["//evil.example/", "/%2Fevil.example", "///evil.example/x"])
def test_the_sign_in_redirect_stays_on_this_server(server, path):
    """A path that starts with two slashes would be another site's address in the Location header."""
    status, headers, _ = get(server, f"{path}?token={server['token']}")
    assert status == 303 and headers["location"].startswith("/") and not headers["location"].startswith("//")


def test_other_origins_may_not_frame_or_load_the_app(server):
    """A page on another port of 127.0.0.1 is the same site, so the browser sends the cookie with its iframe
    or <img>: the answers say that only this origin may frame them or read them."""
    for path, cookie in (("/", True), ("/_stcore/metrics", True), ("/", False)):
        status, headers, _ = get(server, path, {"Cookie": server["cookie"]} if cookie else {})
        assert headers["x-frame-options"] == "SAMEORIGIN", path
        assert headers["content-security-policy"] == "frame-ancestors 'self'"
        assert headers["cross-origin-resource-policy"] == "same-origin"


def test_the_cookie_opens_every_page_and_reloads(server):
    for path in ("/", "/data", "/runs?run=abc", "/data"):        # page changes and a reload of the same page
        status, _, body = get(server, path, {"Cookie": server["cookie"]})
        assert status == 200 and "<html" in body.lower(), path


def test_other_host_names_are_refused(server):
    """DNS rebinding: a site whose name resolves to 127.0.0.1 reaches the port with its own Host header."""
    status, _, body = get(server, "/", {"Host": f"evil.example:{server['port']}", "Cookie": server["cookie"]})
    assert status == 403 and "answers on this machine only" in body


@pytest.mark.parametrize("origin, cookie, opens", [
    ("own", True, True),                       # the app's own page, signed in
    (None, True, True),                        # a script with the cookie (browsers always send an Origin)
    ("own", False, False),                     # the app's page in a browser that never had the token
    (None, False, False),                      # a script without the cookie
    ("http://127.0.0.1:{other}", True, False),  # a page of another server on this machine: the browser sends
    ("http://localhost:{other}", True, False),  # the cookie (cookies ignore ports), the origin gives it away
    ("http://evil.example", True, False),      # another site's page
    ("https://127.0.0.1:{own}", True, False),   # not this server's scheme
    ("http://127.0.0.1:{own}/x", True, False),  # not an origin as browsers write it
])
def test_the_websocket_needs_the_cookie_and_a_page_of_this_server(server, origin, cookie, opens):
    if origin == "own":
        origin = server["url"]
    elif origin:
        origin = origin.format(other=server["port"] + 1, own=server["port"])
    assert websocket_opens(server, origin, cookie) is opens


def test_behind_a_tls_proxy_the_https_page_is_the_apps_own(server):
    """A proxy that ends TLS says so (X-Forwarded-Proto), which a browser page cannot set on a websocket."""
    own_https = f"https://127.0.0.1:{server['port']}"
    assert websocket_opens(server, own_https, True, {"X-Forwarded-Proto": "https"})
    assert not websocket_opens(server, own_https, True)
    assert not websocket_opens(server, own_https, False, {"X-Forwarded-Proto": "https"})


def test_pages_run_only_for_a_signed_in_session(server):
    async def run_page(address: str):
        async with app_latency.Session(address, 120) as s:
            return await s.run("runs")

    page = run_async(run_page(server["address"]))
    assert page.status == app_latency.FINISHED_OK and page.has_text("Runs")
    with pytest.raises(Exception, match="403"):
        run_async(run_page(server["url"]))


# ----------------------------------------------------------------------------------------- no outside requests
def test_the_trap_catches_what_streamlit_would_send_out(tmp_path):
    """The trap is not blind: Streamlit's external-IP lookup (what a foreign origin's websocket used to
    trigger) arrives at a trap the same way, as a CONNECT through the proxy."""
    trap = OutboundTrap()
    try:
        env = {**os.environ, **trap.proxy_env()}
        subprocess.run([sys.executable, "-c", "from streamlit import net_util; net_util.get_external_ip()"],
                       env=env, cwd=tmp_path, capture_output=True, timeout=120)
        deadline = time.monotonic() + 10
        while not trap.arrivals and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any("checkip" in a for a in trap.arrivals), trap.arrivals
    finally:
        trap.close()


def test_onnxruntime_sends_no_usage_reports(tmp_path):
    """onnxruntime (export checks) posts telemetry to Microsoft some seconds after a model loads, on Linux too;
    the engine turns it off before onnxruntime starts (transfer_core/__init__.py)."""
    trap = OutboundTrap()
    code = ("import transfer_core, time, torch, onnxruntime as ort\n"
            "torch.onnx.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),), 'm.onnx', dynamo=False)\n"
            "s = ort.InferenceSession('m.onnx', providers=['CPUExecutionProvider'])\n"
            "s.run(None, {s.get_inputs()[0].name: torch.randn(1, 4).numpy()})\n"
            "time.sleep(25)\n")   # without the setting, the report leaves within 20 s
    try:
        env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
        out = subprocess.run([sys.executable, "-c", code], env={**env, **trap.proxy_env()}, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        time.sleep(1)
        assert trap.arrivals == [], trap.arrivals
    finally:
        trap.close()


def test_the_app_sends_nothing_out(server, trap):
    """Foreign-origin websocket attempts (each used to make the server fetch its external IP, on the event
    loop) and a run of every page, with the hub allowed: nothing reaches the trap, and the server keeps
    answering at once. Runs last in this file: the trap has seen every request the tests above caused."""
    for _ in range(5):
        assert not websocket_opens(server, "http://evil.example", cookie=True)
    started = time.perf_counter()
    assert get(server, "/_stcore/health")[0] == 200
    health = time.perf_counter() - started

    async def every_page():
        async with app_latency.Session(server["address"], 180) as s:
            return [await s.run(page) for page in PAGES]

    pages = run_async(every_page())
    assert all(p.status == app_latency.FINISHED_OK and p.elements for p in pages)
    time.sleep(1.0)   # a request made at the end of a page run has reached the trap by now
    print(f"\noutside requests that reached the trap: {len(trap.arrivals)}; health answered in {1000 * health:.0f} ms "
          "after 5 foreign-origin websocket attempts")
    assert trap.arrivals == [], trap.arrivals
