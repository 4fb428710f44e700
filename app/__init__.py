"""UI helpers for the Streamlit pages: shared resources, session state, forms, figures.

Nothing here trains or evaluates anything; that is `transfer_core`'s job. The pages
in `pages/` draw widgets and call these helpers and the engine.
"""
