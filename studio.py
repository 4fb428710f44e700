"""Transfer Studio, the web app: a router over the pages in app_pages/, served by streamlit_app.py
(`streamlit run streamlit_app.py`), which puts the access gate in front of it.

The page scripts are not in a folder named `pages/`: Streamlit runs a deep link to such a folder's
script directly (bypassing this router) until the first visit to the root page of a fresh server.
"""
import streamlit as st

from app.access import session_allowed
from app.state import count_script_run
from app.ui import page_icon, show_error
from transfer_core.errors import StoreDamaged

st.set_page_config(page_title="Transfer Studio", page_icon=page_icon(), layout="wide")
if not session_allowed(st.context.cookies.to_dict()):
    from app.ui import show_locked
    show_locked()
    st.stop()
count_script_run()   # lets config widgets tell when the browser dropped them (app/state.py seed_widget)

page = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/1_data.py", title="Data", icon=":material/dataset:"),
    st.Page("app_pages/2_model.py", title="Model and layers", icon=":material/layers:"),
    st.Page("app_pages/3_train.py", title="Train", icon=":material/play_circle:"),
    st.Page("app_pages/4_results.py", title="Results", icon=":material/insights:"),
    st.Page("app_pages/5_try.py", title="Try and export", icon=":material/science:"),
    st.Page("app_pages/6_runs.py", title="Runs", icon=":material/history:"),
])
try:
    page.run()
except StoreDamaged as exc:   # every page reads the run store: offer the repair wherever it is found
    from app.runs_ui import offer_rebuild
    offer_rebuild(exc)
except Exception as exc:  # the last line of defence: a friendly message, never a traceback
    show_error(exc, f"show the {page.title} page")
