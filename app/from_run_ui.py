"""The Model page's "Start from one of your runs": a finished run's trained model as the starting point of the next
run (the model run:<id>), picked from a list, keeping the run's trained head or putting a new one on."""
from __future__ import annotations

import json

import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.models.runs import PREFIX
from transfer_core.run_files import LABELS_FILE, WEIGHTS_FILE

from .demo import describe_path
from .resources import get_store
from .results_ui import finished_runs
from .state import WIDGET_PREFIX, save_draft
from .text import md
from .ui import friendly, pick_run

HEADS = {"keep": "Keep its trained head", "new": "A new head"}
CHANGED = ("model.new_head", "model.image_size", "model.max_length", "model.head_hidden", "model.feature_layer")


def start_from_run(cfg: RunConfig, classes: tuple, modality: str | None, picker_key: str) -> None:
    """`classes`: the data's, to say whether the run's head fits; `picker_key`: the model picker's widget key,
    dropped so that it shows the new choice."""
    if cfg.model.new_head and not cfg.model.name.startswith(PREFIX):
        cfg.model.new_head = False   # (only a run's model has a trained head to keep or replace)
    store = get_store()
    runs = [r for r in finished_runs(store, need=WEIGHTS_FILE) if modality is None or r.modality == modality]
    current = cfg.model.name[len(PREFIX):] if cfg.model.name.startswith(PREFIX) else None
    with st.expander("Start from one of your runs", expanded=current is not None):
        st.caption("Transfer from your own earlier run: its trained layers are the starting point instead of the "
                   "pretrained model's (e.g. a model trained on many photos, fine-tuned again on a few new ones).")
        if not runs:
            st.caption("No run has a trained model yet" + (f" for {modality}s" if modality else "") + ".")
            return
        record = pick_run(store, runs, key="from_run_pick", default_id=current)
        with friendly("read the run"):
            labels = json.loads((store.run_dir(record.id) / LABELS_FILE).read_text(encoding="utf-8"))
            shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
            st.caption(md(f"{record.model}, trained on {describe_path(record.dataset)} for {len(labels)} classes: "
                          f"{shown}."))
            head = _head_choice(labels, classes)
            if st.button("Start from this run", key="use_from_run", icon=":material/start:"):
                _use_run(cfg, record, head == "new")
                # The picker and the model form show the new values: their widgets are seeded again from the draft.
                for widget in (picker_key, *(WIDGET_PREFIX + dotted for dotted in CHANGED)):
                    st.session_state.pop(widget, None)
                save_draft(cfg)
                st.rerun()


def _head_choice(labels: list[str], classes: tuple) -> str:
    if list(labels) != list(classes):
        st.caption("Your data has other classes than the run, so the model gets a new head for them; the layers "
                   "below it start from the run's weights.")
        return "new"
    return st.radio("The classification head", list(HEADS), format_func=HEADS.get, key="from_run_head",
                    horizontal=True, help="Your data has the run's classes. Keep: training continues from the run's "
                    "head. New: the layers below start from the run, the head from random weights.")


def _use_run(cfg: RunConfig, record, new_head: bool) -> None:
    """The draft's model becomes the run's, at the run's input size and with its head's shape."""
    model = RunConfig.of_saved_run(record.config).model
    cfg.model.name = PREFIX + record.id
    cfg.model.new_head = new_head
    cfg.model.image_size, cfg.model.max_length = model.image_size, model.max_length
    cfg.model.head_hidden = cfg.model.head_hidden if new_head else model.head_hidden
    cfg.model.feature_layer = ""   # (the run's own cut is part of its model)
