"""`load_dataset`: turn whatever the user points at (folder, zip, table, demo name) into a Dataset."""
from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..errors import DataError
from ..paths import check_allowed, lies_under, outside_rule, resolve_roots
from .archives import safe_extract_zip
from .cache import cache_root
from .demo import load_demo
from .folders import has_class_folders, load_image_folder, unwrap, visible_children
from .images import is_image_file
from .tables import IMAGE_NAMES, LABEL_NAMES, TABLE_EXTENSIONS, TEXT_NAMES, find_column, read_table
from .types import Dataset, Sample

# Cells pandas and numpy write for a missing value; "NA" and "None" stay, as they can be real labels.
_MISSING_LABELS = {"", "nan", "NaN"}


def load_dataset(path: str | Path, *, modality: str | None = None, text_column: str = "", label_column: str = "",
                 image_column: str = "", work_dir: str | Path | None = None,
                 allowed_roots: Sequence[str | Path] | None = None) -> Dataset:
    """Load a folder of class subfolders, a .zip of one, a CSV/TSV/JSONL table, or `demo:<name>`.

    `modality` ("image"/"text") is checked against what was found; None accepts either.
    Zips are extracted under `work_dir` (default: the cache's `extracted/` folder) in a
    subfolder named after the zip's hash, and reused when loaded again.
    `allowed_roots` (the web app's folders; None: anywhere) holds `path` and the image paths
    inside a table to those folders: a row naming a file elsewhere is skipped, saying why.
    """
    if modality not in (None, "", "image", "text"):
        raise DataError(f"Unknown modality '{modality}'; use image or text.")
    columns: dict[str, Any] = dict(text_column=text_column, label_column=label_column, image_column=image_column)
    spec = str(path).strip()
    if spec.startswith("demo:"):
        return _check_modality(load_demo(spec), modality)
    if not spec:
        raise DataError("No data path given; choose a data folder, zip, CSV/TSV/JSONL file or a demo set (demo:bbc-news, demo:fashion-mnist).")
    if allowed_roots is not None:
        check_allowed(spec, allowed_roots, what="data path")
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataError(f"{p} does not exist; check the path (relative paths start from {Path.cwd()}).")
    if p.is_dir():
        ds = _load_directory(p, modality, columns, name=p.name, allowed_roots=allowed_roots)
    elif p.suffix.lower() == ".zip":
        notes: list[str] = []
        root = extract_cached(p, work_dir, notes)
        # The extracted files are the app's own copy; a table among them may name only them (confine).
        ds = _load_directory(root, modality, columns, name=p.name, confine=True)
        ds.warnings[:0] = notes
    elif p.suffix.lower() in TABLE_EXTENSIONS:
        ds = load_table(p, modality=modality, allowed_roots=allowed_roots, **columns)
    else:
        raise DataError(f"{p.name} is not a supported data file; use a folder, a .zip, or a .csv/.tsv/.jsonl file.")
    ds.source = str(p)
    return _check_modality(ds, modality)


def _check_modality(ds: Dataset, modality: str | None) -> Dataset:
    if modality and ds.modality != modality:
        raise DataError(f"{ds.source or 'The data'} holds {ds.modality} data but {modality} data was expected; "
                        f"choose a {ds.modality} model or different data.")
    return ds


def _load_directory(root: Path, modality, columns: dict, *, name: str, confine: bool = False,
                    allowed_roots: Sequence[str | Path] | None = None) -> Dataset:
    """`name` is what the user calls it (the zip's name rather than its extraction folder)."""
    root = unwrap(root.resolve())
    tables = [f for f in visible_children(root)[1] if f.suffix.lower() in TABLE_EXTENSIONS]
    folders = has_class_folders(root)
    where: dict[str, Any] = dict(confine_to=root if confine else None, allowed_roots=allowed_roots)
    # A table of image paths beside its image folder ("imgs/") describes the data; the folder is not a class.
    if len(tables) == 1 and (not folders or _is_image_table(tables[0], columns["image_column"], **where)):
        return load_table(tables[0], modality=modality, **where, **columns)
    if folders:
        return load_image_folder(root, name=name)
    if len(tables) > 1:
        raise DataError(f"{name} holds several tables ({', '.join(t.name for t in tables[:4])}) and no class folders; "
                        "point at the one table to use.")
    raise DataError(f"{name} has no class subfolders with images; put each class's images in its own subfolder, "
                    "e.g. data/cat/1.jpg and data/dog/2.jpg.")


def _is_image_table(path: Path, image_column: str, **where) -> bool:
    try:
        return _image_column(read_table(path)[0], path, image_column, _readable(**where)[0]) is not None
    except DataError:
        return False


