"""Results and Try page helpers: a run's saved metrics and predictions, the inputs behind them,
and a cached copy of its trained model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.decision import predicted_classes
from transfer_core.evaluate import load_predictions, predict_inputs
from transfer_core.preparation import load_configured
from transfer_core.run_files import METRICS_FILE, PREDICTIONS_FILE, WEIGHTS_FILE
from transfer_core.runs import load_run_model, run_rule

from .resources import allowed_roots, get_store
from .text import md


def finished_runs(store, need: str = METRICS_FILE) -> list:
    """Runs that have the given file (metrics for Results, weights for Try and export)."""
    return [r for r in store.list_runs() if (store.root / r.id / need).exists()]


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_data(show_spinner=False, max_entries=32)
def _read_json(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@st.cache_data(show_spinner=False, max_entries=16)
def _read_predictions(path: str, mtime: float) -> pd.DataFrame:
    return load_predictions(path)


def hardware_caption(hardware: dict) -> str:
    """One line on how the run used the machine (metrics.json's "hardware"; runs from before it have none)."""
    if not hardware:
        return ""
    text = (f"Trained on {hardware.get('device', '?')} in {hardware.get('precision', '?')}, "
            f"batch size {hardware.get('batch_size', '?')}")
    if hardware.get("peak_gpu_memory_mib") is not None:
        text += f", peak GPU memory {hardware['peak_gpu_memory_mib'] / 1024:.1f} GiB"
    if hardware.get("compiled"):
        text += ", compiled with torch.compile"
    return text + "."


def run_metrics(run_dir: Path) -> dict:
    path = run_dir / METRICS_FILE
    return _read_json(str(path), _mtime(path))


def run_predictions(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / PREDICTIONS_FILE
    return _read_predictions(str(path), _mtime(path)) if path.exists() else None


@st.cache_data(show_spinner="Finding the examples...", max_entries=8, ttl=3600)
def sample_inputs(config: dict) -> tuple[dict[str, str], str]:
    """id -> input (image path or text) of the run's data, and one line on why some cannot be shown ('' when
    all can): the data is gone, or lies outside the folders this app may read (a run made on the command line)."""
    cfg = RunConfig.of_saved_run(config)
    lookup: dict[str, str] = {}
    note = ""
    for path in (cfg.data.path, cfg.data.val_path):
        if path.strip():
            try:
                lookup.update({s.id: s.input for s in load_configured(path, cfg, allowed_roots=allowed_roots()).samples})
            except Exception as exc:
                note = note or "The examples' inputs are not shown: " + (" ".join(str(exc).split()) or type(exc).__name__)
    return lookup, note


def per_class_table(val: dict) -> pd.DataFrame:
    rows = [{"class": c, "precision": m["precision"], "recall": m["recall"], "F1": m["f1"], "examples": m["support"]}
            for c, m in val.get("per_class", {}).items()]
    return pd.DataFrame(rows)


def gallery_rows(preds: pd.DataFrame, kind: str, k: int) -> pd.DataFrame:
    labelled = preds[preds["true"] != ""]
    if kind == "misclassified":
        wrong = labelled[labelled["true"] != labelled["predicted"]]
        return wrong.sort_values("confidence", ascending=False, kind="stable").head(k)
    return labelled.sort_values("loss", ascending=False, kind="stable").head(k)


@st.cache_resource(show_spinner="Loading the trained model...", max_entries=3)
def _model(run_id: str, weights_mtime: float):
    return load_run_model(get_store(), run_id)


def run_model(run_id: str):
    store = get_store()
    return _model(run_id, _mtime(store.run_dir(run_id) / WEIGHTS_FILE))


def predict_top(run_id: str, item, k: int) -> tuple[dict, list[dict]]:
    """The decided label with its probability (the run's decision threshold decides, when it has one) and the
    top-k labels with theirs, for one input (a PIL image or a text)."""
    built = run_model(run_id)
    probs = predict_inputs(built, [item])
    decided = int(predicted_classes(probs, built.classes, run_rule(get_store(), run_id))[0])
    order = probs[0].argsort()[::-1][:k]
    return ({"label": built.classes[decided], "probability": float(probs[0][decided])},
            [{"label": built.classes[i], "probability": float(probs[0][i])} for i in order])


def show_gallery(rows: pd.DataFrame, inputs: dict[str, str], modality: str, per_row: int = 6,
                 heatmap: Callable[[str], Any] | None = None) -> None:
    """Images in a grid or texts in a table, each with its true label, prediction and confidence; with
    `heatmap` (path -> image), each image is shown as that image instead (explain_ui.gallery_heatmap)."""
    if modality == "image":
        records = rows.to_dict("records")
        for start in range(0, len(records), per_row):
            cols = st.columns(per_row)
            for col, r in zip(cols, records[start:start + per_row]):
                with col:
                    path = inputs.get(r["id"])
                    if path and Path(path).exists():
                        st.image(heatmap(path) if heatmap else path, width="stretch")
                    else:
                        st.caption(md(r["id"]))
                    mark = "✓" if r["true"] == r["predicted"] else "✗"
                    st.caption(f"true **{md(r['true'])}** · {mark} predicted **{md(r['predicted'])}** ({r['confidence']:.0%}) · "
                               f"loss {r['loss']:.2f}")
        return
    table = pd.DataFrame({
        "text": [(inputs.get(i) or i)[:400] for i in rows["id"]],
        "true": rows["true"], "predicted": rows["predicted"], "confidence": rows["confidence"], "loss": rows["loss"],
    })
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"confidence": st.column_config.NumberColumn(format="percent"),
                                "loss": st.column_config.NumberColumn(format="%.2f"),
                                "text": st.column_config.TextColumn(width="large")})
