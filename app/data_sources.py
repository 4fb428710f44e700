"""The ways to bring data on the Data page. Each draws its widgets and, when the user settles on
data, points the draft config at it (files are saved under the app's data directory first)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.data import demo_sets
from transfer_core.data.demo import DEMO_TITLES
from transfer_core.data.tables import LABEL_NAMES, TEXT_NAMES, find_column

from . import data_ui
from .demo import DEMOS, demo_config
from .state import replace_draft
from .text import md

SOURCES = ("Demo set", "Images (.zip)", "Images + label CSV", "Text file", "Webcam")
EARLIER = "data_by_source"     # session state: the data last used from each source
WAITING = {"Demo set": "Pick a demo set above.", "Images (.zip)": "Upload a zip of images above.",
           "Images + label CSV": "Select the images and their label CSV above.",
           "Text file": "Upload a text file above.", "Webcam": "Take photos of each class above."}


def default_source(cfg: RunConfig) -> str:
    """The source the draft's data came from."""
    path = cfg.data.path
    if not path or path.startswith("demo:"):
        return "Demo set"
    p = Path(path)
    if "camera-" in str(p):
        return "Webcam"
    if p.suffix.lower() == ".zip":
        return "Images + label CSV" if p.name == "images_with_labels.zip" else "Images (.zip)"
    if p.is_dir():       # an image folder named in a loaded config or on the command line
        return "Images (.zip)"
    return "Text file"


def choose(source: str, cfg: RunConfig) -> bool:
    """Draw `source`'s widgets; True when the draft's data comes from it. Streamlit forgets an uploader's
    file once the uploader is not drawn (another source picked, another page visited): coming back to a
    source goes back to the data last used from it, instead of an empty uploader beside other data."""
    earlier = st.session_state.setdefault(EARLIER, {})
    before = earlier.get(source)
    if default_source(cfg) != source and before and _still_there(before["path"]):
        data_ui.use_data(cfg, before["path"], None, text_column=before["text_column"],
                         label_column=before["label_column"])
        cfg.model.name = before["model"]
    PICKERS[source](cfg)
    if not cfg.data.path.strip() or default_source(cfg) != source:
        return False
    earlier[source] = {"path": cfg.data.path, "text_column": cfg.data.text_column,
                       "label_column": cfg.data.label_column, "model": cfg.model.name}
    return True


def _still_there(path: str) -> bool:
    return path.startswith("demo:") or Path(path).exists()


def _in_use(cfg: RunConfig, source: str) -> None:
    """Under an empty uploader: say which earlier upload is still in use."""
    if cfg.data.path.strip() and default_source(cfg) == source and not cfg.data.path.startswith("demo:"):
        st.caption(f"In use: {md(Path(cfg.data.path).name)}, chosen earlier. Upload another to replace it.")


def demo_picker(cfg: RunConfig) -> None:
    sets = demo_sets()
    columns = [column for _ in range(0, len(sets), 2) for column in st.columns(2)]   # two per row
    for ds, column in zip(sets, columns):
        with column.container(border=True, height="stretch"):
            modality, short = ds["modality"], ds["name"].removeprefix("demo:")
            st.markdown(f"**{short}** ({modality}s) · {ds['description']}")
            if not ds["available"]:
                st.warning("Not installed on this machine: run scripts/setup.sh to add it.")
                continue
            default_n = int(DEMOS[modality]["data.path"].split("per_class=")[1])
            n = st.number_input("Examples per class", 5, 2000, default_n, step=10, key=f"demo_n_{short}",
                                help="Fewer examples train faster; more give a better model.")
            if st.button(f"Use {DEMO_TITLES.get(short, short)}", key=f"use_demo_{short}", icon=":material/check:"):
                new = demo_config(modality)
                new.data.path = f"{ds['name']}?per_class={int(n)}"
                replace_draft(new)
                st.rerun()


def zip_upload(cfg: RunConfig) -> None:
    st.caption("A .zip with one folder per class (cat/1.jpg, dog/2.jpg, ...), or images plus a labels.csv "
               "with an image-path column and a label column.")
    up = st.file_uploader("Image zip", type=["zip"], key="upload_zip")
    if up is not None:
        path = data_ui.store_upload(up, "zip")
        if cfg.data.path != str(path):
            data_ui.use_data(cfg, str(path), "image")
    else:
        _in_use(cfg, "Images (.zip)")


