from collections import Counter

import pytest

from datafiles import image_tree
from transfer_core.data import Dataset, Sample, dedupe, drop_ids, limit_per_class, load_dataset, make_splits, split_dataset
from transfer_core.errors import DataError


def text_ds(counts: dict[str, int], prefix="t") -> Dataset:
    samples = [Sample(id=f"row {i}", input=f"{prefix} {label} {j}", label=label)
               for i, (label, j) in enumerate(((label, j) for label, n in counts.items() for j in range(n)), start=1)]
    return Dataset(modality="text", samples=samples)


def ids(ds):
    return [s.id for s in ds.samples]


def test_split_is_stratified_and_covers_every_class():
    ds = text_ds({"a": 50, "b": 20, "c": 3})
    sp = split_dataset(ds, val_fraction=0.2, seed=0)
    assert Counter(sp.val.labels) == {"a": 10, "b": 4, "c": 1}
    assert Counter(sp.train.labels) == {"a": 40, "b": 16, "c": 2}
    assert set(ids(sp.train)).isdisjoint(ids(sp.val)) and len(sp.train) + len(sp.val) == len(ds)
    assert sp.test is None


def test_split_is_deterministic_per_seed():
    ds = text_ds({"a": 30, "b": 30})
    assert ids(split_dataset(ds, seed=1).val) == ids(split_dataset(ds, seed=1).val)
    assert ids(split_dataset(ds, seed=1).val) != ids(split_dataset(ds, seed=2).val)


def test_adding_a_class_leaves_other_classes_split_unchanged():
    base = split_dataset(text_ds({"a": 30, "b": 30}), seed=0)
    more = split_dataset(text_ds({"a": 30, "b": 30, "c": 10}), seed=0)
    assert [s.input for s in base.val.samples] == [s.input for s in more.val.samples if s.label != "c"]


def test_test_split_has_every_class():
    sp = split_dataset(text_ds({"a": 3, "b": 40}), val_fraction=0.2, test_fraction=0.1)
    assert set(sp.test.labels) == {"a", "b"} and set(sp.val.labels) == {"a", "b"} and set(sp.train.labels) == {"a", "b"}


def test_too_small_class_and_single_class():
    with pytest.raises(DataError, match=r"Class 'c' has 1 sample; each class needs at least 2.*add samples or remove the class"):
        split_dataset(text_ds({"a": 5, "c": 1}))
    with pytest.raises(DataError, match="needs at least 3"):
        split_dataset(text_ds({"a": 5, "c": 2}), test_fraction=0.1)
    with pytest.raises(DataError, match="only one class"):
        split_dataset(text_ds({"a": 5}))
    with pytest.raises(DataError, match="not usable"):
        split_dataset(text_ds({"a": 5, "b": 5}), val_fraction=0.7, test_fraction=0.3)


def test_user_validation_set():
    train, val = text_ds({"a": 10, "b": 10, "c": 4}), text_ds({"a": 3, "b": 2}, prefix="v")
    sp = make_splits(train, val)
    assert sp.train is train and ids(sp.val) == ids(val)
    assert any("'c'" in w and "no validation examples" in w for w in sp.val.warnings)
    sp = make_splits(train, val, test_fraction=0.25)
    assert set(sp.test.labels) == {"a", "b", "c"} and len(sp.train) + len(sp.test) == len(train)
    with pytest.raises(DataError, match="validation data has class 'z' which the training data lacks"):
        make_splits(train, text_ds({"a": 1, "z": 1}))


def test_make_splits_without_val_splits():
    sp = make_splits(text_ds({"a": 10, "b": 10}), None, val_fraction=0.3, seed=3)
    assert len(sp.val) == 6


def test_dedupe_text_keeps_first_and_strips():
    ds = Dataset(modality="text", samples=[Sample("row 1", "hello", "a"), Sample("row 2", " hello \n", "b"),
                                           Sample("row 3", "Hello", "a")])
    out, n = dedupe(ds)
    assert n == 1 and ids(out) == ["row 1", "row 3"] and ("row 2", "duplicate") in out.skipped


def test_dedupe_images_by_bytes(tmp_path):
    root = image_tree(tmp_path / "d", {"a": 2, "b": 1})
    (root / "b" / "copy.png").write_bytes((root / "a" / "0.png").read_bytes())
    out, n = dedupe(load_dataset(root))
    assert n == 1 and "b/copy.png" not in ids(out)


def test_limit_per_class_and_drop_ids():
    ds = text_ds({"a": 20, "b": 3})
    small = limit_per_class(ds, 5, seed=0)
    assert Counter(small.labels) == {"a": 5, "b": 3}
    assert ids(small) == sorted(ids(small), key=ids(ds).index)          # original order kept
    assert ids(limit_per_class(ds, 5, seed=0)) == ids(small) and limit_per_class(ds, 0) is ds
    dropped = drop_ids(ds, ["row 1", "row 2"], reason="unreadable")
    assert len(dropped) == len(ds) - 2 and ("row 1", "unreadable") in dropped.skipped
