"""The Results page's "Evaluate on other labelled data": a finished run's model scored on data uploaded here
(new photos, next month's texts), with nothing trained."""
from __future__ import annotations

import streamlit as st

from transfer_core.csvsafe import csv_bytes
from transfer_core.run_files import DECISION_FILE, WEIGHTS_FILE
from transfer_core.runs import evaluate_run

from . import charts, data_ui
from .resources import allowed_roots, get_store
from .results_ui import per_class_table
from .ui import fmt_int, fmt_pct, friendly

KINDS = {"image": ("zip", ["zip"], "a .zip with one folder per class, as the training data"),
         "text": ("csv", data_ui.TEXT_TYPES, "a CSV/TSV/JSONL file with the training data's text and label columns")}


@st.cache_data(show_spinner=False, max_entries=8)
def _evaluate(run_id: str, path: str, weights_mtime: float, decision_mtime: float) -> dict:
    # (the times make a retrained run or a new decision threshold score the data again)
    return evaluate_run(get_store(), run_id, path, allowed_roots=allowed_roots())


def _mtime(path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def evaluate_elsewhere(store, record) -> None:
    kind, types, what = KINDS.get(record.modality, KINDS["image"])
    with st.expander("Evaluate on other labelled data"):
        st.caption(f"Upload labelled data the model has never seen: {what}. The run's model predicts every example "
                   "and is scored against the labels; nothing is trained and the run does not change.")
        uploaded = st.file_uploader("Labelled data to evaluate on", type=types, key=f"evaluate_upload_{record.id}")
        if uploaded is None:
            return
        with friendly("evaluate the run on this data"), st.spinner("Predicting every example..."):
            path = data_ui.store_upload(uploaded, kind)
            run_dir = store.run_dir(record.id)
            metrics = _evaluate(record.id, str(path), _mtime(run_dir / WEIGHTS_FILE), _mtime(run_dir / DECISION_FILE))
            _show(record, uploaded.name, metrics)


def _show(record, name: str, metrics: dict) -> None:
    cols = st.columns(3)
    cols[0].metric("Accuracy", fmt_pct(metrics.get("accuracy")))
    cols[1].metric("Macro F1", fmt_pct(metrics.get("macro_f1")))
    cols[2].metric("Examples", fmt_int(metrics.get("num_samples")))
    if metrics.get("decision"):
        st.caption(f"Decided with the run's decision threshold ({metrics['decision']['threshold']:.3f}).")
    st.plotly_chart(charts.confusion_matrix(metrics["confusion_matrix"], metrics["classes"],
                                            title=f"Confusion matrix ({name})"),
                    key="evaluate_confusion", config={"displayModeBar": False})
    table = per_class_table(metrics)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="percent") for c in ("precision", "recall", "F1")})
    st.download_button("Download these per-class scores (CSV)", csv_bytes(table), mime="text/csv",
                       file_name=f"{record.id}-evaluated-per-class.csv", key="evaluate_download",
                       icon=":material/download:")
