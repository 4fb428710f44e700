"""Model and layers: pick a pretrained model and decide which of its layer groups train."""
import streamlit as st

from app import domain_ui, model_ui, probe_ui
from app.data_ui import inspect
from app.forms import follow_recommended_rates, render_field, render_settings
from app.from_run_ui import start_from_run
from app.layers import layer_map
from app.nav import page_file
from app.recipes_ui import recipe_box
from app.resources import allowed_roots, runs_dir
from app.state import WIDGET_PREFIX, draft, has_data, save_draft, seed_widget
from app.text import md
from app.ui import friendly
from transfer_core.config import FREEZE_PRESETS
from transfer_core.freezing import rate_warnings
from transfer_core.models import get_spec
from transfer_core.models.network import DOWNLOAD, availability
from transfer_core.preparation import guess_modality

cfg = draft()
st.title("Model and layers")

modality, classes, n_train, n_val = None, tuple(f"class {i}" for i in range(10)), 1000, 250
if has_data(cfg):
    with friendly("read the data"):
        modality = guess_modality(cfg.data.path, allowed_roots=allowed_roots())
        found = inspect(cfg)
        classes = tuple(found.classes) or classes
        if found.splits is not None:
            n_train, n_val = len(found.splits.train), len(found.splits.val)
else:
    st.info("No data chosen yet: showing every model. Choose data first to see the models that fit it.")

names = model_ui.model_choices(modality)
if cfg.model.name not in names:
    names.insert(0, cfg.model.name)
key = WIDGET_PREFIX + "model.name"
seed_widget(key, cfg.model.name)
cfg.model.name = st.selectbox("Pretrained model", names, key=key, format_func=model_ui.model_label,
                              help="Models marked ready ✓ are on this machine (installed with the app, or downloaded "
                                   "before); the others download their weights the first time a run uses them, "
                                   "which needs a network.")
start_from_run(cfg, classes, modality, key)
model_ui.other_model(cfg, key)

spec = None
with friendly("describe the model"):
    spec = get_spec(cfg.model.name, runs_dir=runs_dir(), allowed_roots=allowed_roots())
    if modality and spec.modality != modality:
        st.error(f"{md(spec.name)} is a{'n' if spec.modality == 'image' else ''} {spec.modality} model but the data "
                 f"holds {modality}s; pick a {modality} model.")
    (st.success if spec.offline else st.info)(md(spec.description))
    if availability(spec, cfg.model.pretrained, probe=False) == DOWNLOAD:   # pages send nothing out; Start checks
        st.info(f"{md(spec.name)} downloads its weights when a run starts, so it needs the network; Start checks that "
                "the download source answers. With no network, pick a model marked ready ✓.",
                icon=":material/cloud_download:")
    render_settings(cfg, ("model",), skip=model_ui.drawn_elsewhere(spec), columns=2,
                    advanced_label="Advanced model settings")
    if spec.modality == "text":
        st.caption(model_ui.pooling_caption(spec, cfg.model.pooling))

if spec is None:
    st.stop()
recipe_box(cfg)
st.subheader("Layer map")
st.caption(model_ui.FREEZING_TEXT)
preset_key = WIDGET_PREFIX + "freeze.preset"
seed_widget(preset_key, cfg.freeze.preset)
cfg.freeze.preset = st.radio("Which layers train?", FREEZE_PRESETS, key=preset_key, horizontal=True,
                             format_func=lambda p: model_ui.PRESETS[p][0])
st.caption(model_ui.PRESETS[cfg.freeze.preset][1])
if cfg.freeze.preset == "top_k":
    render_field(cfg, "freeze.top_k")
elif cfg.freeze.preset == "staged":
    render_field(cfg, "freeze.staged_head_epochs")
follow_recommended_rates(cfg, spec)
save_draft(cfg)

with friendly("build the layer map"):
    layer_map(cfg, classes, modality or spec.modality, n_train, n_val)
render_settings(cfg, ("freeze",), skip=("freeze.preset", "freeze.top_k", "freeze.staged_head_epochs",
                                        "freeze.trainable_groups"), advanced_label="Advanced freezing settings")
save_draft(cfg)
for warning in rate_warnings(cfg, spec):
    st.warning(md(warning) + " Change the rates on the Train page (learning rate) or in the advanced settings above.",
               icon=":material/speed:")

probe_ui.probe_section(cfg)
domain_ui.method_choice(cfg)   # (only with a new domain on the Data page)
save_draft(cfg)
model_ui.presets_explained()
st.page_link(page_file("3_train"), label="Next: train", icon=":material/arrow_forward:")
