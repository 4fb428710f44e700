"""Every bad input of the hardening list, defined once and exercised through each user-facing path:
`prepare_data` (test_bad_inputs.py), the CLI in a subprocess (test_bad_inputs_cli.py) and, for a
subset, the Data page (test_bad_uploads.py).

A case either must be refused with a one-line message naming the problem and the fix (`error`), or
must be usable, with the bad item skipped and named in a notice or data-report warning (`notice`).
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from datafiles import (image_bytes, image_tree, make_zip, png_with_declared_size, save_image, zip_folder,
                       zip_of_empty_entries)


@dataclass(frozen=True)
class Case:
    id: str
    modality: str                               # which tiny model trains on it in the CLI test
    build: Callable[[Path], Path]               # writes the data under an empty folder; returns the data path
    error: str | None = None                    # fragment of the one-line refusal; None: the data is usable
    notice: str | None = None                   # fragment of the notice/warning that names a skipped item
    check: Callable | None = None               # more checks on the PreparedData of a usable case


# ---- images: a good two-class folder plus one odd file in class "cat" ------------------------------
def _with_image(name: str, write: Callable[[Path], object]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        data = image_tree(root / "pets", {"cat": 4, "dog": 4}, size=(20, 20))
        write(data / "cat" / name)
        return data
    return build


def _truncated(fmt: str) -> Callable[[Path], object]:
    return lambda p: p.write_bytes(image_bytes(fmt, size=(64, 64))[:300])


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _has(sample_name: str, n: int = 9):
    def check(prepared):
        assert len(prepared.dataset) == n
        assert any(s.id.endswith(sample_name) for s in prepared.dataset.samples)
    return check


def _skipped(sample_name: str):
    def check(prepared):
        assert len(prepared.dataset) == 8
        assert not any(s.id.endswith(sample_name) for s in prepared.dataset.samples)
        assert any(i.endswith(sample_name) for i in prepared.report.unreadable_ids)
        assert "unreadable" in {f.code for f in prepared.report.warnings}
    return check


UNREADABLE = "unreadable files were skipped"
IMAGE_CASES = [
    Case("truncated_jpeg", "image", _with_image("bad.jpg", _truncated("JPEG")), notice=UNREADABLE, check=_skipped("bad.jpg")),
    Case("truncated_png", "image", _with_image("bad.png", _truncated("PNG")), notice=UNREADABLE, check=_skipped("bad.png")),
    Case("zero_byte_file", "image", _with_image("empty.jpg", lambda p: p.write_bytes(b"")), notice=UNREADABLE,
         check=_skipped("empty.jpg")),
    Case("text_file_named_jpg", "image", _with_image("notes.jpg", lambda p: p.write_text("not a picture")), notice=UNREADABLE,
         check=_skipped("notes.jpg")),
    Case("decompression_bomb_png", "image", _with_image("bomb.png", lambda p: png_with_declared_size(p, 100_000, 100_000)),
         notice=UNREADABLE, check=_skipped("bomb.png")),
    Case("cmyk_jpeg", "image", _with_image("cmyk.jpg", lambda p: save_image(p, (20, 20), mode="CMYK", fmt="JPEG")),
         check=_has("cmyk.jpg")),
    Case("sixteen_bit_png", "image", _with_image("deep.png", lambda p: save_image(p, (20, 20), mode="I;16", fmt="PNG")),
         check=_has("deep.png")),
    Case("palette_png", "image", _with_image("palette.png", lambda p: save_image(p, (20, 20), mode="P", fmt="PNG")),
         check=_has("palette.png")),
    Case("rgba_png", "image", _with_image("alpha.png", lambda p: save_image(p, (20, 20), mode="RGBA", fmt="PNG")),
         check=_has("alpha.png")),
    Case("one_pixel_image", "image", _with_image("dot.png", lambda p: save_image(p, (1, 1), fmt="PNG")), check=_has("dot.png")),
    Case("animated_gif", "image", _with_image("anim.gif", _animated_gif), check=_has("anim.gif")),
]


# ---- archives ----------------------------------------------------------------------------------
GOOD_ENTRIES = {f"pets/{c}/{i}.png": image_bytes(size=(20, 20), seed=10 * k + i) for k, c in enumerate(("cat", "dog"))
                for i in range(4)}


def _zip(entries: dict | None = None, **kwargs) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        return make_zip(root / "upload.zip", GOOD_ENTRIES if entries is None else entries, **kwargs)
    return build


def _nested(root: Path) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("more/cat/9.png", image_bytes(seed=99))
    return _zip({**GOOD_ENTRIES, "pets/extra.zip": inner.getvalue()})(root)


def _many_entries(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return zip_of_empty_entries(root / "upload.zip", 100_000)


def _not_a_zip(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "upload.zip").write_text("these are my photos")
    return root / "upload.zip"


def _nested_check(prepared):
    assert len(prepared.dataset) == 8 and prepared.classes == ["cat", "dog"]


ARCHIVE_CASES = [
    Case("zip_dotdot_entry", "image", _zip({**GOOD_ENTRIES, "../../escaped.txt": b"x"}), error="leaves the folder"),
    Case("zip_absolute_entry", "image", _zip({**GOOD_ENTRIES, "/tmp/escaped.txt": b"x"}), error="absolute path"),
    Case("zip_symlink_entry", "image", _zip(symlinks={"pets/cat/link.png": "/etc/passwd"}), error="symbolic link"),
    Case("zip_bomb", "image", _zip({**GOOD_ENTRIES, "pets/cat/huge.png": bytes(8 << 20)}), error="zip bomb"),
    Case("zip_nested_zip", "image", _nested, notice="archive(s) inside it", check=_nested_check),
    Case("zip_100000_entries", "image", _many_entries, error="100,000 entries"),
    Case("zip_empty", "image", _zip({}), error="is empty"),
    Case("zip_without_class_folders", "image", _zip({f"{i}.png": image_bytes(seed=i) for i in range(4)}),
         error="no class subfolders"),
    Case("not_a_zip_named_zip", "image", _not_a_zip, error="not a zip file"),
]


# ---- labels ------------------------------------------------------------------------------------
def _images(classes: dict[str, int]) -> Callable[[Path], Path]:
    return lambda root: image_tree(root / "pets", classes, size=(20, 20))


def _texts(n_classes: int, per_class: int) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "many.csv"
        path.write_text("text,label\n" + "".join(f"sample {j} of {i},class {i}\n" for i in range(n_classes)
                                                 for j in range(per_class)), encoding="utf-8")
        return path
    return build


UNICODE_CLASSES = ["big cat", "猫", "собака"]


def _unicode_check(prepared):
    assert prepared.classes == sorted(UNICODE_CLASSES)


LABEL_CASES = [
    Case("single_class", "image", _images({"cat": 6}), error="only one class"),
    Case("class_with_one_sample", "image", _images({"cat": 5, "dog": 1}), error="single sample"),
    Case("labels_with_spaces_and_non_latin", "image", _images({c: 3 for c in UNICODE_CLASSES}), check=_unicode_check),
    Case("5000_classes_one_sample_each", "text", _texts(5000, 1), error="single sample"),
    Case("5000_classes_three_samples_each", "text", _texts(5000, 3), error="more than the limit of 1,000"),
]


# ---- text files --------------------------------------------------------------------------------
ROWS = "".join(f"{' '.join(['match goal team', 'chip code data'][i % 2].split() * 2)} {i},{['sport', 'tech'][i % 2]}\n"
               for i in range(10))


def _csv(content: str | bytes, name: str = "data.csv") -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path
    return build


def _rows(n: int):
    def check(prepared):
        assert len(prepared.dataset) == n
    return check


def _bom_check(prepared):
    assert len(prepared.dataset) == 10 and prepared.classes == ["sport", "tech"]
    assert not prepared.notices   # the BOM is not part of the first column's name, so nothing was guessed


def _newline_check(prepared):
    assert len(prepared.dataset) == 11
    assert any(s.input == "first line\nsecond line, with a comma" for s in prepared.dataset.samples)


def _big_row_check(prepared):
    assert len(prepared.dataset) == 11 and max(len(s.input) for s in prepared.dataset.samples) >= 1 << 20


TEXT_CASES = [
    Case("missing_columns", "text", _csv("id,value,score\n1,2,3\n4,5,6\n"), error="no text column"),
    Case("empty_text_file", "text", _csv(""), error="is empty"),
    Case("header_only", "text", _csv("text,label\n"), error="header but no rows"),
    Case("blank_and_nan_labels", "text", _csv("text,label\n" + ROWS + "a stray row,\nanother,NaN\nthird,nan\n"),
         notice="skipped (no label)", check=_rows(10)),
    Case("not_utf8_bytes", "text", _csv(("text,label\n" + ROWS + "café crème brûlée,sport\n").encode("cp1252")),
         notice="not UTF-8", check=_rows(11)),
    Case("binary_named_csv", "text", _csv(bytes(range(256)) * 8), error="not a text file"),
    Case("utf8_bom", "text", _csv(b"\xef\xbb\xbf" + ("text,label\n" + ROWS).encode()), check=_bom_check),
    Case("quoted_embedded_newlines", "text", _csv('text,label\n"first line\nsecond line, with a comma",tech\n' + ROWS),
         check=_newline_check),
    Case("one_megabyte_row", "text", _csv("text,label\n" + "word " * (1 << 18) + ",tech\n" + ROWS), check=_big_row_check),
]

ALL_CASES = IMAGE_CASES + ARCHIVE_CASES + LABEL_CASES + TEXT_CASES


def zip_bytes_of(case: Case, root: Path) -> tuple[str, bytes]:
    """The case as an upload for the Data page: zips as they are, image folders zipped, tables as they are."""
    path = case.build(root)
    if path.is_dir():
        path = zip_folder(path, root / f"{case.id}.zip")
    return path.name, path.read_bytes()
