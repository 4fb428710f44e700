"""The new-domain step (Data page) and the adaptation method (Model page): domain adaptation without code.

The draft's adapt.target is unlabelled data from the domain the model should work on; adapt.target_val,
optional, is labelled data from it that every epoch is scored on (the live chart's "new domain" line).
"""
from __future__ import annotations

import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.data.unlabelled import load_unlabelled
from transfer_core.errors import TransferError

from . import data_ui
from .demo import describe_path
from .forms import render_field
from .resources import allowed_roots
from .state import save_draft
from .text import md

EXPLAIN = ("A model trained on one kind of data often fails on another: photos from another camera, scans "
           "instead of photos, texts from another source. **Domain adaptation** trains on your labelled data "
           "together with unlabelled examples of the new kind, so that the features the model learns fit both. "
           "Add labelled examples of the new kind too to see how well it works there.")
METHODS = {"none": "None: train on the labelled data only (the baseline to beat)",
           "dann": "DANN: learn features a domain classifier cannot tell apart",
           "coral": "CORAL: align the feature statistics of both domains"}
DIGITS_TARGET = "demo:digits-shifted"


def new_domain_section(cfg: RunConfig, modality: str) -> None:
    """Data page: upload unlabelled (and optionally labelled) data of the new domain."""
    with st.expander("New domain (optional): make the model work on another kind of data",
                     expanded=bool(cfg.adapt.target or cfg.adapt.target_val)):
        st.markdown(EXPLAIN)
        if cfg.data.path.startswith("demo:digits") and not cfg.data.path.startswith(DIGITS_TARGET):
            if st.button("Use the shifted digits as the new domain", key="domain_digits", icon=":material/swap_horiz:"):
                cfg.adapt.target = cfg.adapt.target_val = DIGITS_TARGET
        kind = ("zip", "a .zip of images (class folders are not needed)") if modality == "image" else \
            ("csv", "a CSV/TSV/JSONL file with a text column")
        types = ["zip"] if modality == "image" else ["csv", "tsv", "jsonl", "txt"]
        unlabelled = st.file_uploader(f"Unlabelled data of the new domain: {kind[1]}", type=types, key="domain_target")
        if unlabelled is not None:
            cfg.adapt.target = str(data_ui.store_upload(unlabelled, kind[0]))
        labelled = st.file_uploader("Labelled data of the new domain, to measure (optional; never trained on)",
                                    type=types, key="domain_target_val")
        if labelled is not None:
            cfg.adapt.target_val = str(data_ui.store_upload(labelled, kind[0]))
        _show_chosen(cfg, modality)


def _show_chosen(cfg: RunConfig, modality: str) -> None:
    if not (cfg.adapt.target or cfg.adapt.target_val):
        st.caption("No new domain: the model trains for your labelled data's domain only.")
        return
    if cfg.adapt.target:
        try:
            found = load_unlabelled(cfg.adapt.target, modality=modality, text_column=cfg.data.text_column,
                                    image_column=cfg.data.image_column, allowed_roots=allowed_roots())
            st.success(f"New domain: {md(describe_path(cfg.adapt.target))}, {len(found):,} unlabelled {modality}s.",
                       icon=":material/check:")
        except TransferError as e:
            st.error(f"The new domain's data cannot be used: {md(str(e))}", icon=":material/block:")
    if cfg.adapt.target_val:
        st.caption(f"Measured each epoch on {md(describe_path(cfg.adapt.target_val))} (labelled).")
    if st.button("Remove the new domain", key="domain_clear", icon=":material/close:"):
        cfg.adapt.target = cfg.adapt.target_val = ""
        cfg.adapt.method = "none"
        save_draft(cfg)
        st.rerun()


def method_choice(cfg: RunConfig) -> None:
    """Model page: how to adapt, when the draft has a new domain."""
    if not cfg.adapt.target:
        if cfg.adapt.method != "none":
            cfg.adapt.method = "none"    # no new domain (any more): nothing to adapt to
        return
    st.subheader("Adapting to the new domain")
    st.caption(f"Unlabelled examples from {md(describe_path(cfg.adapt.target))} join every training step. "
               "DANN and CORAL change the features, so some layers below the head must train "
               "(every preset but feature extraction).")
    problems = render_field(cfg, "adapt.method") + render_field(cfg, "adapt.weight")
    for problem in problems + [p for p in cfg.validate() if p.startswith("adapt.")]:
        st.error(md(problem))
    st.caption(METHODS.get(cfg.adapt.method, ""))
