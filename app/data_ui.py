"""Data page helpers: saving uploads under the app's data directory, camera captures, previews,
and drawing the data report, sample grids and counts."""
from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.data import build_report
from transfer_core.data.report import DataReport
from transfer_core.data.tables import read_table
from transfer_core.data.types import Dataset, Splits
from transfer_core.errors import DataError, ModelError, TransferError
from transfer_core.models import default_model, get_spec
from transfer_core.paths import check_allowed
from transfer_core.preparation import load_configured, prepare_data

from . import charts
from .resources import allowed_roots, new_upload_dir
from .text import md

TEXT_TYPES = ["csv", "tsv", "jsonl", "ndjson"]
IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"]
THUMBS_PER_CLASS = 8
THUMB_WIDTH = 96           # pixels
CAPTION_CHARS = 12         # what fits on one line under a thumbnail
MAX_CLASSES_SHOWN = 20


def safe_name(name: str, fallback: str = "file") -> str:
    """A file or folder name made only of letters, digits, dot, dash and underscore (no path parts)."""
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", Path(str(name)).name).strip(" .")
    base = re.sub(r"\s+", "_", base)[:80]
    return base or fallback


def zip_entry_name(name: str, fallback: str) -> str:
    """The file's own name (so the label CSV still finds it), without any folder part or control characters."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[\x00-\x1f]+", "", base).strip().lstrip(".")
    return base[:200] or fallback


def class_folder_name(label: str) -> str:
    cleaned = re.sub(r"[\\/:*?\"<>|\x00-\x1f]+", "-", label).strip(" .")
    return cleaned[:60] or "class"


def store_upload(uploaded, kind: str) -> Path:
    """Write an uploaded file to `<data>/uploads/<kind>-<random>/<clean name>` once per upload."""
    saved = st.session_state.setdefault("saved_uploads", {})
    file_id = getattr(uploaded, "file_id", None) or f"{uploaded.name}:{uploaded.size}"
    if file_id in saved and Path(saved[file_id]).exists():
        return Path(saved[file_id])
    target = new_upload_dir(kind) / safe_name(uploaded.name, f"upload.{kind}")
    target.write_bytes(uploaded.getvalue())
    saved[file_id] = str(target)
    return target


def zip_images_with_labels(images: list, labels_csv) -> Path:
    """Loose image files plus a label CSV become one zip, so the engine's safe zip loader
    confines every path the CSV names to the uploaded files."""
    key = "imgcsv:" + ",".join(sorted(getattr(f, "file_id", f.name) for f in [*images, labels_csv]))
    saved = st.session_state.setdefault("saved_uploads", {})
    if key in saved and Path(saved[key]).exists():
        return Path(saved[key])
    target = new_upload_dir("images") / "images_with_labels.zip"
    seen: set[str] = set()
    with zipfile.ZipFile(target, "w") as zf:
        for i, f in enumerate(images):
            name = zip_entry_name(f.name, f"image_{i}.png")
            if name.lower() in seen or name.lower() == "labels.csv":
                continue
            seen.add(name.lower())
            zf.writestr(name, f.getvalue())
        zf.writestr("labels.csv", labels_csv.getvalue())
    saved[key] = str(target)
    return target


def folder_clash(classes: list[str]) -> str:
    """One line naming two class names that would be saved in the same folder, or ''. Names clean to
    the same folder when they differ only in characters a folder name cannot hold ('cat/dog' and
    'cat:dog'), a trailing dot or space ('OK' and 'OK.'), or in case (one folder on macOS and Windows)."""
    first: dict[str, str] = {}
    for label in classes:
        folder = class_folder_name(label)
        other = first.setdefault(folder.casefold(), label)
        if other != label:
            return (f"Classes '{other}' and '{label}' would both be saved in folder '{folder}', mixing their photos; "
                    "rename one so they differ in letters or digits.")
    return ""


def save_camera_captures(captures: dict[str, list[bytes]]) -> Path:
    """Captured photos as an image folder: `<data>/uploads/camera-<random>/<class>/<n>.jpg`."""
    clash = folder_clash(list(captures))
    if clash:   # refused rather than letting one class's photos overwrite the other's
        raise DataError(clash)
    root = new_upload_dir("camera") / "webcam"
    for label, shots in captures.items():
        folder = root / class_folder_name(label)
        folder.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(shots, start=1):
            (folder / f"{i:03d}.jpg").write_bytes(data)
    return root


@st.cache_data(show_spinner=False, max_entries=16)
def table_preview(path: str) -> tuple[pd.DataFrame, list[str]]:
    return read_table(check_allowed(path, allowed_roots(), what="data path"))


def use_data(cfg: RunConfig, path: str, modality: str | None, *, text_column: str = "", label_column: str = "") -> None:
    """Point the draft at new data; switch to the default offline model when the current one does not fit."""
    cfg.data.path = str(path)
    cfg.data.text_column, cfg.data.label_column = text_column, label_column
    if modality:
        try:
            fits = get_spec(cfg.model.name).modality == modality
        except ModelError:
            fits = False
        if not fits:
            cfg.model.name = default_model(modality).name


def _data_key(cfg: RunConfig) -> str:
    return json.dumps({"data": asdict(cfg.data), "seed": cfg.train.seed}, sort_keys=True, default=str)


@dataclass
class Inspection:
    """What the Data page shows: the engine's prepared data, or (when it refuses the data) the
    report on the data as loaded, whose error findings say why."""
    dataset: Dataset
    report: DataReport
    splits: Splits | None = None
    notices: list = field(default_factory=list)
    blocking: str = ""

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes


@st.cache_resource(show_spinner="Checking the data...", max_entries=8, ttl=3600)
def _inspect(key: str) -> Inspection:
    data = json.loads(key)
    cfg = RunConfig()
    for k, v in data["data"].items():
        cfg.set(f"data.{k}", v)
    cfg.set("train.seed", data["seed"])
    roots = allowed_roots()   # image paths inside a table are held to them too: a row naming another file is skipped
    try:
        prep = prepare_data(cfg, allowed_roots=roots)
    except DataError as exc:
        dataset = load_configured(cfg.data.path, cfg, allowed_roots=roots)   # raises when the data cannot even be read
        return Inspection(dataset, build_report(dataset), blocking=str(exc))
    return Inspection(prep.dataset, prep.report, prep.splits, list(prep.notices))


def inspect(cfg: RunConfig) -> Inspection:
    """The data report for the draft's data (loaded, cleaned, split, checked by the engine); cached."""
    return _inspect(_data_key(cfg))


