"""Runs: every run in the store (also those started from the CLI); compare, resume, extend or delete."""
import streamlit as st

from app import compare_ui, runs_ui
from app.resources import get_jobs, get_store
from app.state import current_run_id, open_on_train_page, set_current_run
from app.text import md
from app.ui import friendly, pick_run, sentence
from transfer_core.events import RunStatus
from transfer_core.trainer import max_epochs

store, jobs = get_store(), get_jobs()
st.title("Runs")
if (rebuilt := st.session_state.pop("rebuilt_runs", None)) is not None:
    st.success(f"Run list rebuilt from the run folders: {rebuilt} run(s) listed again.")
with friendly("check for runs whose process stopped"):
    runs_ui.settle_dead_runs(store, jobs)
runs = store.list_runs()
if not runs:
    st.info("No runs yet. Runs started here or with `python -m transfer_core train` appear in this list.")
    st.stop()
for r in runs:
    if r.is_active:
        st.info(f"**{md(r.name)}** is {r.status}: {r.epochs_done} epoch(s) done so far. Watch it on the Train page.",
                icon=":material/model_training:")

st.dataframe(runs_ui.runs_table(runs), hide_index=True, width="stretch", column_config=runs_ui.runs_table_config())
runs_ui.table_buttons(runs)

st.subheader("Compare")
with friendly("compare the runs"):
    compare_ui.compare_section(store, runs, current_run_id(store, attach_active=False))

st.subheader("Manage a run")
record = pick_run(store, runs, key="manage_run", default_id=current_run_id(store, attach_active=False))
if record.message:
    (st.error if record.status == RunStatus.FAILED else st.info)(
        md(sentence(record.message)) + (f" **What to do:** {md(sentence(record.advice))}" if record.advice else ""))
if runs_ui.files_missing(store, record):
    st.error(f"The files of this run are gone (no folder at {md(str(store.run_dir(record.id)))}): it cannot be resumed, "
             "tried or exported. Remove it from the list.")
    if st.button("Remove from the list", key="run_remove_missing", icon=":material/playlist_remove:"):
        store.delete_run(record.id)
        if st.session_state.get("current_run") == record.id:
            set_current_run(None)
        st.rerun()
    st.stop()
follow, reuse, resume, extend, delete = st.columns([1.3, 1.2, 1, 1, 1])
if follow.button("Open on the Train page", key="run_open", icon=":material/visibility:"):
    open_on_train_page(record.id)
if reuse.button("Reuse these settings", key="run_reuse", icon=":material/content_copy:",
                help="Its settings become the draft of the next run (Data, Model and Train pages)."):
    with friendly("reuse the run's settings"):
        runs_ui.reuse_settings(record)
with friendly("change the run"):
    refusal = store.resume_refusal(record.id) if record.status == RunStatus.FAILED else ""
    if refusal:
        resume.caption("No resume: its data or settings caused the failure. Fix them and start a new run.")
    elif record.status in RunStatus.RESUMABLE and resume.button("Resume", key="run_resume_saved", icon=":material/play_arrow:"):
        open_on_train_page(jobs.resume(record.id))
    room = max_epochs() - record.total_epochs
    if record.status in (RunStatus.COMPLETED, RunStatus.STOPPED) and room < 1:
        extend.caption(f"No extension: the run has the most epochs a run can have ({max_epochs()}). "
                       f"Start a new run from its weights (model run:{record.id}).")
    elif record.status in (RunStatus.COMPLETED, RunStatus.STOPPED):
        # The total stays within train.epochs' limit, or the run could never be resumed or extended again.
        extra = extend.number_input("Extra epochs", 1, room, min(3, room), key="extend_epochs",
                                    help="The extra epochs train the same layers as a new stage, with a fresh "
                                         "optimizer and a learning-rate schedule of their own (warm-up and decay).")
        if extend.button("Extend", key="run_extend", icon=":material/add:"):
            open_on_train_page(jobs.resume(record.id, extra_epochs=int(extra)))
    if not record.is_active and delete.button("Delete...", key="run_delete", icon=":material/delete:"):
        st.session_state["confirm_delete"] = record.id
    if st.session_state.get("confirm_delete") == record.id:
        st.warning(f"Delete run **{md(record.name)}** ({md(record.id)}) with its metrics, checkpoints and weights? "
                   "This cannot be undone.")
        yes, no = st.columns(2)
        # A plain button in red: the primary (blue) style marks the step the page expects next.
        if yes.button(":red[Yes, delete it]", type="secondary", icon=":material/delete_forever:", key="run_delete_yes"):
            store.delete_run(record.id)
            st.session_state.pop("confirm_delete", None)
            if st.session_state.get("current_run") == record.id:
                set_current_run(None)
            st.toast(f"Deleted {md(record.name)}.")
            st.rerun()
        if no.button("Cancel", key="run_delete_no"):
            st.session_state.pop("confirm_delete", None)
            st.rerun()
