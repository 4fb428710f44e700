"""Transfer Studio, the web app: a router over the pages in pages/, served by streamlit_app.py
(`streamlit run streamlit_app.py`), which puts the access gate in front of it.

This script is Streamlit's main script, and it sits in app/ rather than beside pages/: with a pages/
folder next to the main script, Streamlit would also run those scripts on its own, so a deep link on a
fresh server could run a page without this router (app/nav.py).
"""
import streamlit as st

from app.access import session_allowed
from app.nav import page_file
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
    st.Page(page_file("home"), title="Home", icon=":material/home:", default=True),
    st.Page(page_file("1_data"), title="Data", icon=":material/dataset:"),
    st.Page(page_file("2_model"), title="Model and layers", icon=":material/layers:"),
    st.Page(page_file("3_train"), title="Train", icon=":material/play_circle:"),
    st.Page(page_file("4_results"), title="Results", icon=":material/insights:"),
    st.Page(page_file("5_try"), title="Try and export", icon=":material/science:"),
    st.Page(page_file("6_runs"), title="Runs", icon=":material/history:"),
])
try:
    page.run()
except StoreDamaged as exc:   # every page reads the run store: offer the repair wherever it is found
    from app.runs_ui import offer_rebuild
    offer_rebuild(exc)
except Exception as exc:  # the last line of defence: a friendly message, never a traceback
    show_error(exc, f"show the {page.title} page")
