"""Who may use the app: a launch token (as Jupyter does) and only the app's own pages on its websocket.

The server refuses every request until the browser shows the token once: `http://127.0.0.1:PORT/?token=...`,
printed when the app starts. The token then lives in an HttpOnly cookie, so page changes and reloads in
that browser keep working and page scripts cannot read it. The websocket (the channel that runs pages)
also needs the cookie, and it must come from a page of this very server (scheme, host and port): pages
served by other programs on this machine are refused, whatever cookie their browser sends.

`TRANSFER_STUDIO_TOKEN` chooses the token (scripts and tests); otherwise a random one is made at each
launch. `TRANSFER_STUDIO_NO_TOKEN=1` turns the token off, for an app put behind your own authentication;
the Host and websocket-origin checks stay on.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

TOKEN_ENV = "TRANSFER_STUDIO_TOKEN"
NO_TOKEN_ENV = "TRANSFER_STUDIO_NO_TOKEN"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]{16,256}")
# Streamlit's liveness probe: answers "ok" and nothing else, so monitors need no token.
_OPEN_PATHS = ("/_stcore/health",)
# On every HTTP answer: only pages of this very origin may frame the app (a page on another port of
# 127.0.0.1 counts as the same site, so the cookie alone would let it frame the signed-in app and trick
# clicks), and only they may load its responses (no probing with <img> or <script> from another port).
_FRAME_AND_LOAD_HEADERS = [(b"x-frame-options", b"SAMEORIGIN"),
                           (b"content-security-policy", b"frame-ancestors 'self'"),
                           (b"cross-origin-resource-policy", b"same-origin")]


class AccessSetupError(ValueError):
    """The token settings cannot be used; the message names the variable and the fix."""


@dataclass(frozen=True)
class Access:
    token: str | None   # None: the user opted out (the app sits behind their own authentication)

    @property
    def cookie_name(self) -> str:
        # One name per token: two apps on different ports of 127.0.0.1 share cookies, and must not
        # overwrite each other's.
        return "transfer_studio_" + hashlib.sha256((self.token or "").encode()).hexdigest()[:12]

    @property
    def cookie_value(self) -> str:
        # Derived, not the token itself: a cookie seen in a log does not give out the launch link.
        return hmac.new((self.token or "").encode(), b"transfer-studio-session", hashlib.sha256).hexdigest()

    def token_ok(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def cookie_ok(self, cookies: dict[str, str]) -> bool:
        if self.token is None:
            return True
        return hmac.compare_digest(cookies.get(self.cookie_name, "").encode(), self.cookie_value.encode())

    def url(self, base: str) -> str:
        """The address to open: `base` (e.g. http://127.0.0.1:8501) with the token when there is one."""
        return f"{base}/?{urlencode({'token': self.token})}" if self.token else f"{base}/"


def access_from_env(environ=os.environ) -> Access:
    """The token from `TRANSFER_STUDIO_TOKEN`, none with `TRANSFER_STUDIO_NO_TOKEN=1`, else a new random one."""
    opt_out = environ.get(NO_TOKEN_ENV, "").strip().lower()
    chosen = environ.get(TOKEN_ENV, "")
    if opt_out not in ("", "0", "1", "true", "yes", "false", "no"):
        raise AccessSetupError(f"{NO_TOKEN_ENV}={opt_out[:40]!r} is not understood; set it to 1 to run without a token, "
                               "or unset it")
    if opt_out in ("1", "true", "yes"):
        if chosen:
            raise AccessSetupError(f"both {TOKEN_ENV} and {NO_TOKEN_ENV} are set; unset one of them")
        return Access(None)
    if not chosen:
        return Access(secrets.token_urlsafe(32))
    if not _TOKEN_CHARS.fullmatch(chosen):
        raise AccessSetupError(f"{TOKEN_ENV} must be 16 to 256 letters, digits or . _ ~ -; choose a longer or plainer "
                               "token, or unset it to get a random one")
    return Access(chosen)


# ---------------------------------------------------------------------------------------- the process's access
_current: Access | None = None


def install(access: Access) -> None:
    """Called once by the server entry (streamlit_app.py); page scripts then check sessions against it."""
    global _current
    _current = access


def current() -> Access | None:
    """The server's access settings; None when the page scripts run without the gate (e.g. `streamlit run
    app/router.py`, or Streamlit's AppTest)."""
    return _current


def session_allowed(cookies: dict[str, str], environ=os.environ) -> bool:
    """Whether a page may run for this browser session: the server checked the websocket already, and this
    second check keeps the pages closed when they are served without the gate (then only the explicit
    opt-out opens them)."""
    if _current is None:
        return environ.get(NO_TOKEN_ENV, "").strip().lower() in ("1", "true", "yes")
    return _current.cookie_ok(cookies)


# ---------------------------------------------------------------------------------------- the ASGI middleware
def host_allowed(host: str) -> bool:
    """The Host header names one of `server.allowedHosts` (localhost and 127.0.0.1 here), on any port: the
    server binds the loopback, and this refuses DNS rebinding. Streamlit checks only its websocket against
    the list; the gate checks every request with Streamlit's own rule."""
    from streamlit.web.server.starlette.starlette_websocket import is_host_allowed

    return is_host_allowed(host)


def origin_allowed(origin: str | None, host: str, scheme: str = "http") -> bool:
    """A page of this server only: the same scheme, host and port, exactly as a browser writes its Origin.
    A browser always sends Origin on websockets; a client without one (a script) still needs the cookie."""
    return origin is None or origin == f"{scheme}://{host}"


class AccessGate:
    """ASGI middleware in front of Streamlit's own routes (see `access_middleware`)."""

    def __init__(self, app, access: Access):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        from starlette.requests import HTTPConnection

        conn = HTTPConnection(scope)
        host = conn.headers.get("host", "")
        if scope["type"] == "websocket":
            # Behind a proxy that ends TLS, the page is https although the socket here is not; a browser
            # page cannot set this header on a websocket, so it cannot pose as another scheme with it.
            secure = scope.get("scheme") == "wss" or conn.headers.get("x-forwarded-proto") == "https"
            page_scheme = "https" if secure else "http"
            if (host_allowed(host) and origin_allowed(conn.headers.get("origin"), host, page_scheme)
                    and self.access.cookie_ok(dict(conn.cookies))):
                return await self.app(scope, receive, send)
            # Closing before accepting answers the handshake with 403; Streamlit's own origin check (which
            # looks up the machine's external IP for a foreign origin) never runs.
            return await send({"type": "websocket.close", "code": 1008})
        send = _with_headers(send, _FRAME_AND_LOAD_HEADERS)
        if not host_allowed(host):
            return await _page(403, _WRONG_HOST)(scope, receive, send)
        path = scope.get("path", "")
        token = conn.query_params.get("token")
        if token is not None and self.access.token is not None:
            if not self.access.token_ok(token):
                return await _page(403, _WRONG_TOKEN)(scope, receive, send)
            return await self._sign_in(conn)(scope, receive, send)
        if path in _OPEN_PATHS or self.access.cookie_ok(dict(conn.cookies)):
            return await self.app(scope, receive, send)
        return await _page(403, _NO_TOKEN)(scope, receive, send)

    def _sign_in(self, conn):
        """Keep the token in a cookie and reload the same address without it (out of the address bar and
        history)."""
        from starlette.responses import RedirectResponse

        rest = [(k, v) for k, v in conn.query_params.multi_items() if k != "token"]
        # One leading slash: "//evil.example/" would send the browser to another site.
        target = "/" + conn.url.path.lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(self.access.cookie_name, self.access.cookie_value, httponly=True, samesite="lax",
                            path="/")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def _with_headers(send, headers: list[tuple[bytes, bytes]]):
    """`send` that adds `headers` to the start of every HTTP response."""
    async def sending(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)
    return sending


def access_middleware(access: Access) -> list:
    """The middleware list for `st.App(..., middleware=...)`."""
    from starlette.middleware import Middleware

    return [Middleware(AccessGate, access=access)]


# ---------------------------------------------------------------------------------------- refusal pages
_NO_TOKEN = ("Transfer Studio needs its access token",
             "Open the address printed in the terminal where the app was started; it ends in "
             "<code>/?token=&hellip;</code>. If you chose the token with <code>TRANSFER_STUDIO_TOKEN</code>, add "
             "<code>?token=</code> and that token to this address.")
_WRONG_TOKEN = ("That is not this app's access token",
                "The token changes each time the app starts (unless <code>TRANSFER_STUDIO_TOKEN</code> sets it). Open "
                "the address printed in the terminal where the app was started this time.")
_WRONG_HOST = ("Transfer Studio answers on this machine only",
               "Open it as <code>http://127.0.0.1:PORT/</code> or <code>http://localhost:PORT/</code>.")


def _page(status: int, message: tuple[str, str]):
    from starlette.responses import HTMLResponse

    title, body = message
    html = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
            "color:#222;line-height:1.5}code{background:#f1f3f6;padding:0 .2em}</style></head>"
            f"<body><h1>{title}</h1><p>{body}</p></body></html>")
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
