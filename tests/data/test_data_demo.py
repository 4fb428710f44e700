from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_core.data import dedupe, demo_sets, load_dataset
from transfer_core.data.demo import FASHION_CLASSES, FASHION_DIR
from transfer_core.errors import DataError

needs_fashion = pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Debian package dataset-fashion-mnist is not installed")


def test_demo_sets_describe_each():
    sets = {d["name"]: d for d in demo_sets()}
    assert set(sets) == {"demo:bbc-news", "demo:fashion-mnist", "demo:digits", "demo:digits-shifted"}
    assert sets["demo:bbc-news"]["modality"] == "text" and len(sets["demo:bbc-news"]["classes"]) == 5
    assert sets["demo:fashion-mnist"]["classes"] == list(FASHION_CLASSES)
    assert all(d["description"] for d in sets.values())


def test_bbc_news_all_files_including_the_non_utf8_one():
    ds = load_dataset("demo:bbc-news")
    assert ds.modality == "text" and len(ds) == 2225
    assert ds.classes == next(d["classes"] for d in demo_sets() if d["name"] == "demo:bbc-news")
    assert len(ds.classes) == 5 and {"business", "entertainment", "politics", "tech"} <= set(ds.classes)
    assert all(s.input.strip() for s in ds.samples)
    # The one file that is not UTF-8 has a cp1252 pound sign; it is decoded, not dropped.
    assert any("\u00a315.8m signing" in s.input for s in ds.samples)
    _, removed = dedupe(ds)
    assert removed == 98


def test_bbc_news_per_class_is_deterministic():
    a = load_dataset("demo:bbc-news?per_class=3")
    b = load_dataset("demo:bbc-news?per_class=3")
    assert len(a) == 15 and [s.id for s in a.samples] == [s.id for s in b.samples]
    assert [s.id for s in a.samples][:3] == ["business/001.txt", "business/002.txt", "business/003.txt"]


@pytest.mark.parametrize("spec,message", [
    ("demo:mnist", "Unknown demo set"),
    ("demo:bbc-news?per_class=0", "at least 1"),
    ("demo:bbc-news?per_class=abc", "at least 1"),
    ("demo:bbc-news?size=3", "Unknown demo option"),
    ("demo:fashion-mnist?per_class=7000", "6000 or fewer"),
])
def test_bad_demo_specs(spec, message):
    with pytest.raises(DataError, match=message):
        load_dataset(spec)


def test_modality_check_applies_to_demos():
    with pytest.raises(DataError, match="text data but image data was expected"):
        load_dataset("demo:bbc-news?per_class=1", modality="image")


@needs_fashion
def test_fashion_mnist_materialises_pngs_once(isolated_cache):
    ds = load_dataset("demo:fashion-mnist?per_class=5")
    assert ds.modality == "image" and len(ds) == 50
    assert ds.class_counts() == {c: 5 for c in FASHION_CLASSES}
    folder = isolated_cache / "demo" / "fashion-mnist-5"
    assert folder.is_dir() and not list(folder.parent.glob(".fashion-mnist-*"))
    first = Path(ds.samples[0].input)
    assert first.is_relative_to(folder)
    with Image.open(first) as im:
        assert im.size == (28, 28) and im.mode == "L"
    stamp = first.stat().st_mtime_ns
    again = load_dataset("demo:fashion-mnist?per_class=5")
    assert [s.id for s in again.samples] == [s.id for s in ds.samples] and first.stat().st_mtime_ns == stamp


@needs_fashion
def test_fashion_mnist_subset_is_deterministic_across_caches(tmp_path, monkeypatch):
    ids = []
    for name in ("c1", "c2"):
        monkeypatch.setenv("TRANSFER_CORE_CACHE", str(tmp_path / name))
        ids.append([s.id for s in load_dataset("demo:fashion-mnist?per_class=2").samples])
    assert ids[0] == ids[1]


def test_fashion_mnist_missing_files_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr("transfer_core.data.demo.FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("demo:fashion-mnist?per_class=2")


def test_digits_and_their_shifted_domain_are_other_images_of_the_same_classes():
    source, target = load_dataset("demo:digits"), load_dataset("demo:digits-shifted")
    assert source.classes == target.classes == [str(d) for d in range(10)]
    assert (len(source), len(target)) == (899, 898)
    assert not {Path(s.input).name for s in source.samples} & {Path(s.input).name for s in target.samples}
    light = np.asarray(Image.open(source.samples[0].input))
    dark = np.asarray(Image.open(target.samples[0].input))
    assert light.shape == dark.shape == (32, 32)
    # Light strokes on black against dark strokes on white: the borders tell the domains apart.
    border = lambda a: np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean()  # noqa: E731
    assert border(light) < 30 < 150 < border(dark)
    again = load_dataset("demo:digits-shifted?per_class=3")
    assert len(again) == 30 and again.source == "demo:digits-shifted?per_class=3"