def images_csv_upload(cfg: RunConfig) -> None:
    st.caption("Select the image files and a CSV whose rows name an image file and its label, "
               "e.g. `image,label` / `cat1.jpg,cat`.")
    images = st.file_uploader("Images", type=data_ui.IMAGE_TYPES, accept_multiple_files=True, key="upload_images")
    labels = st.file_uploader("Label CSV", type=["csv", "tsv"], key="upload_labels")
    if images and labels is not None:
        path = data_ui.zip_images_with_labels(images, labels)
        if cfg.data.path != str(path):
            data_ui.use_data(cfg, str(path), "image")
    elif not images and labels is None:
        _in_use(cfg, "Images + label CSV")


def text_upload(cfg: RunConfig) -> None:
    st.caption("A CSV, TSV or JSONL file with one example per row: a text column and a label column.")
    up = st.file_uploader("Text file", type=data_ui.TEXT_TYPES, key="upload_text")
    if up is not None:
        path = data_ui.store_upload(up, "text")
    elif Path(cfg.data.path).suffix.lower().lstrip(".") in data_ui.TEXT_TYPES and Path(cfg.data.path).is_file():
        path = Path(cfg.data.path)            # the file chosen earlier: its columns can still be changed
    else:
        return
    frame, notes = data_ui.table_preview(str(path))
    for note in notes:
        st.info(md(note))
    st.dataframe(frame.head(5), hide_index=True, width="stretch")
    cols = list(frame.columns)
    same_file = str(path) == cfg.data.path
    guess_text = (same_file and cfg.data.text_column in cols and cfg.data.text_column) \
        or find_column(cols, "", TEXT_NAMES, file=path.name, role="text", setting="text_column") or cols[0]
    guess_label = (same_file and cfg.data.label_column in cols and cfg.data.label_column) \
        or find_column(cols, "", LABEL_NAMES, file=path.name, role="label", setting="label_column") \
        or cols[min(1, len(cols) - 1)]
    left, right = st.columns(2)
    text_col = left.selectbox("Text column", cols, index=cols.index(guess_text), key="text_column_pick")
    label_col = right.selectbox("Label column", cols, index=cols.index(guess_label), key="label_column_pick")
    if text_col == label_col:
        st.error("The text and the label must be different columns; pick another label column.")
        return
    if (cfg.data.path, cfg.data.text_column, cfg.data.label_column) != (str(path), text_col, label_col):
        data_ui.use_data(cfg, str(path), "text", text_column=text_col, label_column=label_col)


def webcam(cfg: RunConfig) -> None:
    st.caption("Like Teachable Machine: name your classes, then take a few photos of each with your webcam.")
    names = st.text_input("Class names, separated by commas", "Class 1, Class 2", key="cam_classes")
    classes = list(dict.fromkeys(c.strip() for c in names.split(",") if c.strip()))
    if len(classes) < 2:
        st.warning("Name at least two classes.")
        return
    clash = data_ui.folder_clash(classes)
    if clash:
        st.error(md(clash))
        return
    captures: dict = st.session_state.setdefault("captures", {})
    seen: set = st.session_state.setdefault("captures_seen", set())
    label = st.radio("Take photos of", classes, horizontal=True, key="cam_class", format_func=md)
    shot = st.camera_input(f"Photo of {md(label)}", key="cam_shot")
    if shot is not None and shot.file_id not in seen:
        seen.add(shot.file_id)
        captures.setdefault(label, []).append(data_ui.camera_bytes(shot))
    for name in classes:
        shots = captures.get(name, [])
        st.markdown(f"**{md(name)}**: {len(shots)} photo(s)")
        if shots:
            st.image(shots[-8:], width=64)
    total = {c: len(captures.get(c, [])) for c in classes}
    left, right = st.columns(2)
    if left.button("Use these photos", disabled=min(total.values()) < 2, key="cam_use", icon=":material/check:",
                   help="Needs at least 2 photos per class; 10 or more work much better."):
        path = data_ui.save_camera_captures({c: captures.get(c, []) for c in classes})
        data_ui.use_data(cfg, str(path), "image")
    if right.button("Clear photos", key="cam_clear"):
        captures.clear()


PICKERS = {"Demo set": demo_picker, "Images (.zip)": zip_upload, "Images + label CSV": images_csv_upload,
           "Text file": text_upload, "Webcam": webcam}
