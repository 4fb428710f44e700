"""The embedding map (embedding.py): the validation samples before and after training in 2-D, on real runs of the
tiny models; training pulls the classes apart, the new domain is drawn with the source, and `embed` writes a
standalone page."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import silhouette_score
from test_cli import cli
from test_trainer import image_config

from transfer_core.embedding import embedding_map, map_figure
from transfer_core.errors import RunError
from transfer_core.events import RunStatus
from transfer_core.store import RunStore
from transfer_core.trainer import fit


@pytest.fixture(scope="module")
def digits_run(digits_folder, tmp_path_factory):
    """tiny_cnn from random weights, every layer trained: its 'before' is the random start."""
    store = RunStore(tmp_path_factory.mktemp("embed-runs"))
    result = fit(image_config(digits_folder, freeze__preset="full", train__epochs=6, data__val_fraction=0.4), store=store)
    assert result.status == RunStatus.COMPLETED and result.metrics["val_accuracy"] >= 0.9, result.metrics
    return store, result.run_id


def separation(points, side: str) -> float:
    return silhouette_score(points[[f"x_{side}", f"y_{side}"]].to_numpy(), points["label"])


def test_training_pulls_the_classes_apart(digits_run):
    store, run_id = digits_run
    result = embedding_map(store, run_id)
    points = result.points
    assert len(points) == 24 and set(points["domain"]) == {"source"}          # 40 % of 4 x 15
    assert set(points["label"]) == set(result.classes)
    assert points["correct"].mean() >= 0.9
    assert separation(points, "after") > separation(points, "before") + 0.2, (
        separation(points, "before"), separation(points, "after"))
    # The trained model's predictions, misclassified marked: the map agrees with the run's own validation.
    figure = map_figure(result)
    assert len(figure.data) == 2 * len(result.classes)        # one trace per class and side


def test_tsne_and_a_labelled_data_set_of_ones_own(digits_run, digits_folder):
    store, run_id = digits_run
    result = embedding_map(store, run_id, data_path=str(digits_folder), method="tsne")
    assert len(result.points) == 60 and np.isfinite(result.points[["x_after", "y_after"]].to_numpy()).all()
    with pytest.raises(RunError, match="pca, tsne"):
        embedding_map(store, run_id, method="umap")


def test_the_new_domain_is_drawn_with_the_source(digits_folder, store):
    result = fit(image_config(digits_folder, train__epochs=1, adapt__target=str(digits_folder), adapt__method="coral",
                              freeze__preset="full"), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    points = embedding_map(store, result.run_id).points
    assert set(points["domain"]) == {"source", "new domain"}
    assert (points.loc[points["domain"] == "new domain", "label"] == "").all()     # its labels are not used


def test_the_embed_command_writes_a_standalone_page(digits_run, tmp_path):
    store, run_id = digits_run
    proc = cli("embed", "--run", run_id, "--out", tmp_path / "map.html", runs_dir=store.root)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["points"] == 24 and out["method"] == "pca" and out["domains"] == ["source"]
    page = (tmp_path / "map.html").read_text(encoding="utf-8")
    assert "Before training" in page and "Plotly.newPlot" in page
    assert '<script src="http' not in page and len(page) > 1_000_000      # plotly.js inside: opens offline
