"""Try and export: classify a new image or text with a trained run, and download it as a bundle."""
import io

import streamlit as st
from PIL import Image

from app import charts, export_ui, results_ui
from app.data_ui import IMAGE_TYPES
from app.explain_ui import why
from app.nav import page_file
from app.resources import get_store
from app.state import current_run_id
from app.text import md
from app.ui import friendly, pick_run
from transfer_core.models import get_spec

store = get_store()
st.title("Try and export")
runs = results_ui.finished_runs(store, need=results_ui.WEIGHTS_FILE)
if not runs:
    st.info("No trained model yet. Train one first; a stopped run can be tried too.")
    st.page_link(page_file("3_train"), label="Go to Train", icon=":material/play_circle:")
    st.stop()
record = pick_run(store, runs, key="try_run", default_id=current_run_id(store, attach_active=False))
modality = record.modality or get_spec(record.model, runs_dir=store.root).modality
k = st.slider("How many top classes to show", 1, 10, 3, key="try_k")

st.subheader("Try it")
item = None
with friendly("read the input"):
    if modality == "image":
        up = st.file_uploader("Upload an image", type=IMAGE_TYPES, key="try_image")
        if up is not None:
            item = Image.open(io.BytesIO(up.getvalue()))
            item.load()
            st.image(item, width=220)
    else:
        text = st.text_area("Type or paste a text", key="try_text", height=140,
                            placeholder="The central bank raised interest rates again on Thursday...")
        if st.button("Classify", key="try_classify", type="primary") and text.strip():
            st.session_state["try_text_done"] = text.strip()
        done = st.session_state.get("try_text_done")
        item = done if done and done == text.strip() else None
if item is not None:
    with friendly("classify the input"):
        said, top = results_ui.predict_top(record.id, item, k)
        st.markdown(f"Prediction: **{md(said['label'])}** ({said['probability']:.1%})"
                    + (", from the run's decision threshold (see Results)" if said["label"] != top[0]["label"] else ""))
        st.plotly_chart(charts.top_k(top), key="topk", config={"displayModeBar": False})
    why(record.id, item, said["label"], results_ui.run_model(record.id).classes, modality)

st.subheader("Export")
st.caption("A folder with the model in standard formats (TorchScript and ONNX for image models, a Hugging Face "
           "folder for text models), its labels and preprocessing, and a standalone predict.py. "
           "It is checked to predict exactly what the trained model predicts.")
if not export_ui.up_to_date(record.id):
    if st.button("Prepare the export bundle", key="export_build", icon=":material/package_2:"):
        with friendly("export the model"), st.spinner("Exporting and checking the bundle..."):
            export_ui.build_bundle(record.id)
            st.rerun()
else:
    # The bytes, not a deferred callable: a deferred download waits on a second round trip that a rerun
    # can orphan, and the bundle (tens of MB) is read only while this page shows it.
    zipped = export_ui.bundle_zip(record.id)
    st.download_button("Download the export bundle (.zip)", data=zipped.read_bytes(), mime="application/zip",
                       file_name=export_ui.download_name(record), key="export_download", type="primary",
                       icon=":material/download:")
    with st.expander("How to use it (from the bundle's README)", expanded=True):
        st.markdown(export_ui.quickstart(export_ui.readme(record.id)))
