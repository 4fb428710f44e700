"""What the server says when it starts: the address to open, with its access token."""
from __future__ import annotations

from app.access import NO_TOKEN_ENV, Access


def app_address() -> str:
    """http://HOST:PORT of the running server, HOST as the browser should type it (never 0.0.0.0)."""
    from streamlit import config
    from streamlit.web.server.server_util import get_url

    host = config.get_option("server.address") or "localhost"
    return get_url("localhost" if host in ("0.0.0.0", "::") else host)


def announce(access: Access) -> str:
    """Print the address to open (and open it in a browser when the server is not headless)."""
    from streamlit import cli_util, config

    url = access.url(app_address())
    print("", flush=True)
    print(f"  Open Transfer Studio at: {url}", flush=True)
    if access.token:
        print("  (The token keeps other programs and users of this machine out; keep the address to yourself.)",
              flush=True)
    else:
        print(f"  {NO_TOKEN_ENV} is set: anyone who can reach this address can use the app.", flush=True)
    print("", flush=True)
    if not config.get_option("server.headless"):
        cli_util.open_browser(url)
    return url
