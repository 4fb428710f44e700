"""From a run config to training-ready splits and an honest data report.

The same steps run before training (trainer), in the app's data page and in
`python -m transfer_core report`, so what the user reads is what training uses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .data import build_report, dedupe, drop_ids, limit_per_class, load_dataset, make_splits
from .data.report import DataReport
from .data.splits import case_merge_map, label_counts, merge_labels
from .data.types import Dataset, Splits
from .errors import DataError
from .paths import check_allowed

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt", ".json")


@dataclass
class PreparedData:
    dataset: Dataset          # after dropping unreadable items, duplicates and per-class limits
    splits: Splits
    report: DataReport
    first_look: DataReport    # the report on the data as loaded (unreadable files, duplicates)
    notices: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return self.splits.train.classes

    @property
    def modality(self) -> str:
        return self.dataset.modality

    @property
    def fingerprint(self) -> str:
        parts = [self.splits.train.fingerprint(), self.splits.val.fingerprint()]
        if self.splits.test is not None:
            parts.append(self.splits.test.fingerprint())
        return "-".join(parts)

    def refresh_report(self, tokenizer=None, max_length: int | None = None) -> DataReport:
        """Recompute the report once the model's tokenizer is known (token counts, truncation)."""
        self.report = _final_report(self.first_look, self.dataset, self.splits, tokenizer, max_length)
        return self.report


def load_configured(path: str, cfg: RunConfig, *, allowed_roots: list | None = None) -> Dataset:
    """`path` loaded with the config's column choices; `allowed_roots` as for load_dataset (None: anywhere)."""
    d = cfg.data
    return load_dataset(path, text_column=d.text_column, label_column=d.label_column, image_column=d.image_column,
                        allowed_roots=allowed_roots)


def prepare_data(cfg: RunConfig, *, tokenizer=None, allowed_roots: list | None = None) -> PreparedData:
    """Load, clean, split and report. Raises DataError naming the first blocking problem; its `report`
    attribute then holds the data report as far as it got (None when the data could not be read).
    With `allowed_roots` (the web app), only files under those folders are read (see load_dataset)."""
    d = cfg.data
    dataset = load_configured(d.path, cfg, allowed_roots=allowed_roots)
    val_dataset = load_configured(d.val_path, cfg, allowed_roots=allowed_roots) if d.val_path.strip() else None
    test_dataset = load_configured(d.test_path, cfg, allowed_roots=allowed_roots) if d.test_path.strip() else None
    notices = list(dataset.warnings)
    if d.merge_case:
        # One mapping for both sets, so a validation "Cat" lands in the same class as a training "cat".
        merges = case_merge_map(label_counts(dataset, val_dataset, test_dataset))
        if merges:
            dataset = merge_labels(dataset, merges)
            val_dataset = merge_labels(val_dataset, merges) if val_dataset is not None else None
            test_dataset = merge_labels(test_dataset, merges) if test_dataset is not None else None
            notices.append("Labels differing only in case were merged: "
                           + ", ".join(f"'{a}' into '{b}'" for a, b in sorted(merges.items())))

    first_look = build_report(dataset, None, tokenizer=tokenizer, max_length=cfg.model.max_length)
    if not first_look.ok:
        raise _blocking(first_look)
    if first_look.unreadable_ids:
        before = dataset.class_counts()
        dataset = drop_ids(dataset, first_look.unreadable_ids, reason="unreadable")
        notices.append(f"{len(first_look.unreadable_ids)} unreadable files were skipped (see the data report)")
        lost = [c for c in before if c not in dataset.class_counts()]
        if lost:
            notices.append(f"Class(es) {_quoted(lost)} were left out: none of their files can be read")
    val_dataset, test_dataset = (_readable(given) for given in (val_dataset, test_dataset))
    if d.dedupe:
        before = dataset.class_counts()
        dataset, removed = dedupe(dataset)
        if removed:
            notices.append(f"{removed} exact duplicates were removed before splitting")
            _check_dedupe_left_enough(before, dataset, first_look, _parts_needed(d.test_fraction > 0, val_dataset is not None))
    if d.max_per_class:
        dataset = limit_per_class(dataset, d.max_per_class, seed=cfg.train.seed)

    try:
        splits = make_splits(dataset, val_dataset, test_ds=test_dataset, val_fraction=d.val_fraction,
                             test_fraction=d.test_fraction, seed=cfg.train.seed)
    except DataError as exc:
        _add_refusal(first_look, "not_splittable", str(exc))
        exc.report = first_look
        raise
    report = _final_report(first_look, dataset, splits, tokenizer, cfg.model.max_length)
    if not report.ok:
        raise _blocking(report)
    return PreparedData(dataset, splits, report, first_look, notices)


