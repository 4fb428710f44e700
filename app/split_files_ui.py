"""The Data page's "Separate validation and test files": labelled files of their own for measuring the model,
instead of shares split off the training data (data.val_path, data.test_path)."""
from __future__ import annotations

import streamlit as st

from transfer_core.config import RunConfig

from . import data_ui
from .demo import describe_path
from .state import WIDGET_PREFIX, save_draft
from .text import md

SLOTS = {"data.val_path": ("Validation file", "checks the model after every epoch and picks the best epoch"),
         "data.test_path": ("Test file", "measured once, at the end, with the model the run gives you")}


def split_files_section(cfg: RunConfig, modality: str) -> None:
    given = {slot: cfg.get(slot) for slot in SLOTS}
    with st.expander("Separate validation and test files (optional)", expanded=any(given.values())):
        st.caption("Examples kept apart on purpose (another camera, another month, another annotator) measure the "
                   "model more honestly than a random share of the training data. Same format as the training data; "
                   "every label must be a training class.")
        kind, types = ("zip", ["zip"]) if modality == "image" else ("csv", data_ui.TEXT_TYPES)
        for slot, (label, role) in SLOTS.items():
            uploaded = st.file_uploader(f"{label}: {role}", type=types, key=_uploader_key(slot))
            if uploaded is not None and cfg.get(slot) != (path := str(data_ui.store_upload(uploaded, kind))):
                cfg.set(slot, path)
                if slot == "data.test_path":
                    cfg.data.test_fraction = 0.0   # the file is the test set now
                    st.session_state.pop(WIDGET_PREFIX + "data.test_fraction", None)
                save_draft(cfg)
                st.rerun()   # the counts and the report above are of the new split
            if cfg.get(slot):
                st.caption(f"{label}: {md(describe_path(cfg.get(slot)))}.")
        if any(cfg.get(slot) for slot in SLOTS) and st.button("Use shares of the training data again",
                                                                key="split_files_clear", icon=":material/close:"):
            for slot in SLOTS:
                cfg.set(slot, "")
                st.session_state.pop(_uploader_key(slot), None)   # or the file still there would be taken again
            save_draft(cfg)
            st.rerun()


def _uploader_key(slot: str) -> str:
    return f"upload_{slot.split('.')[1]}"
