"""AppTest fixtures: small data (the isolated app_env fixture is in tests/conftest.py)."""
from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from apphelpers import SHAPES, shape_image  # noqa: E402


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory) -> Path:
    """3 classes x 12 small PNGs, one folder per class."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    for k, kind in enumerate(SHAPES):
        (root / kind).mkdir(parents=True)
        for i in range(12):
            shape_image(kind, 100 * k + i).save(root / kind / f"{kind}_{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def shapes_zip(shapes_folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(shapes_folder.rglob("*.png")):
            zf.write(f, f"shapes/{f.parent.name}/{f.name}")
    return buf.getvalue()


TOPICS = {
    "sport": "match goal team player coach league score win season stadium",
    "tech": "software computer chip internet phone data code network device app",
    "food": "recipe cook kitchen bread cheese sauce bake dinner flavour spice",
}


@pytest.fixture(scope="session")
def topics_csv(tmp_path_factory) -> Path:
    """3 topics x 15 short texts; columns named so that they are not auto-detected (sentence/topic work)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("topics") / "topics.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "sentence", "topic"])
        n = 0
        for label, words in TOPICS.items():
            for _ in range(15):
                n += 1
                w.writerow([n, " ".join(rng.choice(words.split(), size=8)), label])
    return path
