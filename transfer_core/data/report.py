"""The data report: what is in a dataset and what will go wrong if it is trained on as is."""
from __future__ import annotations

import dataclasses
import os
import statistics
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from ..errors import DataError
from .hashing import content_key
from .images import check_image, image_info
from .splits import case_variants
from .types import Dataset, Splits

FEW_SAMPLES = 10          # below this per class, a warning: too few to learn the class well
IMBALANCE_WARNING = 10.0  # largest/smallest class
TINY_SIDE = 24            # pixels; smaller images are blown up and blurry at model resolution (28 px MNIST-style sets pass)
TRUNCATION_WARNING = 0.25
MAX_CHARS_PER_TOKEN = 100  # WordPiece's longest word (a longer one becomes a single unknown token)
TOKEN_SAMPLE = 5000       # token statistics are estimated from at most this many texts
# Above this a run's per-class outputs (probabilities per sample, the confusion matrix) grow into
# hundreds of MB and the page's charts stop being readable; ImageNet's 1,000 classes still fit.
MAX_CLASSES = 1000


Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    level: Level
    code: str
    message: str  # one plain sentence saying what is wrong
    fix: str      # one plain sentence saying what to do


@dataclass
class DataReport:
    modality: str
    n_samples: int
    class_counts: dict[str, int]
    imbalance_ratio: float | None = None
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicate_groups: list[list[str]] = field(default_factory=list)   # ids that share one content
    conflicting_labels: list[list[str]] = field(default_factory=list) # duplicate groups whose labels differ
    leaked_ids: list[str] = field(default_factory=list)               # validation/test ids whose content is in training
    unreadable: list[tuple[str, str]] = field(default_factory=list)   # (id, reason)
    text_stats: dict | None = None
    image_stats: dict | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def unreadable_ids(self) -> list[str]:
        return [sample_id for sample_id, _ in self.unreadable]

    def add(self, level: Level, code: str, message: str, fix: str) -> None:
        self.findings.append(Finding(level, code, message, fix))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["unreadable"] = [list(u) for u in self.unreadable]
        d["ok"] = self.ok
        return d


def build_report(ds: Dataset, splits: Splits | None = None, *, tokenizer=None, max_length: int | None = None,
                 scan_images: bool = True) -> DataReport:
    """Count, check and measure `ds` (and how `splits` divides it); never raises for bad data."""
    report = DataReport(modality=ds.modality, n_samples=len(ds), class_counts=ds.class_counts())
    if not ds.samples:
        report.add("error", "empty", "The data set has no samples.", "Add labelled examples or choose other data.")
        return report
    keys = _keys_and_scan(ds, report, scan_images)
    _class_findings(report, splits)
    _duplicate_findings(ds, keys, report)
    if splits is not None:
        _leakage_findings(splits, ds.modality, report)
    if ds.modality == "text":
        _text_findings(ds, report, tokenizer, max_length)
    else:
        _image_findings(ds, report)
    for w in ds.warnings:
        report.add("info", "loader", w, "Fix the source data if this was not intended.")
    return report


def _keys_and_scan(ds: Dataset, report: DataReport, scan_images: bool) -> list[str]:
    """Content key per sample; for images also decode (or header-read) each file in parallel."""
    if ds.modality == "text":
        return [content_key(s, "text") for s in ds.samples]
    probe = check_image if scan_images else image_info

    def one(sample):
        try:
            return content_key(sample, "image"), probe(sample.input), None
        except DataError as e:
            return content_key(sample, "image"), None, str(e)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, ds.samples))
    sizes = []
    for sample, (_, size, error) in zip(ds.samples, results):
        if error:
            report.unreadable.append((sample.id, error))
        else:
            sizes.append(size)
    report.image_stats = _image_stats(sizes)
    return [key for key, _, _ in results]


def _class_findings(report: DataReport, splits: Splits | None) -> None:
    counts = report.class_counts
    if len(counts) < 2:
        report.add("error", "single_class", f"The data has only one class ('{next(iter(counts))}').",
            "Add examples of at least one more class; a classifier needs two or more.")
    if splits is None:
        tiny = [c for c, n in counts.items() if n < 2]
        if tiny:
            report.add("error", "class_too_small", f"Class(es) {_names(tiny)} have a single sample, too few to split into training and validation.",
                "Add samples to these classes or remove them.")
    else:
        report.split_counts = {name: part.class_counts() for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)) if part is not None}
        absent_train = [c for c in counts if c not in report.split_counts["train"]]
        absent_val = [c for c in report.split_counts["train"] if c not in report.split_counts["val"]]
        if absent_train:
            report.add("error", "class_missing_from_train", f"Class(es) {_names(absent_train)} have no training samples.",
                "Add training samples for these classes or remove them.")
        if absent_val:
            report.add("warning", "class_missing_from_val", f"Class(es) {_names(absent_val)} have no validation samples, so their accuracy cannot be measured.",
                "Add validation samples for these classes or let the app split the training data.")
    if len(counts) > MAX_CLASSES:
        report.add("error", "too_many_classes", f"The data has {len(counts):,} classes, more than the limit of {MAX_CLASSES:,}.",
            f"Merge related classes or train on a subset of at most {MAX_CLASSES:,} classes.")
    variants = case_variants(counts)
    if variants:
        shown = "; ".join(" and ".join(f"'{c}'" for c in group) for group in variants[:5])
        more = f" (and {len(variants) - 5} more group(s))" if len(variants) > 5 else ""
        report.add("warning", "case_only_labels", f"Labels {shown}{more} differ only in upper/lower case and count as separate classes.",
            "If they name one class, turn on merging labels that differ only in case (data.merge_case=true); "
            "otherwise rename them so they differ by more than case.")
    few = [c for c, n in counts.items() if 2 <= n < FEW_SAMPLES]
    if few:
        report.add("warning", "few_samples", f"Class(es) {_names(few)} have fewer than {FEW_SAMPLES} samples, too few to learn them reliably.",
            f"Add samples so every class has at least {FEW_SAMPLES}, ideally 50 or more.")
    if counts:
        report.imbalance_ratio = round(max(counts.values()) / min(counts.values()), 2)
        if report.imbalance_ratio >= IMBALANCE_WARNING:
            big, small = max(counts, key=lambda c: counts[c]), min(counts, key=lambda c: counts[c])
            report.add("warning", "imbalance", f"Class '{big}' has {report.imbalance_ratio:g} times as many samples as class '{small}'.",
                "Turn on class balance (train.class_balance: weighted_loss or balanced_sampler), add samples to the "
                "small classes, or cap the large ones with a maximum number of samples per class.")


