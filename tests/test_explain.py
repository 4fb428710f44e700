"""Explanations (explain.py) held to sanity checks from the literature, on real training runs: the heatmap of a
model that learned "a bright square in one corner" falls on the square; it changes when the weights are
randomised (Adebayo et al. 2018); a planted word that decides a text's label gets the highest attribution."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import cli
from test_trainer import image_config, text_config

from transfer_core.errors import RunError
from transfer_core.events import RunStatus
from transfer_core.explain import explain, overlay
from transfer_core.runs import explain_run, load_run_model
from transfer_core.store import RunStore
from transfer_core.trainer import fit

SIZE, SQUARE = 32, 10
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def corner_image(corner: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, size=(SIZE, SIZE, 3), dtype=np.uint8)
    far = SIZE - 2 - SQUARE
    top = 2 if corner.startswith("top") else far
    left = 2 if corner.endswith("left") else far
    pixels[top:top + SQUARE, left:left + SQUARE] = 255
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def corners(tmp_path_factory):
    """The label is the corner the bright square is in, on dim noise."""
    root = tmp_path_factory.mktemp("corners")
    for k, corner in enumerate(CORNERS):
        (root / corner).mkdir()
        for i in range(30):
            corner_image(corner, 1000 * k + i).save(root / corner / f"{i}.png")
    store = RunStore(tmp_path_factory.mktemp("corner-runs"))
    result = fit(image_config(root, model__image_size=SIZE, freeze__preset="full", train__epochs=6), store=store)
    assert result.status == RunStatus.COMPLETED and result.metrics["val_accuracy"] == 1.0, result.metrics
    return root, store, result.run_id


def share_on_square(heatmap: np.ndarray, corner: str) -> float:
    """The heatmap's share in the square's quarter of the image (a quarter when it is spread evenly)."""
    half = SIZE // 2
    rows = slice(0, half) if corner.startswith("top") else slice(half, SIZE)
    columns = slice(0, half) if corner.endswith("left") else slice(half, SIZE)
    return float(heatmap[rows, columns].sum() / heatmap.sum())


def test_the_heatmap_falls_on_the_square_that_decides_the_label(corners, tmp_path):
    _, store, run_id = corners
    built = load_run_model(store, run_id)
    for seed, corner in enumerate(CORNERS, start=7001):
        path = tmp_path / f"{corner}.png"
        corner_image(corner, seed).save(path)
        found = explain(built, str(path))
        assert found.predicted == corner and found.heatmap.shape == (SIZE, SIZE)
        assert 0 <= found.heatmap.min() and found.heatmap.max() == pytest.approx(1.0)
        assert share_on_square(found.heatmap, corner) > 0.6, corner      # a quarter of the image
        assert overlay(found).size == (SIZE, SIZE)


def test_the_heatmap_changes_when_the_weights_are_randomised(corners, tmp_path):
    from scipy.stats import spearmanr
    _, store, run_id = corners
    path = tmp_path / "square.png"
    corner_image("top_left", 7003).save(path)
    built = load_run_model(store, run_id)
    trained = explain(built, str(path), target="top_left").heatmap
    torch.manual_seed(0)
    for module in built.net.modules():
        if hasattr(module, "reset_parameters") and module is not built.net:
            module.reset_parameters()
    randomised = explain(built, str(path), target="top_left").heatmap
    # A heatmap that did not depend on the weights would rank the pixels alike (1.0). A random network's
    # filters still react to the one bright square of the image, so some likeness remains (measured: 0.52).
    rho = spearmanr(trained.ravel(), randomised.ravel()).statistic
    assert rho < 0.7, rho


def test_another_class_can_be_explained_and_an_unknown_one_is_refused(corners, tmp_path):
    _, store, run_id = corners
    path = tmp_path / "square.png"
    corner_image("bottom_right", 7004).save(path)
    built = load_run_model(store, run_id)
    other = explain(built, str(path), target="top_left")
    assert other.predicted == "bottom_right" and other.target == "top_left"
    assert other.target_probability < 0.5
    with pytest.raises(RunError, match="no class 'middle'"):
        explain(built, str(path), target="middle")
    with pytest.raises(RunError, match="image model"):
        explain(built, "a sentence\nacross lines")


PLANTED = {"north": "harbor", "south": "meadow"}
FILLER = "the a of on with near after before under over small large old new quiet busy".split()


@pytest.fixture(scope="module")
def planted_csv(tmp_path_factory):
    """The label is decided by one planted word among shared filler words."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("planted") / "planted.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for label, word in PLANTED.items():
            for _ in range(40):
                words = list(rng.choice(FILLER, size=7))
                words.insert(int(rng.integers(0, 8)), word)
                writer.writerow([" ".join(words), label])
    return path


def test_the_planted_word_gets_the_highest_attribution(planted_csv, store):
    result = fit(text_config(planted_csv, train__epochs=6, optim__lr=0.002), store=store)
    assert result.status == RunStatus.COMPLETED and result.metrics["val_accuracy"] == 1.0, result.metrics
    built = load_run_model(store, result.run_id)
    for label, word in PLANTED.items():
        found = explain(built, f"the quiet {word} near an old small place")
        assert found.predicted == label
        top = max(found.tokens, key=lambda t: t[1])
        assert top[0] == word, found.tokens


def test_the_explain_command_writes_heatmaps_and_prints_a_line_per_input(corners, tmp_path):
    root, store, run_id = corners
    images = [str(next((root / corner).glob("*.png"))) for corner in ("top_left", "bottom_right")]
    proc = cli("explain", "--run", run_id, "--out", tmp_path / "out", *images, runs_dir=store.root)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["predicted"] for r in rows] == ["top_left", "bottom_right"]
    for row in rows:
        assert Image.open(row["file"]).size == (SIZE, SIZE) and 0 < row["probability"] <= 1
    refused = cli("explain", "--run", run_id, "--target-class", "middle", images[0], runs_dir=store.root, check=False)
    assert refused.returncode == 2 and "no class 'middle'" in refused.stderr


def test_explain_run_holds_images_to_the_app_folders(corners, tmp_path):
    root, store, run_id = corners
    image = str(next((root / "top_left").glob("*.png")))
    with pytest.raises(RunError, match="outside"):
        explain_run(store, run_id, [image], allowed_roots=[tmp_path])
