"""The embedding map: where a run's validation samples lie in the space its head reads, before training (the
starting model: pretrained, or the run it started from) and after it (the trained model), in 2-D (PCA, or
t-SNE), side by side. Classes that the pretrained features already separate need little training; classes that
only training pulls apart show what fine-tuning did. With domain adaptation, the new domain's samples are drawn
with the source's: adaptation should bring the two clouds together.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .batching import sample_set
from .data.types import Dataset
from .data.unlabelled import load_unlabelled
from .decision import predicted_classes
from .errors import RunError
from .feature_cache import compute_features
from .models import build_model
from .preparation import load_configured, prepare_data
from .runs import load_run_model, run_config, run_rule
from .store import RunStore

METHODS = ("pca", "tsne")
MAX_POINTS = 1500     # per domain: t-SNE's time grows with the square of the points


@dataclass
class EmbeddingMap:
    run_id: str
    method: str
    points: pd.DataFrame   # id, input, label, predicted, correct, domain, x_before, y_before, x_after, y_after
    classes: list[str]


def embedding_map(store: RunStore, run_id: str, *, data_path: str | None = None, method: str = "pca",
                  max_points: int = MAX_POINTS, allowed_roots: list | None = None) -> EmbeddingMap:
    """The map of the run's validation split, or of the labelled data at `data_path` (held to `allowed_roots`,
    the app's folders, when given)."""
    if method not in METHODS:
        raise RunError(f"the map's method must be one of {', '.join(METHODS)}, not {method!r}")
    cfg = run_config(store, run_id)
    after = load_run_model(store, run_id)
    # A run from random weights started from the ones its seed gives; the generator is restored afterwards, so
    # a run training in another thread of the app keeps its own random sequence.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        before = build_model(cfg.model.name, after.classes, pretrained=cfg.model.pretrained, head_dropout=0.0,
                             head_hidden=cfg.model.head_hidden, image_size=cfg.model.image_size,
                             max_length=cfg.model.max_length, runs_dir=store.root, pooling=cfg.model.pooling,
                             feature_layer=cfg.model.feature_layer)
    shown = (load_configured(data_path, cfg, allowed_roots=allowed_roots) if data_path
             else prepare_data(cfg, allowed_roots=allowed_roots).splits.val)
    if shown.modality != after.modality:
        raise RunError(f"run {run_id} classifies {after.modality}s but {data_path} holds {shown.modality}s")
    parts = [("source", _thinned(shown, max_points))]
    if cfg.adapt.target:
        target = load_unlabelled(cfg.adapt.target, modality=after.modality, text_column=cfg.data.text_column,
                                 image_column=cfg.data.image_column, allowed_roots=allowed_roots)
        parts.append(("new domain", _thinned(target, max_points)))
    frames, feats_before, feats_after = [], [], []
    rule = run_rule(store, run_id)
    for domain, dataset in parts:
        samples = sample_set(after, dataset)
        f_before = _features(before, samples)
        f_after = _features(after, samples)
        with torch.no_grad():
            probs = torch.softmax(after.net.head_logits(f_after), dim=-1).numpy()
        predicted = predicted_classes(probs, after.classes, rule)
        labels = [s.label if s.label in after.classes else "" for s in dataset.samples]
        frames.append(pd.DataFrame({
            "id": [s.id for s in dataset.samples], "input": [str(s.input) for s in dataset.samples],
            "label": labels, "predicted": [after.classes[int(i)] for i in predicted], "domain": domain}))
        feats_before.append(f_before.numpy())
        feats_after.append(f_after.numpy())
    points = pd.concat(frames, ignore_index=True)
    points["correct"] = (points["label"] == points["predicted"]) | (points["label"] == "")
    points[["x_before", "y_before"]] = _reduce(np.concatenate(feats_before), method)
    points[["x_after", "y_after"]] = _reduce(np.concatenate(feats_after), method)
    return EmbeddingMap(run_id, method, points, list(after.classes))


def _thinned(dataset: Dataset, max_points: int) -> Dataset:
    """At most `max_points` samples, spread over the data set (the same ones every time)."""
    if len(dataset) <= max_points:
        return dataset
    keep = np.linspace(0, len(dataset) - 1, max_points).round().astype(int)
    return dataset.subset(sorted(set(keep.tolist())))


def _features(built, samples) -> torch.Tensor:
    return compute_features(built, samples, batch_size=64, device=torch.device("cpu"), amp_dtype=None)


def _reduce(features: np.ndarray, method: str) -> np.ndarray:
    """(N, D) -> (N, 2): PCA on standardised features, or t-SNE (perplexity fitted to small sets)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    if len(features) < 3:
        raise RunError(f"the map needs at least 3 samples, and the validation data holds {len(features)}")
    scaled = StandardScaler().fit_transform(features.astype(np.float64))
    if method == "pca":
        return PCA(n_components=2, random_state=0).fit_transform(scaled)
    perplexity = float(min(30, max(2, (len(scaled) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(scaled)


def map_figure(result: EmbeddingMap, *, escape=html.escape):
    """Before and after side by side (plotly): one colour per class, misclassified points as crosses, the new
    domain as open symbols; hover shows the sample. `escape` makes user text safe for Plotly's HTML."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Before training (the starting model)", "After training"))
    palette = ["#2f6fde", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#1098ad", "#e03131", "#5c940d", "#862e9c",
               "#495057"]
    points = result.points
    for k, label in enumerate([*result.classes, ""]):
        for domain in points["domain"].unique():
            part = points[(points["label"] == label) & (points["domain"] == domain)]
            if part.empty:
                continue
            name = escape(label or "unlabelled") + ("" if domain == "source" else f" ({domain})")
            symbols = ["x" if not ok else ("circle-open" if domain != "source" else "circle") for ok in part["correct"]]
            hover = [f"{escape(row.input[-80:])}<br>true {escape(row.label or '?')} · predicted {escape(row.predicted)}"
                     for row in part.itertuples()]
            for col, (x, y) in enumerate((("x_before", "y_before"), ("x_after", "y_after")), start=1):
                fig.add_scatter(x=part[x], y=part[y], mode="markers", name=name, legendgroup=name, showlegend=col == 1,
                                marker=dict(color=palette[k % len(palette)] if label else "#adb5bd", symbol=symbols,
                                            size=7, line=dict(width=1)),
                                hovertext=hover, hoverinfo="text", row=1, col=col)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.05),
                      title=f"Validation samples in the space the head reads ({result.method.upper()}); crosses: "
                            "misclassified")
    return fig


def write_map(result: EmbeddingMap, out: str | Path) -> Path:
    """A standalone HTML page (Plotly's JavaScript inside, no network needed to open it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    map_figure(result).write_html(str(out), include_plotlyjs=True, full_html=True)
    return out
