"""'Which layer transfers best?' on the Model page: the layer probe (transfer_core/probe.py) on the draft's
data and model, drawn as validation accuracy per layer group."""
from __future__ import annotations

import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.errors import TransferError
from transfer_core.probe import ProbeResult, probe

from . import charts
from .nav import page_file
from .resources import allowed_roots, runs_dir
from .state import WIDGET_PREFIX, draft, save_draft
from .text import md

RESULTS = "probe_results"   # session state: {what was probed: the result}
EXPLAIN = ("Each layer group of a pretrained network turns its input into features: low groups detect "
           "edges, colours or word pieces, high groups whole concepts of the task it was pretrained on. "
           "This measures how well a linear head on each group's features tells your classes apart: every "
           "example goes through the frozen network once, then one small classifier per group trains. On data "
           "close to the pretraining data the last group usually wins; on data far from it a middle group often "
           "does, and training the groups above it helps less.")


def _probed_key(cfg: RunConfig) -> str:
    """What a probe's result depends on: the model, its inputs, the data and its split."""
    parts = (cfg.model.name, cfg.model.pretrained, cfg.model.image_size, cfg.model.max_length, cfg.model.pooling,
             cfg.data.path, cfg.data.val_path, cfg.data.test_path, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.max_per_class,
             cfg.data.dedupe, cfg.data.merge_case, cfg.train.seed)
    return repr(parts)


def probe_section(cfg: RunConfig) -> None:
    results = st.session_state.setdefault(RESULTS, {})
    key = _probed_key(cfg)
    with st.expander("Which layer transfers best?", expanded=key in results):
        st.markdown(EXPLAIN)
        if st.button("Measure each layer", key="probe_start", icon=":material/insights:"):
            with st.spinner("Passing every example through the frozen network once, then training a head per layer…"):
                try:
                    results[key] = probe(cfg.copy(), cache_root=runs_dir(), allowed_roots=allowed_roots())
                except TransferError as e:
                    st.error(f"The probe could not run: {md(str(e))}", icon=":material/block:")
        result: ProbeResult | None = results.get(key)
        if result is None:
            st.caption("The first time, this takes about as long as the first epoch of a head-only run; "
                       "the features are kept, so measuring again is quick.")
            return
        data = result.to_dict()
        st.plotly_chart(charts.layer_probe(data["layers"], result.best_layer), key="probe_chart",
                        config={"displayModeBar": False})
        best = next(row for row in data["layers"] if row["layer"] == result.best_layer)
        last = data["layers"][-1]
        verdict = ("the last group, whose features the head reads by default, is the best" if best is last else
                   f"it beats the last group, `{last['layer']}` ({last['val_accuracy']:.1%}): your data is far from "
                   f"what {cfg.model.name} was pretrained on, and the groups above `{best['layer']}` specialise in that")
        st.markdown(f"Best: **`{best['layer']}`**, {best['val_accuracy']:.1%} validation accuracy with a linear head; "
                    f"{verdict}.")
        chosen = "" if best is last else best["layer"]
        if cfg.model.feature_layer == chosen:
            st.caption(f"The head reads `{best['layer']}` (The head reads, above the layer map).")
        elif st.button(f"Train from {best['layer']}", key="probe_use_best", icon=":material/arrow_forward:",
                       on_click=_read_from, args=(chosen,),
                       help="The head reads this group (the groups above it are removed); then on to the Train page."):
            st.switch_page(page_file("3_train"))


def _read_from(layer: str) -> None:
    cfg = draft()
    cfg.model.feature_layer = layer
    st.session_state[WIDGET_PREFIX + "model.feature_layer"] = layer
    save_draft(cfg)
