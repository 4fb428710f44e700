"""Dataset transforms before training: dedupe, cap per class, drop bad samples, split."""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Iterable

import numpy as np

from ..errors import DataError
from .hashing import content_key
from .types import Dataset, Splits


def dedupe(ds: Dataset) -> tuple[Dataset, int]:
    """Keep the first sample of each content; return the new dataset and how many were removed."""
    seen: set[str] = set()
    keep, removed = [], []
    for i, s in enumerate(ds.samples):
        key = content_key(s, ds.modality)
        if key in seen:
            removed.append(s.id)
        else:
            seen.add(key)
            keep.append(i)
    out = ds.subset(keep)
    if removed:
        # Listed as skipped, not as a warning: the data report already has a finding for the copies,
        # and a second one (about their removal) would show the same thing twice.
        out.skipped.extend((sample_id, "duplicate") for sample_id in removed)
    return out, len(removed)


def case_variants(labels: Iterable[str]) -> list[list[str]]:
    """Groups (sorted, two or more) of distinct labels that differ only in upper/lower case."""
    groups: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        groups[label.casefold()].add(label)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def case_merge_map(counts: dict[str, int]) -> dict[str, str]:
    """{label: the spelling it merges into} for each label with case-only variants; the spelling
    with the most samples wins (ties: the first in sort order), so most samples keep their label."""
    mapping = {}
    for group in case_variants(counts):
        keep = max(group, key=lambda c: (counts[c], [-ord(ch) for ch in c]))
        mapping.update({c: keep for c in group if c != keep})
    return mapping


def merge_labels(ds: Dataset, mapping: dict[str, str]) -> Dataset:
    """The dataset with each label in `mapping` replaced by its target."""
    samples = [replace(s, label=mapping[s.label]) if s.label in mapping else s for s in ds.samples]
    return Dataset(modality=ds.modality, samples=samples, source=ds.source, warnings=list(ds.warnings),
                   skipped=list(ds.skipped))


def label_counts(*datasets: Dataset | None) -> dict[str, int]:
    counts: Counter = Counter()
    for ds in datasets:
        if ds is not None:
            counts.update(ds.labels)
    return dict(counts)


def drop_ids(ds: Dataset, ids: Iterable[str], reason: str = "removed") -> Dataset:
    """The dataset without the samples whose id is in `ids`; they are listed in `skipped`."""
    drop = set(ids)
    out = ds.subset([i for i, s in enumerate(ds.samples) if s.id not in drop])
    out.skipped.extend((s.id, reason) for s in ds.samples if s.id in drop)
    return out


def _by_class(ds: Dataset) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(ds.samples):
        groups[s.label].append(i)
    return {c: groups[c] for c in sorted(groups)}


def _rng(seed: int, label: str) -> np.random.Generator:
    # One stream per class, so adding or removing a class leaves the others' splits unchanged.
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).digest()
    return np.random.default_rng([seed & 0xFFFFFFFF, int.from_bytes(digest[:4], "big")])


def limit_per_class(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """At most `n` random samples per class (n <= 0: all), kept in their original order."""
    if n <= 0:
        return ds
    keep: list[int] = []
    for label, idx in _by_class(ds).items():
        keep += idx if len(idx) <= n else _rng(seed, label).choice(idx, size=n, replace=False).tolist()
    return ds.subset(sorted(keep))


def _require_splittable(ds: Dataset, parts: int) -> None:
    counts = ds.class_counts()
    if not counts:
        raise DataError("The data set is empty; add labelled examples.")
    if len(counts) < 2:
        raise DataError(f"The data has only one class ('{next(iter(counts))}'); a classifier needs at least two, so add examples of another class.")
    small = [(c, n) for c, n in counts.items() if n < parts]
    if small:
        c, n = small[0]
        where = "training and validation" if parts == 2 else "training, validation and test"
        others = f" ({len(small) - 1} more class(es) too)" if len(small) > 1 else ""
        raise DataError(f"Class '{c}' has {n} sample{'s' if n != 1 else ''}{others}; each class needs at least {parts} "
                        f"(one each for {where}), so add samples or remove the class.")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(f"Validation share {val_fraction} and test share {test_fraction} are not usable; "
                        "use a validation share between 0 and 1 and leave some data for training.")


def split_dataset(ds: Dataset, *, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0) -> Splits:
    """Stratified split that puts at least one sample of every class in every part.

    Done per class rather than with sklearn's stratified splitter, which can leave
    small classes out of validation and fails when a share is smaller than the
    number of classes.
    """
    _check_fractions(val_fraction, test_fraction)
    with_test = test_fraction > 0
    _require_splittable(ds, 3 if with_test else 2)
    train, val, test = [], [], []
    for label, idx in _by_class(ds).items():
        order = _rng(seed, label).permutation(idx).tolist()
        n = len(order)
        n_test = min(max(1, int(n * test_fraction + 0.5)), n - 2) if with_test else 0
        n_val = min(max(1, int(n * val_fraction + 0.5)), n - n_test - 1)
        val += order[:n_val]
        test += order[n_val:n_val + n_test]
        train += order[n_val + n_test:]
    return Splits(train=ds.subset(sorted(train)), val=ds.subset(sorted(val)),
                  test=ds.subset(sorted(test)) if with_test else None)


def make_splits(train_ds: Dataset, val_ds: Dataset | None = None, *, test_ds: Dataset | None = None,
                val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0) -> Splits:
    """Use the given validation set when there is one (a test set is then split off training), else split.
    A given test set is used as it is (test_fraction is then not used)."""
    if test_ds is not None:
        _check_given(test_ds, train_ds, "test")
        rest = make_splits(train_ds, val_ds, val_fraction=val_fraction, seed=seed)
        return Splits(train=rest.train, val=rest.val, test=_given_part(test_ds, rest.train, "test"))
    if val_ds is None:
        return split_dataset(train_ds, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    _check_given(val_ds, train_ds, "validation")
    if test_fraction > 0:
        parts = split_dataset(train_ds, val_fraction=test_fraction, seed=seed)
        train, test = parts.train, parts.val
    else:
        _require_splittable(train_ds, 1)
        train, test = train_ds, None
    return Splits(train=train, val=_given_part(val_ds, train, "validation"), test=test)


def _check_given(given: Dataset, train_ds: Dataset, role: str) -> None:
    """A validation or test file that can measure a model trained on `train_ds`."""
    path = "validation" if role == "validation" else "test"
    if given.modality != train_ds.modality:
        raise DataError(f"The {role} data holds {given.modality} but the training data holds {train_ds.modality}; use the same kind for both.")
    if len(given) == 0:
        raise DataError(f"The {role} data is empty; add labelled examples or leave the {path} path empty to split the training data.")
    unknown = sorted(set(given.classes) - set(train_ds.classes))
    if unknown:
        raise DataError(f"The {role} data has class '{unknown[0]}' which the training data lacks; "
                        "rename it to a training class or add training examples of it.")


def _given_part(given: Dataset, train: Dataset, role: str) -> Dataset:
    part = given.subset(range(len(given)))
    missing = sorted(set(train.classes) - set(part.classes))
    if missing:
        part.warnings.append(f"Class(es) {', '.join(repr(c) for c in missing[:5])} have no {role} examples, so their accuracy cannot be measured.")
    return part
