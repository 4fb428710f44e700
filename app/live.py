"""The live view of one run: status, progress, controls and curves, redrawn by a fragment that polls
the run store. Nothing here talks to the training thread except the JobManager's control calls."""
from __future__ import annotations

import streamlit as st

from transfer_core.events import Notice, RunStatus
from transfer_core.summary import best_note

from . import charts, coach_ui
from .forms import label_for
from .nav import page_file
from .progress import last_started, live_snapshot, training_seconds
from .resources import get_jobs, get_store
from .text import md
from .ui import fmt_duration, fmt_pct, friendly, sentence, show_error, status_badge

REFRESH_SECONDS = 1.0       # how often the live view polls the store while a run is active
MAX_STEP_POINTS = 600       # per-step points drawn (evenly thinned for long runs)


def live_view(run_id: str) -> None:
    """Draw the run's live view; while it is active, it refreshes itself every REFRESH_SECONDS."""
    record = get_store().get_run(run_id)
    active = record.is_active
    st.fragment(run_every=REFRESH_SECONDS if active else None)(_fragment)(run_id, active)


def _fragment(run_id: str, was_active: bool) -> None:
    try:
        _draw(run_id, was_active)
    except Exception as exc:  # fragment reruns are outside the router's guard
        show_error(exc, "show the run")


def _draw(run_id: str, was_active: bool) -> None:
    store, jobs = get_store(), get_jobs()
    # queue_position counts the run training on the device among those ahead (0: this one is being set up)
    record, events, steps, epochs, prog = live_snapshot(store, run_id, MAX_STEP_POINTS, jobs.queue_position(run_id))
    if was_active and not record.is_active:
        st.rerun()   # it just ended: redraw the page once, with polling off

    head, badge = st.columns([5, 1])
    head.markdown(f"**{md(record.name)}** · `{record.id}`")     # ids are made by the store: letters, digits, dashes
    with badge:
        status_badge(record.status)
    st.progress(prog.fraction, text=prog.text())
    _controls(record, jobs)

    if record.status == RunStatus.FAILED:
        advice = f" **What to do:** {md(sentence(record.advice))}" if record.advice else ""
        st.error(f"The run failed: {md(sentence(record.message))}{advice}", icon=":material/error:")
    elif record.status == RunStatus.INTERRUPTED:
        st.warning(f"The run was interrupted: {md(sentence(record.message))} Resume it on the Runs page.")
    notices = [e.message for e in events if isinstance(e, Notice)]
    if notices:
        st.caption(" · ".join(md(n) for n in notices[-3:]))
    start = last_started(events)
    for note in coach_ui.notes(record, epochs, len(start.classes) if start else 0):
        st.info(f"**{md(note.message)}** What to try: {md(note.advice)}", icon=":material/tips_and_updates:")

    spe = start.steps_per_epoch if start else None
    if len(steps) or len(epochs):
        st.plotly_chart(charts.training_curves(epochs, steps, spe), key=f"curves_{run_id}",
                        config={"displayModeBar": False})
    elif record.is_active:
        st.info("The loss, accuracy and learning-rate curves appear here after the first training steps.",
                icon=":material/hourglass_top:")
    _summary(record, events, epochs)


def _controls(record, jobs) -> None:
    if not record.is_active:
        return
    if not jobs.is_active(record.id):
        st.caption("This run was started outside this app (for example from the command line); "
                   "control it where it was started. Its progress is shown here as it happens.")
        return
    pause_col, stop_col, _ = st.columns([1, 1, 4])
    with friendly("control the run"):
        if record.status == RunStatus.PAUSED:
            if pause_col.button("Resume", key="run_resume", icon=":material/play_arrow:", type="primary"):
                jobs.resume(record.id)
                st.toast("Resuming...")
        elif pause_col.button("Pause", key="run_pause", icon=":material/pause:",
                              disabled=record.status == RunStatus.QUEUED):
            jobs.pause(record.id)
            st.toast("Pausing after the current step...")
        if stop_col.button("Stop", key="run_stop", icon=":material/stop:"):
            jobs.stop(record.id)
            st.toast("Stopping: saving a checkpoint and measuring the model as it is now...")


def _summary(record, events, epochs) -> None:
    best = record.best_metrics or {}
    cols = st.columns(4)
    # One meaning (transfer_core/summary.py): the numbers of the model the run gives you; while it
    # trains, the latest epoch's. The best epoch is named beside them when it is another one.
    help_text = ("Of the model this run gives you (the one you evaluate, try and export), measured on the "
                 "validation data at the end; while it trains, of the latest epoch.")
    cols[0].metric("Validation accuracy (your model)", fmt_pct(best.get("val_accuracy")), help=help_text)
    cols[1].metric("Validation loss (your model)",
                   f"{best['val_loss']:.3f}" if charts.finite(best.get("val_loss")) else "-", help=help_text)
    cols[2].metric("Epochs done", record.epochs_done)
    cols[3].metric("Training time", fmt_duration(training_seconds(record, events, epochs)),
                   help="Time spent training; time in the queue or between a finish and an extension does not count.")
    if record.status == RunStatus.STOPPED and record.epochs_done == 0 and best:
        st.caption("Stopped before the first epoch ended: these numbers are of the partly trained model.")
    note = best_note(best)
    if note:
        tip = (f" To keep the best epoch's weights, turn on early stopping ('{label_for('train.early_stopping_patience')}' "
               "under Advanced settings below).") \
            if not (record.config or {}).get("train", {}).get("early_stopping_patience") else ""
        st.caption(f"{sentence(note[0].upper() + note[1:])}{tip}")
    if record.status in (RunStatus.COMPLETED, RunStatus.STOPPED):
        left, right = st.columns(2)
        left.page_link(page_file("4_results"), label="See the results", icon=":material/insights:")
        right.page_link(page_file("5_try"), label="Try the model and export it", icon=":material/science:")
