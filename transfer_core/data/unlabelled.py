"""Unlabelled data from a new domain (domain adaptation's target): images or texts whose labels, if any, are
not used. Labelled data in any format load_dataset reads is accepted too; then its labels are dropped."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..paths import check_allowed
from .folders import _images_below, unwrap
from .images import check_image
from .loaders import extract_cached, load_dataset
from .tables import TABLE_EXTENSIONS, TEXT_NAMES, find_column, read_table
from .types import Dataset, Sample

UNLABELLED = ""   # the label of every unlabelled sample (batching maps it to target -1)


def load_unlabelled(path: str, *, modality: str, text_column: str = "", image_column: str = "",
                    allowed_roots: Sequence[str | Path] | None = None) -> Dataset:
    """`path` as unlabelled `modality` samples: a folder or .zip of images (in class folders or not), a table
    with a text column, or anything load_dataset reads (its labels dropped). Unreadable images are left out."""
    spec = str(path).strip()
    try:
        dataset = load_dataset(spec, modality=modality, text_column=text_column, image_column=image_column,
                               allowed_roots=allowed_roots)
    except DataError as labelled_error:
        dataset = _without_labels(spec, modality, text_column, allowed_roots, labelled_error)
    samples = [Sample(id=s.id, input=s.input, label=UNLABELLED) for s in dataset.samples]
    skipped = list(dataset.skipped)
    if modality == "image":
        readable = []
        for s in samples:
            try:
                check_image(s.input)
                readable.append(s)
            except DataError as e:
                skipped.append((s.id, str(e)))
        samples = readable
    if not samples:
        raise DataError(f"{spec} holds no usable {modality}s for the new domain; give a folder or .zip of images, "
                        "or a text file with a text column")
    return Dataset(modality=dataset.modality, samples=samples, source=dataset.source, warnings=list(dataset.warnings),
                   skipped=skipped)


def _without_labels(spec: str, modality: str, text_column: str, allowed_roots, labelled_error: DataError) -> Dataset:
    if spec.startswith("demo:") or not spec:
        raise labelled_error
    if allowed_roots is not None:
        check_allowed(spec, allowed_roots, what="target data path")
    p = Path(spec).expanduser()
    if modality == "image" and (p.is_dir() or p.suffix.lower() == ".zip"):
        root = unwrap((extract_cached(p, None, []) if p.suffix.lower() == ".zip" else p).resolve())
        images, _ = _images_below(root)
        samples = [Sample(id=f.relative_to(root).as_posix(), input=str(f), label=UNLABELLED) for f in images]
        return Dataset(modality="image", samples=samples, source=str(p))
    if modality == "text" and p.is_file() and p.suffix.lower() in TABLE_EXTENSIONS:
        df, notes = read_table(p)
        cols = list(df.columns)
        column = find_column(cols, text_column, TEXT_NAMES, file=p.name, role="text", setting="text_column")
        column = column or (cols[0] if len(cols) == 1 else None)
        if column is None:
            raise DataError(f"{p.name} has no text column (columns: {', '.join(cols)}); name it text or choose it "
                            "with --set data.text_column=NAME") from None
        samples = [Sample(id=f"row {row}", input=str(text), label=UNLABELLED)
                   for row, text in enumerate(df[column], start=1) if str(text).strip()]
        return Dataset(modality="text", samples=samples, source=str(p), warnings=notes)
    raise labelled_error