def extract_cached(zip_path: Path, work_dir: str | Path | None, notes: list[str]) -> Path:
    """Extract once per zip content; later loads of the same bytes reuse the folder."""
    base = Path(work_dir).expanduser() if work_dir else cache_root() / "extracted"
    digest = _file_sha256(zip_path)[:16]
    dest, notes_file = base / digest, base / f"{digest}.notes.json"
    if not dest.is_dir():
        fresh: list[str] = []
        try:
            safe_extract_zip(zip_path, dest, notes=fresh)
        except DataError:
            if not (dest.is_dir() and any(dest.iterdir())):  # not just lost a race with another extraction
                raise
        else:
            notes_file.write_text(json.dumps(fresh))
    if notes_file.is_file():
        notes.extend(json.loads(notes_file.read_text()))
    return dest


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_table(path: str | Path, *, modality: str | None = None, text_column: str = "", label_column: str = "",
               image_column: str = "", confine_to: Path | None = None,
               allowed_roots: Sequence[str | Path] | None = None) -> Dataset:
    """A text table, or an image table when a path column points at existing image files.

    `confine_to` refuses image paths outside that folder (used for uploaded zips, so a
    table cannot reach other files on the server). `allowed_roots` (the web app's folders)
    refuses the table itself outside them, and skips each row whose image lies outside them.
    """
    if allowed_roots is not None:
        check_allowed(path, allowed_roots, what="table")
    path = Path(path).resolve()
    df, notes = read_table(path)
    cols = list(df.columns)
    roots, refusal = _readable(confine_to, allowed_roots)
    image_col = _image_column(df, path, image_column, roots) if modality != "text" else None
    if modality == "image" and image_col is None:
        raise DataError(f"{path.name} has no column of image paths that exist (columns: {', '.join(cols)}); "
                        "add one named image/path/file or choose it with --set data.image_column=NAME.")
    if image_col:
        ds = _image_table(df, path, image_col, label_column, roots, refusal)
    else:
        ds = _text_table(df, path.name, text_column, label_column)
    ds.warnings[:0] = notes
    ds.source = str(path)
    return ds


def _readable(confine_to: Path | None = None,
              allowed_roots: Sequence[str | Path] | None = None) -> tuple[list[Path] | None, str]:
    """Where a table's image paths may point (None: anywhere), and the reason a row naming a file elsewhere
    is skipped. The one place that decides it for a table."""
    if confine_to is not None:
        return resolve_roots([confine_to]), "path outside the data folder"
    if allowed_roots is not None:
        return resolve_roots(allowed_roots), outside_rule(allowed_roots, "the images")
    return None, ""


def _may_read(path: Path, roots: list[Path] | None) -> bool:
    return roots is None or lies_under(path, roots)


def _image_column(df: pd.DataFrame, path: Path, requested: str, roots: list[Path] | None = None) -> str | None:
    """The column of image paths: the one asked for, or a commonly named one whose values are image files."""
    col = find_column(list(df.columns), requested, IMAGE_NAMES, file=path.name, role="image path", setting="image_column")
    if col and not requested and not _points_at_images(df[col], path.parent, roots):
        return None  # a column called "file" that holds something else
    return col


def _resolve(value: str, base: Path, listings: dict | None = None, roots: list[Path] | None = None) -> Path | None:
    """The file a table cell names (absolute, or relative to the table's folder), resolved through symbolic
    links; None when it lies outside `roots`. Each candidate is checked before anything at it is touched
    (exists(), a folder listing), and the final path again: a matched name may be a link pointing out."""
    v = value.strip()
    p = Path(v) if Path(v).is_absolute() else base / v
    if not _may_read(p, roots):
        return None
    if "\\" in v and not p.exists():   # paths written on Windows
        windows = base / v.replace("\\", "/")
        p = windows if _may_read(windows, roots) else p
    if not p.exists():
        p = _match_normalised(p, {} if listings is None else listings, roots) or p
    p = p.resolve()
    return p if _may_read(p, roots) else None


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _match_normalised(path: Path, listings: dict, roots: list[Path] | None = None) -> Path | None:
    """The existing path whose names equal `path`'s once both are in Unicode NFC, or None.

    macOS writes file names decomposed (NFD: "e" + combining accent) while a CSV typed or exported
    elsewhere holds them composed (NFC); byte for byte they differ, to a reader they are the same.
    `listings` caches each folder's {NFC name: real name}, so a table of many rows lists a folder once.
    """
    anchor = path
    while not anchor.exists():
        if anchor.parent == anchor:
            return None
        anchor = anchor.parent
    current = anchor
    for part in path.relative_to(anchor).parts:
        if part in ("", ".", ".."):
            return None
        if current not in listings:
            if not _may_read(current, roots):   # never list a folder outside the roots
                return None
            try:
                listings[current] = {_nfc(child.name): child.name for child in current.iterdir()} if current.is_dir() else {}
            except OSError:
                listings[current] = {}
        real = listings[current].get(_nfc(part))
        if real is None:
            return None
        current = current / real
    return current


def _points_at_images(values: pd.Series, base: Path, roots: list[Path] | None = None, probe: int = 20) -> bool:
    filled = [v for v in values if str(v).strip()][:probe]
    listings: dict = {}

    def names_image(value: str) -> bool:
        file = _resolve(value, base, listings, roots)
        if file is None:   # outside the roots: judged by its name alone, never touched; its row is refused later
            return is_image_file(value)
        return is_image_file(file) and file.is_file()

    return any(names_image(v) for v in filled)