def data_problem(cfg: RunConfig) -> str:
    """Why the draft's data cannot be trained on, in one line; '' when it can. The same check as the Data
    page's (cached there), so Start stays off exactly while that page shows the data as unusable."""
    try:
        return inspect(cfg).blocking
    except TransferError as exc:
        return str(exc).strip()
    except Exception as exc:   # never let an unreadable file take the Train page down; the terminal gets the details
        logging.getLogger("transfer_app").exception("could not check the data %s", cfg.data.path)
        return f"the data could not be read ({type(exc).__name__}); check it on the Data page"


def imbalance_suggestion(cfg: RunConfig) -> str:
    """When the data report warns that the classes are imbalanced and class balance is off: what to turn on
    (markdown, the user's class names escaped)."""
    if cfg.train.class_balance != "none" or data_problem(cfg):
        return ""
    finding = next((f for f in inspect(cfg).report.findings if f.code == "imbalance"), None)
    if finding is None:
        return ""
    return (f"{md(finding.message)} Set **Class balance** to *weighted_loss* (every class counts the same in the "
            f"loss) or *balanced_sampler* (every class is drawn about equally often), so the model does not learn "
            f"to favour the large class.")


def show_report(report) -> None:
    """Each finding as one plain sentence and what to do about it."""
    if not report.findings:
        st.success("No problems found in the data.", icon=":material/check_circle:")
    for f in report.findings:
        text = f"{md(f.message)} **What to do:** {md(f.fix)}"
        {"error": st.error, "warning": st.warning}.get(f.level, st.info)(text)


def show_counts(report) -> None:
    st.plotly_chart(charts.class_counts(report.class_counts, report.split_counts or None),
                    key="class_counts", config={"displayModeBar": False})


def show_samples(dataset) -> None:
    by_class: dict[str, list] = {}
    for s in dataset.samples:
        by_class.setdefault(s.label, []).append(s)
    classes = sorted(by_class)[:MAX_CLASSES_SHOWN]
    if len(by_class) > MAX_CLASSES_SHOWN:
        st.caption(f"Showing {MAX_CLASSES_SHOWN} of {len(by_class)} classes.")
    if dataset.modality == "image":
        for label in classes:
            items = by_class[label][:THUMBS_PER_CLASS]
            st.markdown(f"**{md(label)}** · {len(by_class[label])} images")
            try:
                st.image([s.input for s in items], width=THUMB_WIDTH, caption=[md(thumb_caption(s.id)) for s in items])
            except Exception:   # an unreadable file: the data report names it, the examples go on without it
                st.caption("Some images could not be shown (see the data report).")
    else:
        rows = [{"label": label, "text": s.input[:300] + ("..." if len(s.input) > 300 else "")}
                for label in classes for s in by_class[label][:3]]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def thumb_caption(sample_id: str, limit: int = CAPTION_CHARS) -> str:
    """A file's name short enough for one line under a thumbnail. A longer one would break inside
    the name; its middle goes, since the end (often a number) tells files of one class apart."""
    name = Path(str(sample_id)).stem or str(sample_id)
    if len(name) <= limit:
        return name
    tail = (limit - 1) // 2
    return name[:limit - 1 - tail] + "…" + name[-tail:]


def camera_bytes(image) -> bytes:
    return image.getvalue() if hasattr(image, "getvalue") else io.BytesIO(image).getvalue()
