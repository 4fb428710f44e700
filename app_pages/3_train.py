"""Train: the training settings, Start, and the live view of the run this tab follows."""
import streamlit as st

from app.commands import cli_command
from app.data_ui import data_problem
from app.demo import default_run_name, describe_path
from app.forms import render_settings
from app.layers import augmentation_cache_notice
from app.live import live_view
from app.resources import allowed_roots, get_jobs, get_store, runs_dir
from app.state import current_run_id, draft, has_data, save_draft, set_current_run
from app.ui import friendly, sentence
from transfer_core.models import get_spec
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
    st.page_link("app_pages/1_data.py", label="Choose data", icon=":material/dataset:")
    st.page_link("app_pages/home.py", label="Or start with a demo from the home page", icon=":material/home:")
    st.stop()

modality = "image"
with friendly("read the model choice"):
    modality = guess_modality(cfg.data.path)
    spec = get_spec(cfg.model.name, runs_dir=runs_dir(), allowed_roots=allowed_roots())
    st.markdown(f"**Data:** {describe_path(cfg.data.path)} · **Model:** {spec.name} "
                f"({'offline' if spec.offline else 'downloads weights on first use'}) · "
                f"**Layers:** {cfg.freeze.preset.replace('_', ' ')}")
    st.caption("Change them on the Data and Model and layers pages.")

sections = ("optim", "train") + (("augment",) if modality == "image" else ())
problems = render_settings(cfg, sections, columns=3)
save_draft(cfg)
augmentation_cache_notice(cfg, modality)
problems += cfg.validate()
for problem in dict.fromkeys(problems):
    st.error(problem)
unreadable = data_problem(cfg)
if unreadable:   # a run on it could only fail
    st.error(f"Start needs data that can be read: {sentence(unreadable)} See the Data page.", icon=":material/block:")

name = st.text_input("Run name (optional)", key="run_name", placeholder="e.g. first try, lr 0.003")
if st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=bool(problems or unreadable), key="start"):
    with friendly("start the run"):
        new_id = jobs.submit(cfg.copy(), name=name.strip() or default_run_name(cfg.model.name, cfg.data.path))
        set_current_run(new_id)
        st.rerun()

with st.expander("Run the same from the command line"):
    st.code(cli_command(cfg, name.strip() or None), language="bash", wrap_lines=True)
    st.download_button("Download config.json", cfg.to_json(), file_name="config.json", mime="application/json",
                       icon=":material/download:", key="download_config")
    st.caption("Train from a config file with `python -m transfer_core train --config config.json`.")