def _label_column(df: pd.DataFrame, requested: str, exclude: str, name: str) -> str:
    cols = list(df.columns)
    col = find_column(cols, requested, LABEL_NAMES, file=name, role="label", setting="label_column")
    if col is None and len(cols) == 2:
        col = next(c for c in cols if c != exclude)
    if col is None:
        raise DataError(f"{name} has no label column (columns: {', '.join(cols)}); "
                        "name it label/class/category/target or choose it with --set data.label_column=NAME.")
    if col == exclude:
        raise DataError(f"{name}: column '{col}' cannot be both the input and the label; choose another with --set data.label_column=NAME.")
    return col


def _text_columns(df: pd.DataFrame, text_column: str, label_column: str, name: str) -> tuple[str, str, str | None]:
    """(text, label, note): detected from common names, else guessed for a two-column table."""
    cols = list(df.columns)
    text = find_column(cols, text_column, TEXT_NAMES, file=name, role="text", setting="text_column")
    label = find_column(cols, label_column, LABEL_NAMES, file=name, role="label", setting="label_column")
    note = None
    if (text is None or label is None) and len(cols) == 2:
        if text is None and label is None:
            mean_len = {c: df[c].str.len().mean() for c in cols}
            text = max(cols, key=lambda c: mean_len[c])
        text = text or next(c for c in cols if c != label)
        label = label or next(c for c in cols if c != text)
        note = (f"{name}: guessed '{text}' as the text column and '{label}' as the label column; "
                "set data.text_column and data.label_column if that is wrong.")
    if text is None:
        raise DataError(f"{name} has no text column (columns: {', '.join(cols)}); "
                        "name it text/sentence/review/content/body/document or choose it with --set data.text_column=NAME.")
    label = _label_column(df, label or label_column, text, name)
    return text, label, note


def _text_table(df: pd.DataFrame, name: str, text_column: str, label_column: str) -> Dataset:
    text_col, label_col, note = _text_columns(df, text_column, label_column, name)
    samples, skipped = [], []
    for row, (text, label) in enumerate(zip(df[text_col], df[label_col]), start=1):
        label = _label(label)
        if label in _MISSING_LABELS:
            skipped.append((f"row {row}", "no label"))
        elif not str(text).strip():
            skipped.append((f"row {row}", "empty text"))
        else:
            samples.append(Sample(id=f"row {row}", input=str(text), label=label))
    return _finish("text", samples, skipped, [note] if note else [], name, f"'{text_col}' and '{label_col}'")


def _image_table(df: pd.DataFrame, path: Path, image_col: str, label_column: str, roots: list[Path] | None,
                 refusal: str) -> Dataset:
    """`roots`: where the image paths may point (None: anywhere); `refusal`: the reason a row naming a file
    elsewhere is skipped."""
    label_col = _label_column(df, label_column, image_col, path.name)
    base = path.parent
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    listings: dict = {}
    for row, (value, label) in enumerate(zip(df[image_col], df[label_col]), start=1):
        label, value = _label(label), str(value).strip()
        file = _resolve(value, base, listings, roots) if value else None
        reason = None
        if label in _MISSING_LABELS:
            reason = "no label"
        elif not value:
            reason = "no image path"
        elif file is None:
            reason = refusal
        elif not file.is_file():
            reason = "file not found"
        elif not is_image_file(file):
            reason = "not an image file"
        if reason or file is None:
            skipped.append((f"row {row}", reason or refusal))
            continue
        sample_id = file.relative_to(base).as_posix() if file.is_relative_to(base) else file.as_posix()
        samples.append(Sample(id=sample_id, input=str(file), label=label))
    return _finish("image", samples, skipped, [], path.name, f"'{image_col}' and '{label_col}'")


def _label(value) -> str:
    """A table's label cell as a class name: "café" typed composed (NFC) and decomposed (NFD, as
    macOS writes it) is one class, as it is for class folders."""
    return _nfc(str(value).strip())


def _finish(modality, samples, skipped, warnings, name: str, columns: str) -> Dataset:
    if not samples:
        if skipped:   # say why: "fill in both columns" does not help when each path was refused or missing
            reason = Counter(r for _, r in skipped).most_common(1)[0][0]
            raise DataError(f"{name} has no usable rows in columns {columns}: {len(skipped)} row(s) skipped ({reason}).")
        raise DataError(f"{name} has no usable rows in columns {columns}; fill in both columns for each example.")
    by_reason = defaultdict(list)
    for sample_id, reason in skipped:
        by_reason[reason].append(sample_id)
    for reason, ids in by_reason.items():
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        warnings.append(f"{len(ids)} row(s) of {name} were skipped ({reason}): {shown}.")
    return Dataset(modality=modality, samples=samples, warnings=warnings, skipped=skipped)
