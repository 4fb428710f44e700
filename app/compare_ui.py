"""Comparing runs: "Compare strategies" on the Train page queues the four strategies of transfer_core/strategies.py
as normal runs; the Runs page's Compare overlays the curves of the runs chosen and puts their results, the
settings in which they differ and their confusion matrices side by side."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from transfer_core.config import RunConfig, iter_fields
from transfer_core.run_files import METRICS_FILE
from transfer_core.strategies import STRATEGIES, strategy_configs

from . import charts, runs_ui
from .forms import label_for
from .nav import page_file
from .resources import allowed_roots, get_jobs, runs_dir
from .results_ui import run_metrics
from .state import set_current_run
from .ui import fmt_int, friendly, run_label

GROUP_KEY = "compared_runs"     # the runs "Compare strategies" queued last, compared first on the Runs page
MATRICES_AT_MOST = 4


def compare_strategies_box(cfg: RunConfig, *, blocked: bool) -> None:
    """`blocked`: the settings or the data cannot be trained (Start is off for the same reason)."""
    with st.expander("Compare strategies: " + ", ".join(s.title.lower() for s in STRATEGIES)):
        st.caption("Trains these settings four ways on the same split and seed, one run after the other: the head "
                   "alone, the top layer groups, every layer, and the same network from random weights (no transfer). "
                   "The differences between them are what the pretrained layers bring. They appear side by side on "
                   "the Runs page.")
        if st.button("Train all four", key="compare_strategies", icon=":material/compare_arrows:", disabled=blocked):
            with friendly("queue the four runs"):
                stamp = time.strftime("%H:%M")
                ids = [get_jobs().submit(config, name=f"{strategy.title} · compared {stamp}")
                       for strategy, config in strategy_configs(cfg, runs_dir(), allowed_roots())]
                st.session_state[GROUP_KEY] = ids
                set_current_run(ids[0])
                st.rerun()
        if st.session_state.get(GROUP_KEY):
            st.page_link(page_file("6_runs"), label="See the last comparison on the Runs page",
                         icon=":material/compare_arrows:")


def compare_section(store, runs: list, anchor_id: str | None) -> None:
    by_id = {r.id: r for r in runs}
    group = [i for i in st.session_state.get(GROUP_KEY, []) if i in by_id]
    default = group or runs_ui.default_comparison(runs, anchor_id)
    chosen = st.multiselect("Runs to compare", list(by_id), default=default, max_selections=10,
                            format_func=lambda i: run_label(by_id[i]), key="compare_runs",
                            help="At first the last strategy comparison, else the runs on the same data as the latest "
                                 "one: accuracies on other data (or of image against text models) are not comparable.")
    if not chosen:
        return
    metric = st.radio("Metric", list(runs_ui.COMPARE_METRICS), horizontal=True, key="compare_metric",
                      format_func=runs_ui.COMPARE_METRICS.get)
    frame = store.metrics_for_runs(chosen, "epoch")
    st.plotly_chart(charts.compare_curves(frame, metric, {i: by_id[i].name for i in chosen},
                                          runs_ui.COMPARE_METRICS[metric]), key="compare_chart",
                    config={"displayModeBar": False})
    records = [by_id[i] for i in chosen]
    table = runs_ui.comparison_table(records)
    at = table.columns.get_loc("epochs")
    table.insert(at, "training time", [runs_ui.training_time(r) for r in records])
    table.insert(at, "trainable parameters", [_trainable(store, r) for r in records])
    st.dataframe(table, hide_index=True, width="stretch", column_config=runs_ui.comparison_table_config())
    differing = differing_settings(records)
    if not differing.empty:
        st.markdown("**Settings that differ**")
        st.dataframe(differing, hide_index=True, width="stretch")
    _matrices(store, records[:MATRICES_AT_MOST])


def differing_settings(records: list) -> pd.DataFrame:
    """One row per run, one column per setting whose value is not the same in every run (as the forms name it)."""
    readable = []
    for record in records:
        try:
            readable.append((record, RunConfig.of_saved_run(record.config)))
        except Exception:   # a config from a newer version or edited by hand: compared on the rest
            continue
    records, configs = [r for r, _ in readable], [c for _, c in readable]
    columns = {}
    for dotted, _, _ in iter_fields(RunConfig()):
        values = [c.get(dotted) for c in configs]
        if len({repr(v) for v in values}) > 1:
            columns[label_for(dotted)] = [_cell(v) for v in values]
    if not columns:
        return pd.DataFrame()
    return pd.DataFrame({"name": [r.name for r in records], **columns})


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("_", " ") if value != "" else "-"


def _trainable(store, record) -> str:
    """From metrics.json: none while a run trains, or when it failed before the end."""
    if not (store.run_dir(record.id) / METRICS_FILE).is_file():
        return "-"
    try:
        parameters = run_metrics(store.run_dir(record.id)).get("parameters") or {}
    except (OSError, ValueError):
        return "-"
    trainable, total = parameters.get("trainable"), parameters.get("total")
    return f"{fmt_int(trainable)} of {fmt_int(total)}" if trainable is not None and total else "-"


def _matrices(store, records: list) -> None:
    shown = [(r, run_metrics(store.run_dir(r.id)).get("val", {})) for r in records
             if (store.run_dir(r.id) / METRICS_FILE).exists()]
    shown = [(r, val) for r, val in shown if val.get("confusion_matrix")]
    if not shown:
        return
    st.markdown("**Confusion matrices (validation, as shares of each true class)**")
    for column, (record, val) in zip(st.columns(len(shown)), shown):
        with column:
            st.plotly_chart(charts.confusion_matrix(val["confusion_matrix"], val["classes"], normalise=True,
                                                    title=record.name),
                            key=f"compare_matrix_{record.id}", config={"displayModeBar": False})
