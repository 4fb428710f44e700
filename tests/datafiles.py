"""Helpers for the data and hardening tests: real image, zip and text files written into tmp_path."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: Path, size=(16, 12), mode="RGB", fmt=None, seed=0, **kwargs) -> Path:
    """A noisy image (noise keeps JPEG/PNG files distinct and non-trivial) of the given mode."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "RGBA":
        im = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    elif mode in ("RGB", "CMYK"):
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    elif mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **kwargs)
    return path


def png_with_declared_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header claims another size: a decompression bomb that costs nothing to make."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def make_zip(path: Path, entries: dict[str, bytes], *, symlinks: dict[str, str] | None = None,
             compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # S_IFLNK | rwx
            zf.writestr(info, target)
    return path


def image_bytes(fmt="PNG", size=(8, 8), seed=0) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def image_tree(root: Path, classes: dict[str, int], size=(8, 8), seed=0) -> Path:
    """root/<class>/<i>.png with distinct contents."""
    for ci, (label, n) in enumerate(classes.items()):
        for i in range(n):
            save_image(root / label / f"{i}.png", size=size, seed=seed + 1000 * ci + i)
    return root


def files_under(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")}


def zip_of_empty_entries(path: Path, n: int, prefix: str = "data/a/") -> Path:
    """A valid (ZIP64) zip of `n` empty stored files, written directly: 100,000 entries in well under a second."""
    local, central, offset = bytearray(), bytearray(), 0
    for i in range(n):
        name = f"{prefix}{i}.txt".encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0,
                               offset) + name
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
        local += header
        offset += len(header)
    end64 = len(local) + len(central)
    tail = (struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), len(local))
            + struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
            + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, len(central), len(local), 0))
    path.write_bytes(bytes(local) + bytes(central) + tail)
    return path


def zip_folder(folder: Path, path: Path) -> Path:
    """`folder` zipped with its own name as the top folder (as a file manager does)."""
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{folder.name}/{f.relative_to(folder).as_posix()}")
    return path
