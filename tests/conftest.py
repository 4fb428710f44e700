"""Shared fixtures: small real data sets written to disk, and an isolated runs directory."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Helper modules shared by several test folders (datafiles.py, apphelpers.py) live beside this file.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def pages_without_gate(monkeypatch):
    """AppTest runs the page scripts without the server, so without its access gate (app/access.py); like
    an app behind its own authentication, they run with the token turned off. The gate's own tests
    (tests/hardening/test_access.py, the browser tests) run the real server with a token."""
    monkeypatch.setenv("TRANSFER_STUDIO_NO_TOKEN", "1")
    monkeypatch.delenv("TRANSFER_STUDIO_TOKEN", raising=False)


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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("transfer_cache")


@pytest.fixture
def app_env(tmp_path, monkeypatch, cache_dir, tmp_path_factory):
    """For AppTest: runs, uploads and caches in temporary folders; fresh st.cache_* and JobManager per test.
    The tests' own data folders (under pytest's base temp) count as allowed roots of the app."""
    import streamlit as st
    import torch

    from app.resources import shutdown_all

    monkeypatch.setenv("TRANSFER_CORE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TRANSFER_APP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TRANSFER_CORE_CACHE", str(cache_dir))
    monkeypatch.setenv("TRANSFER_APP_EXTRA_ROOTS", str(tmp_path_factory.getbasetemp()))
    # The app caps torch threads; in the test process keep whatever the other tests use.
    monkeypatch.setenv("TRANSFER_APP_TORCH_THREADS", str(torch.get_num_threads()))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    shutdown_all()
    st.cache_resource.clear()
    st.cache_data.clear()