def _readable(given: Dataset | None) -> Dataset | None:
    """A validation or test file without its unreadable files."""
    if given is None:
        return None
    unreadable = build_report(given, None).unreadable_ids
    return drop_ids(given, unreadable, reason="unreadable") if unreadable else given


def _parts_needed(with_test: bool, given_val: bool) -> int:
    """Samples each training class needs for make_splits: one per part it is split into."""
    return (2 if with_test else 1) if given_val else (3 if with_test else 2)


def _check_dedupe_left_enough(before: dict[str, int], after: Dataset, first_look: DataReport, parts: int) -> None:
    """Refuse, saying why, when removing duplicates leaves a class too small to split: otherwise the
    split's message blames the class's size, though the data as given had enough samples."""
    counts = after.class_counts()
    shrunk = [c for c, n in before.items() if n >= parts and counts.get(c, 0) < parts]
    if not shrunk:
        return
    c = shrunk[0]
    others = f" ({len(shrunk) - 1} more class(es) too)" if len(shrunk) > 1 else ""
    left = counts.get(c, 0)
    message = (f"Class '{c}' has {before[c]} samples but only {left} left after exact duplicates were removed{others}; "
               f"each class needs at least {parts} different samples, so add different samples of it "
               "or turn duplicate removal off (data.dedupe=false).")
    _add_refusal(first_look, "duplicates_emptied_class", message)
    exc = DataError(message)
    exc.report = first_look
    raise exc


def _add_refusal(report: DataReport, code: str, message: str) -> None:
    """The refusal as an error finding, so a report printed beside it does not read as fine."""
    problem, _, fix = message.partition("; ")
    report.add("error", code, problem.rstrip(".") + ".", (fix[:1].upper() + fix[1:]) if fix else "")


def _quoted(items: list[str]) -> str:
    shown = ", ".join(f"'{c}'" for c in items[:5])
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _final_report(first_look: DataReport, dataset: Dataset, splits: Splits, tokenizer, max_length) -> DataReport:
    """The report on the cleaned, split data, keeping what the first look found in the raw data."""
    report = build_report(dataset, splits, tokenizer=tokenizer, max_length=max_length, scan_images=False)
    report.unreadable = list(first_look.unreadable)
    report.duplicate_groups = list(first_look.duplicate_groups)
    report.conflicting_labels = list(first_look.conflicting_labels)
    codes = {f.code for f in report.findings}
    report.findings = [f for f in first_look.findings if f.code not in codes] + report.findings
    return report


def _blocking(report: DataReport) -> DataError:
    first = report.errors[0]
    exc = DataError(f"{first.message} {first.fix}")
    exc.report = report   # so `report` and the Data page can still show everything else that was found
    return exc


def guess_modality(path: str, *, allowed_roots: list | None = None) -> str:
    """'image' or 'text' from the path alone (used to pick a default model); a CSV is read to tell."""
    if path.startswith("demo:"):
        return "text" if "bbc" in path else "image"
    if allowed_roots is not None:
        check_allowed(path, allowed_roots, what="data path")
    p = Path(path)
    if p.is_dir() or p.suffix.lower() == ".zip":
        return "image"
    if p.suffix.lower() in TEXT_SUFFIXES:
        return load_dataset(path, allowed_roots=allowed_roots).modality if p.suffix.lower() == ".csv" else "text"
    raise DataError(f"cannot tell what {path} holds; give an image folder or .zip, or a .csv/.tsv/.jsonl text file")
