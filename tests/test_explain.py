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


def randomise_weights(net: torch.nn.Module) -> None:
    torch.manual_seed(0)
    for module in net.modules():
        if hasattr(module, "reset_parameters") and module is not net:
            module.reset_parameters()


def test_the_heatmap_changes_when_the_weights_are_randomised(corners, tmp_path):
    from scipy.stats import spearmanr
    _, store, run_id = corners
    path = tmp_path / "square.png"
    corner_image("top_left", 7003).save(path)
    built = load_run_model(store, run_id)
    trained = explain(built, str(path), target="top_left").heatmap
    randomise_weights(built.net)
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


# ---- vision transformers: Grad-CAM on the tokens the last block reads (TransferNet.token_layer) ----------

@pytest.fixture(scope="module")
def vit_corners(corners, tmp_path_factory):
    """A tiny Hugging Face ViT (8 px patches: a 4 x 4 grid at 32 px) trained on the corner squares."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
    root, store, _ = corners
    folder = tmp_path_factory.mktemp("tiny_vit")
    torch.manual_seed(0)
    config = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=len(CORNERS))
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(folder)
    result = fit(image_config(root, model__name=str(folder), model__image_size=SIZE, freeze__preset="full",
                              train__epochs=8), store=store)
    assert result.status == RunStatus.COMPLETED and result.metrics["val_accuracy"] == 1.0, result.metrics
    return store, result.run_id


def test_a_vision_transformer_is_explained_on_its_patch_grid(vit_corners, tmp_path):
    from scipy.stats import spearmanr
    store, run_id = vit_corners
    built = load_run_model(store, run_id)
    path = tmp_path / "square.png"
    corner_image("bottom_right", 7004).save(path)
    found = explain(built, str(path))
    assert found.predicted == "bottom_right" and found.map_size == (4, 4)       # one cell per patch
    assert found.heatmap.shape == (SIZE, SIZE) and found.heatmap.max() == pytest.approx(1.0)
    other = explain(built, str(path), target="top_left").heatmap
    randomise_weights(built.net)
    randomised = explain(built, str(path), target="bottom_right").heatmap
    # The map depends on the class asked about and on the trained weights (measured: -0.83 and -0.67). How well
    # it localises on this scratch-trained ViT varies by corner (docs/explanations.md), so that is not held here.
    assert spearmanr(found.heatmap.ravel(), other.ravel()).statistic < 0.5
    assert spearmanr(found.heatmap.ravel(), randomised.ravel()).statistic < 0.7


def test_torchvision_vit_has_a_token_grid_too(tmp_path):
    from transfer_core.models import build_model
    built = build_model("vit_b_16", ["a", "b"], pretrained=False, image_size=32)
    path = tmp_path / "square.png"
    corner_image("top_left", 1).save(path)
    found = explain(built, str(path))
    assert found.map_size == (2, 2) and found.heatmap.shape == (SIZE, SIZE)
