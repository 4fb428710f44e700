"""Unpack an uploaded zip without letting it write outside its folder or fill the disk."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import DataError

GiB = 1024 ** 3
_CHUNK = 1024 * 1024
# Small entries can have huge ratios legitimately (a blank text file) and cannot
# fill a disk, so ratio limits only apply to entries and totals above this size.
_RATIO_FLOOR_BYTES = 1024 * 1024
_JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_JUNK_DIRS = {"__MACOSX"}
_NESTED_ARCHIVES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"}


def safe_extract_zip(zip_path: str | Path, dest_dir: str | Path, *, max_entries: int = 50_000,
                     max_total_bytes: int = 2 * GiB, max_ratio: float = 200,
                     notes: list[str] | None = None) -> Path:
    """Extract `zip_path` into `dest_dir` (which must not exist or be empty) and return it.

    Everything is checked before and while writing; on any problem a DataError is
    raised and nothing is left at `dest_dir`. Skipped items (OS junk, nested
    archives) are described in `notes` when a list is given.
    """
    zip_path, dest = Path(zip_path), Path(dest_dir)
    name = zip_path.name
    if not zip_path.is_file():
        raise DataError(f"{name} cannot be found; check the path to the zip file.")
    if not zipfile.is_zipfile(zip_path):
        raise DataError(f"{name} is not a zip file; compress the data folder as .zip (not .rar or .7z) and try again.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"Cannot extract {name} into {dest}: it already exists and is not empty; choose an empty folder.")
    notes = notes if notes is not None else []
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extracting-", dir=dest.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            entries = _plan(zf, name, max_entries=max_entries, max_total_bytes=max_total_bytes,
                            max_ratio=max_ratio, notes=notes)
            _write(zf, entries, tmp, name, max_total_bytes=max_total_bytes)
        if dest.exists():
            dest.rmdir()  # empty, checked above; rename cannot replace it otherwise
        os.rename(tmp, dest)
    except zipfile.BadZipFile as e:
        raise DataError(f"{name} is damaged ({e}); re-create the zip and upload it again.") from None
    except OSError as e:
        raise DataError(f"{name} could not be extracted ({e.strerror or e}); check free disk space and file names.") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _plan(zf: zipfile.ZipFile, name: str, *, max_entries: int, max_total_bytes: int,
          max_ratio: float, notes: list[str]) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Validate every entry from the central directory; return (entry, relative path) to write."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise DataError(f"{name} has {len(infos):,} entries, more than the limit of {max_entries:,}; split the data into smaller zips.")
    plan, nested, declared, compressed = [], [], 0, 0
    for info in infos:
        rel = _safe_relative(info.filename, name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(f"{name} contains a symbolic link ({info.filename}); zip the real files instead of links.")
        if info.flag_bits & 0x1:
            raise DataError(f"{name} is password-protected ({info.filename}); create the zip without a password.")
        if rel is None or _is_junk(rel) or info.is_dir():
            continue
        if rel.suffix.lower() in _NESTED_ARCHIVES:
            nested.append(info.filename)
            continue
        if info.file_size > _RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DataError(f"{name}: entry {info.filename} expands {info.file_size / max(info.compress_size, 1):,.0f}-fold, "
                            f"over the limit of {max_ratio:,.0f} (possible zip bomb); zip the original files again.")
        declared += info.file_size
        compressed += info.compress_size
        plan.append((info, rel))
    if declared > max_total_bytes:
        raise DataError(f"{name} unpacks to {declared / GiB:.1f} GiB, over the {max_total_bytes / GiB:.1f} GiB limit; use fewer or smaller files.")
    if declared > _RATIO_FLOOR_BYTES and declared > max_ratio * max(compressed, 1):
        raise DataError(f"{name} expands {declared / max(compressed, 1):,.0f}-fold, over the limit of {max_ratio:,.0f} (possible zip bomb); zip the original files again.")
    if nested:
        notes.append(f"{name} contains {len(nested)} archive(s) inside it ({', '.join(nested[:3])}) which were not unpacked; "
                     "unzip them and add their contents to the zip instead.")
    if not plan:
        raise DataError(f"{name} is empty (no files besides folders or system junk); add the data folders to the zip.")
    return plan


def _safe_relative(filename: str, name: str) -> PurePosixPath | None:
    # Some Windows tools write backslashes; treat them as separators so ..\ cannot slip through.
    clean = filename.replace("\\", "/")
    p = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise DataError(f"{name} contains an absolute path ({filename}); zip the folder with relative paths.")
    if ".." in p.parts:
        raise DataError(f"{name} contains a path that leaves the folder ({filename}); remove entries with '..' from the zip.")
    parts = [part for part in p.parts if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _is_junk(rel: PurePosixPath) -> bool:
    return rel.name in _JUNK_NAMES or rel.name.startswith("._") or any(part in _JUNK_DIRS for part in rel.parts)


def _write(zf: zipfile.ZipFile, plan, root: Path, name: str, *, max_total_bytes: int) -> None:
    """Stream each entry to disk, counting bytes actually produced rather than trusting headers."""
    root = root.resolve()
    total = 0
    for info, rel in plan:
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise DataError(f"{name} contains a path that leaves the folder ({info.filename}); remove it from the zip.")
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                total += len(chunk)
                # The declared size already passed the ratio check in _plan, so it caps the entry.
                if written > info.file_size:
                    raise DataError(f"{name}: entry {info.filename} unpacks to more than its header declares (possible zip bomb); zip the original files again.")
                if total > max_total_bytes:
                    raise DataError(f"{name} unpacks to more than the {max_total_bytes / GiB:.1f} GiB limit; use fewer or smaller files.")
                out.write(chunk)