def _duplicate_findings(ds: Dataset, keys: list[str], report: DataReport) -> None:
    groups: dict[str, list] = defaultdict(list)
    for s, key in zip(ds.samples, keys):
        groups[key].append(s)
    for members in groups.values():
        if len(members) > 1:
            report.duplicate_groups.append([s.id for s in members])
            if len({s.label for s in members}) > 1:
                report.conflicting_labels.append([s.id for s in members])
    if report.duplicate_groups:
        extra = sum(len(g) - 1 for g in report.duplicate_groups)
        report.add("warning", "duplicates", f"{extra} sample(s) are exact copies of others (e.g. {_names(report.duplicate_groups[0][:2])}).",
            "Nothing, if they are accidental copies: duplicate removal (on by default) drops them before splitting. "
            "If they should be different examples, check the files.")
    if report.conflicting_labels:
        report.add("warning", "conflicting_labels", f"{len(report.conflicting_labels)} group(s) of identical samples carry different labels (e.g. {_names(report.conflicting_labels[0][:2])}).",
            "Correct the labels so each example has one class.")


def _leakage_findings(splits: Splits, modality: str, report: DataReport) -> None:
    # Hashed afresh (image hashes are cached): a user's validation file may reuse ids such as "row 1".
    train_keys = {content_key(s, modality) for s in splits.train.samples}
    for part in (splits.val, splits.test):
        if part is not None:
            report.leaked_ids += [s.id for s in part.samples if content_key(s, modality) in train_keys]
    if report.leaked_ids:
        report.add("warning", "leakage", f"{len(report.leaked_ids)} validation/test sample(s) also appear in the training data, so scores will look better than they are.",
            "Turn duplicate removal on (it is on by default) or remove these copies from the validation data.")


def _text_findings(ds: Dataset, report: DataReport, tokenizer, max_length: int | None) -> None:
    chars = [len(s.input) for s in ds.samples]
    report.text_stats = {"chars": _summary(chars)}
    if tokenizer is None:
        return
    if max_length is None:
        model_max = getattr(tokenizer, "model_max_length", 512)
        max_length = model_max if model_max and model_max < 100_000 else 512
    step = max(1, len(ds.samples) // TOKEN_SAMPLE)
    # Tokenizing a megabyte-long row takes seconds. A token rarely spans more than MAX_CHARS_PER_TOKEN
    # characters, so the first max_length * MAX_CHARS_PER_TOKEN characters of ordinary text hold more than
    # max_length tokens: the truncation share stays right, and such a row's count is a lower bound.
    clip = max_length * MAX_CHARS_PER_TOKEN
    texts = [s.input[:clip] for s in ds.samples[::step]]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    share = sum(n > max_length for n in lengths) / len(lengths)
    report.text_stats.update(tokens=_summary(lengths), max_length=max_length, truncated_share=round(share, 4),
                             token_sample=len(lengths))
    if share > 0:
        report.add("warning" if share >= TRUNCATION_WARNING else "info", "truncation",
            f"{share:.0%} of texts are longer than {max_length} tokens and will be cut.",
            f"Raise the maximum text length (e.g. to {min(512, max_length * 2)} tokens) if the end of long texts matters.")


def _image_findings(ds: Dataset, report: DataReport) -> None:
    if report.unreadable:
        level: Level = "error" if len(report.unreadable) == len(ds) else "warning"
        report.add(level, "unreadable", f"{len(report.unreadable)} image(s) cannot be read (e.g. {report.unreadable[0][0]}).",
            "Re-export or delete them; training leaves them out.")
        bad = set(report.unreadable_ids)
        readable = {s.label for s in ds.samples if s.id not in bad}
        lost = [c for c in report.class_counts if c not in readable]
        if lost and level != "error":   # when nothing can be read, the finding above already says it all
            report.add("warning", "class_unreadable", f"Class(es) {_names(lost)} have no readable image, so training leaves them out.",
                "Re-export these classes' images as JPEG or PNG, or remove the classes.")
    stats = report.image_stats or {}
    if stats.get("tiny", 0):
        report.add("warning", "tiny_images", f"{stats['tiny']} image(s) are smaller than {TINY_SIDE} pixels on a side.",
            "Use larger images if you have them; tiny ones are upscaled and blurry.")


def _image_stats(sizes: list[tuple[int, int]]) -> dict | None:
    if not sizes:
        return None
    tiny = sum(min(w, h) < TINY_SIDE for w, h in sizes)
    return {"width": _summary([w for w, _ in sizes]), "height": _summary([h for _, h in sizes]),
            "tiny": tiny, "tiny_share": round(tiny / len(sizes), 4), "tiny_side": TINY_SIDE}


def _summary(values: list[int]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "mean": round(statistics.fmean(values), 1), "max": max(values)}


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(f"'{c}'" for c in items[:5])
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")
