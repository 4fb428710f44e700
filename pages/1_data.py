"""Data: pick or upload a labelled data set, see what is in it and what may go wrong."""
import streamlit as st

from app import data_sources, data_ui, domain_ui, split_files_ui
from app.demo import describe_path
from app.forms import render_settings
from app.nav import page_file
from app.state import draft, has_data, save_draft
from app.text import md
from app.ui import fmt_int, friendly

cfg = draft()
st.title("Data")
st.caption("Labelled examples of each class you want the model to tell apart. More and more varied examples "
           "help most; 20 per class is a start, 100 or more is better.")

if "data_source" not in st.session_state:
    st.session_state["data_source"] = data_sources.default_source(cfg)
source = st.radio("Where is your data?", data_sources.SOURCES, horizontal=True, key="data_source")
chosen = False
with friendly("use this data"):
    chosen = data_sources.choose(source, cfg)
save_draft(cfg)

if not chosen:
    # The draft keeps its earlier data until this source gives some: say so, rather than a report on it.
    still = f" Until then, new runs use {md(describe_path(cfg.data.path))}." if has_data(cfg) else ""
    st.info(f"{data_sources.WAITING[source]}{still}")
    st.stop()

st.subheader(f"Using: {md(describe_path(cfg.data.path))}")
st.markdown("**Split settings**: the share of examples held out to measure the model on data it never trains on.")
problems = render_settings(cfg, ("data",), skip=("data.path", "data.val_path", "data.test_path", "data.text_column", "data.label_column",
                                                 "data.image_column"), columns=3, advanced_label="More split settings")
for problem in problems + [p for p in cfg.validate() if p.startswith(("data.val_fraction", "data.test_path"))]:
    st.error(md(problem))
save_draft(cfg)

with friendly("read the data"):
    found = data_ui.inspect(cfg)
    cols = st.columns(5)
    cols[0].metric("Examples", fmt_int(len(found.dataset)))
    cols[1].metric("Classes", len(found.classes))
    if found.splits is not None:
        cols[2].metric("Training", fmt_int(len(found.splits.train)))
        cols[3].metric("Validation", fmt_int(len(found.splits.val)))
        cols[4].metric("Test", fmt_int(len(found.splits.test)) if found.splits.test is not None else "0")
    data_ui.show_counts(found.report)

    st.subheader("Data report")
    if found.blocking:
        st.error(f"This data cannot be trained on yet: {md(found.blocking)}", icon=":material/block:")
    data_ui.show_report(found.report)

    st.subheader("Examples")
    data_ui.show_samples(found.dataset)
    split_files_ui.split_files_section(cfg, found.dataset.modality)
    domain_ui.new_domain_section(cfg, found.dataset.modality)
    save_draft(cfg)
    st.page_link(page_file("2_model"), label="Next: choose the model and its layers", icon=":material/arrow_forward:")
