"""Plotly figure builders. Pure functions of data frames and dicts, so they are easy to test."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .text import plot

TRAIN_COLOUR = "#2f6fde"
VAL_COLOUR = "#e8590c"
TARGET_COLOUR = "#2f9e44"   # the new domain of domain adaptation
LR_COLOUR = "#2b8a3e"
SPLIT_COLOURS = {"train": TRAIN_COLOUR, "val": VAL_COLOUR, "test": "#868e96"}


def _layout(fig: go.Figure, height: int = 320, **kwargs) -> go.Figure:
    settings = dict(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2),
                    hovermode="x unified")
    fig.update_layout(**{**settings, **kwargs})
    return fig


def category_axis(labels: list) -> dict:
    """Axis settings that keep class names as names. Plotly reads names like "0".."9" or "1".."5" as
    numbers: it would place them on a numeric scale, label only some ticks (0, 2, 4...) and drop
    names from horizontal bars. Every class gets its own tick, in the given order."""
    names = [str(x) for x in labels]
    return dict(type="category", categoryorder="array", categoryarray=names, tickmode="array",
                tickvals=names, ticktext=names)


def class_counts(counts: dict[str, int], split_counts: dict[str, dict[str, int]] | None = None) -> go.Figure:
    """Samples per class; stacked by split (train / val / test) when the split is known."""
    classes = list(counts)
    names = [plot(c) for c in classes]
    fig = go.Figure()
    if split_counts:
        for split, per_class in split_counts.items():
            fig.add_bar(name=split, x=names, y=[per_class.get(c, 0) for c in classes],
                        marker_color=SPLIT_COLOURS.get(split))
        fig.update_layout(barmode="stack")
    else:
        fig.add_bar(name="samples", x=names, y=[counts[c] for c in classes], marker_color=TRAIN_COLOUR)
    fig.update_xaxes(**category_axis(names))
    fig.update_yaxes(title="samples")
    return _layout(fig, title="Samples per class")


def _x(frame: pd.DataFrame, steps_per_epoch: int | None) -> pd.Series:
    """Position in epochs: a step's fraction of the way through training (epoch 1.5 = half-way through epoch 2)."""
    if steps_per_epoch:
        return frame["step"] / steps_per_epoch
    return frame["epoch"] + 1


def training_curves(epochs: pd.DataFrame, steps: pd.DataFrame, steps_per_epoch: int | None = None) -> go.Figure:
    """Loss, accuracy and learning rate side by side. Per-step training loss is drawn faintly,
    the per-epoch training and validation values as lines with markers."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Loss", "Accuracy", "Learning rate"), horizontal_spacing=0.07)
    if len(steps):
        xs = _x(steps, steps_per_epoch)
        fig.add_scatter(x=xs, y=steps["loss"], name="training loss (per step)", mode="lines",
                        line=dict(color=TRAIN_COLOUR, width=1), opacity=0.35, row=1, col=1)
        fig.add_scatter(x=xs, y=steps["lr"], name="learning rate", mode="lines", line=dict(color=LR_COLOUR),
                        showlegend=False, row=1, col=3)
    if len(epochs):
        xe = epochs["epoch"] + 1
        fig.add_scatter(x=xe, y=epochs["train_loss"], name="training", mode="lines+markers",
                        line=dict(color=TRAIN_COLOUR), legendgroup="train", row=1, col=1)
        fig.add_scatter(x=xe, y=epochs["val_loss"], name="validation", mode="lines+markers",
                        line=dict(color=VAL_COLOUR), legendgroup="val", row=1, col=1)
        fig.add_scatter(x=xe, y=epochs["train_accuracy"], name="training", mode="lines+markers",
                        line=dict(color=TRAIN_COLOUR), legendgroup="train", showlegend=False, row=1, col=2)
        fig.add_scatter(x=xe, y=epochs["val_accuracy"], name="validation", mode="lines+markers",
                        line=dict(color=VAL_COLOUR), legendgroup="val", showlegend=False, row=1, col=2)
        if "target_accuracy" in epochs and epochs["target_accuracy"].notna().any():   # domain adaptation
            fig.add_scatter(x=xe, y=epochs["target_accuracy"], name="new domain", mode="lines+markers",
                            line=dict(color=TARGET_COLOUR, dash="dot"), row=1, col=2)
        if not len(steps):
            fig.add_scatter(x=xe, y=epochs["lr"], name="learning rate", mode="lines+markers",
                            line=dict(color=LR_COLOUR), showlegend=False, row=1, col=3)
    if not len(epochs):
        fig.add_annotation(text="validation curves appear<br>after the first epoch", xref="x2 domain",
                           yref="y2 domain", x=0.5, y=0.5, showarrow=False, font=dict(color="#868e96"))
    fig.update_xaxes(title="epoch", rangemode="tozero")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_yaxes(exponentformat="e", row=1, col=3)
    fig.update_layout(hovermode="closest")
    return _layout(fig, height=340)


def compare_curves(frame: pd.DataFrame, metric: str, names: dict[str, str], title: str | None = None) -> go.Figure:
    """One line per run (frame from RunStore.metrics_for_runs, scope='epoch')."""
    fig = go.Figure()
    for run_id, part in frame.groupby("run_id", sort=False):
        fig.add_scatter(x=part["epoch"] + 1, y=part[metric], mode="lines+markers",
                        name=plot(names.get(run_id, run_id)))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title=metric.replace("_", " "))
    if "accuracy" in metric or "f1" in metric:
        # The whole 0-100 % scale: zoomed to the runs' own spread (say 75-79 %), noise between
        # epochs and runs would look like a trend.
        fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    return _layout(fig, title=plot(title or metric.replace("_", " ").capitalize()), hovermode="closest")


def confusion_matrix(matrix: list[list[int]], classes: list[str], normalise: bool = False,
                     title: str = "Confusion matrix (validation)") -> go.Figure:
    """Rows are the true classes, columns the predictions; the diagonal holds the correct ones."""
    z = [list(map(float, row)) for row in matrix]
    if normalise:
        z = [[v / s if (s := sum(row)) else 0.0 for v in row] for row in z]
    text = [[(f"{v:.0%}" if normalise else f"{int(v)}") for v in row] for row in z]
    names = [plot(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=text, texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>", showscale=False))
    fig.update_yaxes(autorange="reversed", title="true class", **category_axis(names))
    fig.update_xaxes(title="predicted class", side="bottom", **category_axis(names))
    size = max(320, min(900, 60 + 42 * len(classes)))
    return _layout(fig, height=size, title=plot(title))


def top_k(top: list[dict]) -> go.Figure:
    """Horizontal bars of the top-k labels, most likely on top."""
    labels = [plot(t["label"]) for t in top][::-1]
    probs = [t["probability"] for t in top][::-1]
    fig = go.Figure(go.Bar(x=probs, y=labels, orientation="h", marker_color=TRAIN_COLOUR,
                           text=[f"{p:.1%}" for p in probs], textposition="auto"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="probability")
    fig.update_yaxes(**category_axis(labels))
    return _layout(fig, height=max(200, 60 + 40 * len(labels)), title="Top predictions", hovermode="closest")


def layer_params(groups: list[dict]) -> go.Figure:
    """Parameters per layer group, coloured by whether the group trains."""
    names = [plot(g["group"]) for g in groups]
    colours = [TRAIN_COLOUR if g["trainable"] else "#ced4da" for g in groups]
    fig = go.Figure(go.Bar(x=names, y=[g["params"] for g in groups], marker_color=colours,
                           hovertemplate="%{x}: %{y:,} parameters<extra></extra>"))
    fig.update_yaxes(title="parameters", type="log" if max((g["params"] for g in groups), default=0) > 1000 else "linear")
    return _layout(fig, height=260, title="Parameters per layer group (blue: trains)", hovermode="closest")


def layer_probe(layers: list[dict], best: str) -> go.Figure:
    """Validation accuracy of a linear head on each layer group's output (probe.ProbeResult), input to output."""
    names = [plot(row["layer"]) for row in layers]
    colours = [VAL_COLOUR if row["layer"] == best else "#ced4da" for row in layers]
    fig = go.Figure(go.Bar(x=names, y=[row["val_accuracy"] for row in layers], marker_color=colours,
                           customdata=[row["features"] for row in layers],
                           hovertemplate="%{x}: %{y:.1%} (%{customdata} features)<extra></extra>"))
    fig.update_yaxes(title="validation accuracy", range=[0, 1.02], tickformat=".0%")
    fig.update_xaxes(title="layer group the head reads (input → output)")
    return _layout(fig, height=300, title="A linear head on each layer's features", hovermode="closest")


