"""Image folders: one subfolder per class, images anywhere below it."""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from ..errors import DataError
from .images import IMAGE_EXTENSIONS, is_image_file
from .tables import TABLE_EXTENSIONS
from .types import Dataset, Sample

_IGNORED_DIRS = {"__MACOSX"}


def visible_children(folder: Path) -> tuple[list[Path], list[Path]]:
    """(subfolders, files) directly in `folder`, hidden and OS-junk entries left out, sorted."""
    dirs: list[Path] = []
    files: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name in _IGNORED_DIRS or entry.name in ("Thumbs.db", "desktop.ini"):
            continue
        (dirs if entry.is_dir() else files).append(entry)
    return dirs, files


def unwrap(root: Path) -> Path:
    """Step into a single wrapping folder (as zips of a folder usually have) until classes appear.

    A wrapping folder that holds a table is stepped into as well: compressing a folder of images and
    its labels.csv gives exactly that, and the folder is then not a class but the data set's root.
    """
    while True:
        dirs, files = visible_children(root)
        has_data = any(is_image_file(f) or f.suffix.lower() in TABLE_EXTENSIONS for f in files)
        if len(dirs) == 1 and not has_data:
            inner_dirs, inner_files = visible_children(dirs[0])
            if inner_dirs or any(f.suffix.lower() in TABLE_EXTENSIONS for f in inner_files):
                root = dirs[0]
                continue
        return root


def _images_below(folder: Path) -> tuple[list[Path], int]:
    """Image files anywhere under `folder` and the count of other (ignored) files."""
    images, others = [], 0
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _IGNORED_DIRS)
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            if is_image_file(f):
                images.append(Path(current) / f)
            else:
                others += 1
    return images, others


def has_class_folders(root: Path) -> bool:
    return any(_images_below(d)[0] for d in visible_children(root)[0])


def load_image_folder(root: str | Path, *, source: str = "", name: str = "") -> Dataset:
    """Labels are the class folder names; `name` is how messages refer to the folder."""
    root = Path(root).resolve()
    name = name or root.name
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder with one subfolder per class.")
    root = unwrap(root)
    class_dirs, loose_files = visible_children(root)
    samples, warnings, ignored_files, empty = [], [], 0, []
    for class_dir in class_dirs:
        images, others = _images_below(class_dir)
        ignored_files += others
        if not images:
            empty.append(class_dir.name)
            continue
        # macOS zips store names decomposed (NFD); normalise so "café" is one label everywhere.
        label = unicodedata.normalize("NFC", class_dir.name)
        for image in images:
            rel = image.relative_to(root).as_posix()
            samples.append(Sample(id=rel, input=str(image), label=label))
    if not samples:
        raise DataError(f"{name} has no class subfolders with images ({'/'.join(sorted(IMAGE_EXTENSIONS))}); "
                        "put each class's images in its own subfolder, e.g. data/cat/1.jpg and data/dog/2.jpg.")
    loose_images = sum(1 for f in loose_files if is_image_file(f))
    if loose_images:
        warnings.append(f"{loose_images} image(s) sit directly in {name} outside any class folder and were ignored; move them into a class folder.")
    if empty:
        warnings.append(f"Folder(s) {', '.join(empty[:5])} contain no images and were ignored.")
    ignored_files += len(loose_files) - loose_images
    if ignored_files:
        warnings.append(f"{ignored_files} file(s) that are not images ({'/'.join(sorted(IMAGE_EXTENSIONS))}) were ignored.")
    return Dataset(modality="image", samples=samples, source=source or str(root), warnings=warnings)
