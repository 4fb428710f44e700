"""Train: the training settings, Start, and the live view of the run this tab follows."""
import streamlit as st

from app import model_ui
from app.commands import cli_command
from app.compare_ui import compare_strategies_box
from app.data_ui import data_problem, imbalance_suggestion
from app.demo import describe_path
from app.forms import (
    changed_settings,
    describe_value,
    follow_recommended_rates,
    label_for,
    render_settings,
    reset_settings,
)
from app.layers import augmentation_cache_notice
from app.live import live_view
from app.lr_find_ui import lr_finder
from app.nav import page_file
from app.processes_ui import process_count
from app.resources import allowed_roots, get_jobs, get_store, runs_dir
from app.state import current_run_id, draft, has_data, save_draft, set_current_run
from app.text import md
from app.ui import friendly, sentence
from transfer_core.freezing import rate_warnings
from transfer_core.models import get_spec
from transfer_core.models.network import availability
from transfer_core.preparation import guess_modality

store, jobs = get_store(), get_jobs()
cfg = draft()
st.title("Train")

run_id = current_run_id(store)
if run_id:
    st.query_params["run"] = run_id
    with st.container(border=True):
        live_view(run_id)

st.subheader("Start a new run" if run_id else "Settings")
if not has_data(cfg):
    st.info("First choose the data to learn from.")
    st.page_link(page_file("1_data"), label="Choose data", icon=":material/dataset:")
    st.page_link(page_file("home"), label="Or start with a demo from the home page", icon=":material/home:")
    st.stop()

modality, spec = "image", None
with friendly("read the model choice"):
    modality = guess_modality(cfg.data.path, allowed_roots=allowed_roots())
    spec = get_spec(cfg.model.name, runs_dir=runs_dir(), allowed_roots=allowed_roots())
    st.markdown(f"**Data:** {md(describe_path(cfg.data.path))} · **Model:** {md(spec.name)} "
                f"({model_ui.AVAILABILITY[availability(spec, cfg.model.pretrained, probe=False)]}) · "
                f"**Layers:** {cfg.freeze.preset.replace('_', ' ')}" +
                (f" · **New domain:** {md(describe_path(cfg.adapt.target))} ({cfg.adapt.method})" if cfg.adapt.target else ""))
    st.caption("Change them on the Data and Model and layers pages.")

sections = ("optim", "train") + (("augment",) if modality == "image" else ())
if spec is not None:
    follow_recommended_rates(cfg, spec)
    # Below a run, the form still holds what that run used: say so, and offer the defaults back.
    changed = changed_settings(cfg, spec, sections, extra=("freeze.body_lr_factor",)) if run_id else []
    if changed:
        listed = " · ".join(f"{label_for(d)} **{describe_value(v)}** (default {describe_value(dv)})" for d, v, dv in changed)
        note, reset = st.columns([5, 1])
        note.info(f"Kept from the last run, not the defaults: {listed}", icon=":material/history:")
        if reset.button("Reset to defaults", key="reset_settings", icon=":material/restart_alt:"):
            reset_settings(cfg, spec, changed)
            save_draft(cfg)
            st.rerun()
problems = render_settings(cfg, sections, columns=3)
save_draft(cfg)
if suggestion := imbalance_suggestion(cfg):
    st.info(suggestion, icon=":material/balance:")
if spec is not None:
    for warning in rate_warnings(cfg, spec):
        st.warning(md(warning), icon=":material/speed:")
augmentation_cache_notice(cfg, modality)
lr_finder(cfg)
problems += cfg.validate()
for problem in dict.fromkeys(problems):
    st.error(md(problem))
unreadable = data_problem(cfg)
if unreadable:   # a run on it could only fail
    st.error(f"Start needs data that can be read: {md(sentence(unreadable))} See the Data page.", icon=":material/block:")

compare_strategies_box(cfg, blocked=bool(problems or unreadable))
name = st.text_input("Run name (optional)", key="run_name", placeholder="e.g. first try, lr 0.003")
processes = process_count(cfg)
if st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=bool(problems or unreadable), key="start"):
    with friendly("start the run"):
        new_id = jobs.submit(cfg.copy(), name=name.strip() or None, processes=processes)
        set_current_run(new_id)
        st.rerun()

with st.expander("Run the same from the command line"):
    st.code(cli_command(cfg, name.strip() or None, processes), language="bash", wrap_lines=True)
    st.download_button("Download config.json", cfg.to_json(), file_name="config.json", mime="application/json",
                       icon=":material/download:", key="download_config")
    st.caption("Train from a config file with `python -m transfer_core train --config config.json`.")
