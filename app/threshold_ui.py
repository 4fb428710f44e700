"""The Results page's decision threshold of a two-class run: the precision-recall curve on the validation
data, a threshold or a recall to reach, and what it gives, saved with the run for Try, evaluate and export."""
from __future__ import annotations

import streamlit as st

from transfer_core.decision import DecisionRule
from transfer_core.runs import clear_threshold, run_classes, run_rule, set_threshold, validation_scores

from . import charts
from .text import md
from .ui import fmt_pct, friendly

FEW = 10   # validation examples of the class to find below which a chosen threshold is a rough guess
MODES = {"threshold": "A threshold", "recall": "A share of them to find (recall)"}


def decision_section(store, run_id: str) -> None:
    """Nothing for a run of more than two classes."""
    with friendly("read the run's classes"):
        classes = run_classes(store, run_id)
        if len(classes) != 2:
            return
        saved = run_rule(store, run_id)
        st.subheader("Decision threshold")
        st.caption("A two-class model says a class when its probability reaches a threshold, 0.5 unless you choose "
                   "another. When one class is what you look for (a defect, spam), a lower threshold finds more of "
                   "them at the cost of more false alarms. The curve shows every choice on the validation data.")
        if store.get_run(run_id).is_active:
            st.info("This run is training again: choose its threshold once it has finished, on its new weights.",
                    icon=":material/hourglass_top:")
            return
        _choose(store, run_id, classes, saved)


def _choose(store, run_id: str, classes: list[str], saved: DecisionRule | None) -> None:
    default = validation_scores(store, run_id).positive
    positive = st.selectbox("The class to find", classes, index=classes.index(default), key=f"decision_positive_{run_id}",
                            format_func=str)
    scores = validation_scores(store, run_id, positive)
    found = int(scores.is_positive.sum())
    if found < FEW:
        st.warning(f"The validation data holds only {found} example{'s' if found != 1 else ''} of '{md(positive)}': "
                   "the curve is rough and a threshold chosen on it may not hold on new data. A larger validation "
                   "share or a validation file of its own (Data page) makes it trustworthy.", icon=":material/warning:")
    own = saved if saved is not None and saved.positive == positive else None
    mode = st.radio("Choose by", list(MODES), format_func=MODES.get, horizontal=True, key=f"decision_mode_{run_id}",
                    index=1 if own is not None and own.target_recall is not None else 0)
    # (a rule saved from the command line may lie outside the sliders' ranges: shown at their nearest end)
    if mode == "recall":
        saved_recall = own.target_recall if own is not None and own.target_recall else 0.9
        target = st.slider(f"Find at least this share of '{md(positive)}'", 0.05, 1.0, step=0.01,
                           value=min(1.0, max(0.05, round(saved_recall, 2))), key=f"decision_recall_{run_id}_{positive}")
        threshold = scores.threshold_for_recall(target)
    else:
        target = None
        threshold = st.slider(f"Say '{md(positive)}' from this probability on", 0.01, 0.99, step=0.01,
                              value=min(0.99, max(0.01, round(own.threshold, 2))) if own is not None else 0.5,
                              key=f"decision_threshold_{run_id}_{positive}")
    chosen, at_half = scores.at(threshold), scores.at(0.5)
    cols = st.columns(4)
    cols[0].metric("Found (recall)", fmt_pct(chosen["recall"]), help=f"{chosen['found']} of "
                   f"{chosen['found'] + chosen['missed']} validation examples of '{md(positive)}'")
    cols[1].metric("Precision", fmt_pct(chosen["precision"]), help="Of the examples it calls "
                   f"'{md(positive)}', the share that are.")
    cols[2].metric("Missed", chosen["missed"], delta=chosen["missed"] - at_half["missed"], delta_color="inverse",
                   help="Against the threshold 0.5.")
    cols[3].metric("False alarms", chosen["false_alarms"], delta=chosen["false_alarms"] - at_half["false_alarms"],
                   delta_color="inverse", help="Against the threshold 0.5.")
    st.plotly_chart(charts.precision_recall(scores.curve(), positive, chosen, at_half), key="pr_curve",
                    config={"displayModeBar": False})
    _save_buttons(store, run_id, positive, threshold, target, saved)


def _save_buttons(store, run_id: str, positive: str, threshold: float, target: float | None,
                  saved: DecisionRule | None) -> None:
    if saved is not None:
        st.caption(f"In use: it says **{md(saved.positive)}** when its probability is at least {saved.threshold:.3f}"
                   + (f" (chosen to find {saved.target_recall:.0%} of them)" if saved.target_recall else "")
                   + ". Try, evaluate and the export bundle use it.")
    in_use = saved is not None and (saved.positive, saved.threshold, saved.target_recall) == (positive, threshold, target)
    left, right = st.columns(2)
    if left.button("In use" if in_use else f"Use the threshold {threshold:.3f}", key="decision_save", type="primary",
                   icon=":material/tune:", disabled=in_use):
        with friendly("save the threshold"):
            set_threshold(store, run_id, positive=positive, threshold=None if target else threshold, recall=target)
            st.rerun()
    if saved is not None and right.button("Back to the most probable class (0.5)", key="decision_clear",
                                          icon=":material/restart_alt:"):
        with friendly("remove the threshold"):
            clear_threshold(store, run_id)
            st.rerun()