def precision_recall(curve: pd.DataFrame, positive: str, chosen: dict, default: dict) -> go.Figure:
    """The precision-recall curve of the class to find (decision.ValidationScores.curve), with the chosen
    threshold's point and the default 0.5's."""
    fig = go.Figure(go.Scatter(x=curve["recall"], y=curve["precision"], mode="lines", line=dict(color=TRAIN_COLOUR),
                               customdata=curve["threshold"], name="every threshold",
                               hovertemplate="threshold %{customdata:.3f}<br>recall %{x:.1%}<br>precision %{y:.1%}"
                                             "<extra></extra>"))
    for point, colour, name in ((default, "#868e96", "0.5 (default)"), (chosen, VAL_COLOUR, "chosen")):
        fig.add_scatter(x=[point["recall"]], y=[point["precision"]], mode="markers", name=f"{name}: {point['threshold']:.3f}",
                        marker=dict(color=colour, size=12), hovertemplate="recall %{x:.1%}<br>precision %{y:.1%}<extra></extra>")
    fig.update_xaxes(title=plot(f"recall: share of '{positive}' found"), range=[0, 1.02], tickformat=".0%")
    fig.update_yaxes(title="precision: share of alarms that are right", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, height=340, title="Precision and recall on the validation data", hovermode="closest")


def range_test(result) -> go.Figure:
    """The loss of each step of the learning-rate range test (lr_find.RangeTest) against its rate, with the suggestion."""
    fig = go.Figure()
    fig.add_scatter(x=result.lrs, y=result.losses, mode="lines", name="loss at each step", opacity=0.35,
                    line=dict(color=TRAIN_COLOUR))
    finite = [(lr, loss) for lr, loss in zip(result.lrs, result.smoothed) if math.isfinite(loss)]
    fig.add_scatter(x=[p[0] for p in finite], y=[p[1] for p in finite], mode="lines", name="smoothed",
                    line=dict(color=TRAIN_COLOUR, width=3))
    if result.suggested_lr is not None:
        fig.add_vline(x=result.suggested_lr, line=dict(color=VAL_COLOUR, dash="dash"),
                      annotation_text=f"suggested {result.suggested_lr:.2g}")
    lowest = min((p[1] for p in finite), default=1.0)
    fig.update_xaxes(type="log", title="learning rate (of the head)", exponentformat="power")
    fig.update_yaxes(title="training loss", range=[0, max(4 * lowest, 0.1)])
    return _layout(fig, height=320, title="Loss as the learning rate grows", hovermode="closest")


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x)
