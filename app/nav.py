"""Where the page scripts are: the top-level `pages/` folder.

The router (app/router.py) is Streamlit's main script, and it lives here rather than beside `pages/`:
with a `pages/` folder next to the main script, Streamlit would also run those scripts on its own
(its older multipage mode), so a deep link to a page could run it without the router. Links and
switches between pages name the files through `page_file`.
"""
from __future__ import annotations

from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parents[1] / "pages"


def page_file(name: str) -> Path:
    """The script of page `name` (e.g. "3_train"), as st.Page, st.page_link and st.switch_page take it."""
    return PAGES_DIR / f"{name}.py"
