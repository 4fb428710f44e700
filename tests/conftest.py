"""Shared fixtures: small real data sets written to disk, and an isolated runs directory."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory):
    """scikit-learn's 8x8 digits as PNG files, 4 classes x 15 images, one folder per class."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    root = tmp_path_factory.mktemp("digits")
    for label in range(4):
        folder = root / f"digit_{label}"
        folder.mkdir()
        idx = np.flatnonzero(digits.target == label)[:15]
        for i in idx:
            pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((16, 16)).save(folder / f"{i}.png")
    return root


TOPIC_WORDS = {
    "sport": "match goal team player coach league score win season stadium",
    "tech": "software computer chip internet phone data code network device app",
    "food": "recipe cook kitchen bread cheese sauce bake dinner flavour spice",
}


@pytest.fixture(scope="session")
def topics_csv(tmp_path_factory):
    """A small text CSV: 3 topics x 20 short texts built from topic words (deterministic)."""
    import csv
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("topics") / "topics.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for label, words in TOPIC_WORDS.items():
            vocab = words.split()
            for _ in range(20):
                w.writerow([" ".join(rng.choice(vocab, size=8)), label])
    return path


@pytest.fixture
def store(tmp_path):
    from transfer_core.store import RunStore
    s = RunStore(tmp_path / "runs")
    yield s
    s.close()
