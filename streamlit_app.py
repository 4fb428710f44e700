"""Transfer Studio's server: `streamlit run streamlit_app.py` serves the pages of app/router.py behind the access gate.

Streamlit runs this file as an ASGI app (it finds `app` below): the gate (app/access.py) sits in front of
Streamlit's own routes, so no page, upload, image or websocket is served before the browser has shown the
launch token, and only the app's own pages may open its websocket. The address with the token is printed
when the server starts.
"""
import sys
from contextlib import asynccontextmanager

import streamlit as st

from app.access import AccessSetupError, access_from_env, access_middleware, install
from app.launch import announce

try:
    ACCESS = access_from_env()
except AccessSetupError as exc:
    sys.exit(f"Transfer Studio cannot start: {exc}")
install(ACCESS)


@asynccontextmanager
async def _announce_address(_app):
    announce(ACCESS)   # the port is final once the server starts
    yield


app = st.App("app/router.py", middleware=access_middleware(ACCESS), lifespan=_announce_address)
