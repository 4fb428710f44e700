import zipfile

import pytest

from datafiles import files_under, image_bytes, make_zip
from transfer_core.data import safe_extract_zip
from transfer_core.errors import DataError


def _outside_untouched(tmp_path, before):
    """Nothing appeared beside the destination (no leftovers, no escaped files)."""
    return files_under(tmp_path) == before


def test_extracts_files_and_skips_os_junk(tmp_path):
    z = make_zip(tmp_path / "d.zip", {
        "flowers/rose/1.png": image_bytes(), "flowers/tulip/2.png": image_bytes(seed=1),
        "__MACOSX/flowers/rose/._1.png": b"junk", "flowers/.DS_Store": b"junk", "flowers/rose/Thumbs.db": b"junk",
        "flowers/": b"",
    })
    dest = safe_extract_zip(z, tmp_path / "out")
    assert dest == tmp_path / "out"
    assert files_under(dest) == {"flowers", "flowers/rose", "flowers/tulip", "flowers/rose/1.png", "flowers/tulip/2.png"}
    assert not list(tmp_path.glob(".extracting-*"))


@pytest.mark.parametrize("bad_name,message", [
    ("../evil.txt", "leaves the folder"),
    ("a/../../evil.txt", "leaves the folder"),
    ("..\\evil.txt", "leaves the folder"),
    ("/tmp/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
])
def test_path_traversal_is_refused_and_nothing_is_written(tmp_path, bad_name, message):
    z = make_zip(tmp_path / "evil.zip", {"ok/a.txt": b"fine", bad_name: b"pwned"})
    before = files_under(tmp_path)
    with pytest.raises(DataError, match=message):
        safe_extract_zip(z, tmp_path / "sub" / "out")
    assert not (tmp_path / "sub" / "out").exists()
    assert _outside_untouched(tmp_path, before | {"sub"})
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_entry_is_refused(tmp_path):
    z = make_zip(tmp_path / "link.zip", {"ok/a.txt": b"fine"}, symlinks={"ok/passwd": "/etc/passwd"})
    before = files_under(tmp_path)
    with pytest.raises(DataError, match="symbolic link"):
        safe_extract_zip(z, tmp_path / "out")
    assert _outside_untouched(tmp_path, before)


def test_encrypted_entry_is_refused(tmp_path):
    z = make_zip(tmp_path / "enc.zip", {"a/1.txt": b"secret"})
    raw = bytearray(z.read_bytes())
    # Set the "encrypted" flag bit in both the local header and the central directory.
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(sig)
        raw[at + offset] |= 0x1
    z.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="password"):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_high_ratio_bomb_is_refused_before_writing(tmp_path):
    z = make_zip(tmp_path / "bomb.zip", {"a/zeros.bin": b"\0" * (50 * 1024 * 1024)})
    assert z.stat().st_size < 200_000
    before = files_under(tmp_path)
    with pytest.raises(DataError, match="zip bomb"):
        safe_extract_zip(z, tmp_path / "out")
    assert _outside_untouched(tmp_path, before)


def test_declared_total_over_limit_is_refused(tmp_path):
    z = make_zip(tmp_path / "big.zip", {f"a/{i}.bin": bytes(range(256)) * 40 for i in range(5)},
                 compression=zipfile.ZIP_STORED)
    with pytest.raises(DataError, match="limit"):
        safe_extract_zip(z, tmp_path / "out", max_total_bytes=30_000)
    assert not (tmp_path / "out").exists()


def test_lying_header_is_caught_while_streaming(tmp_path):
    z = make_zip(tmp_path / "liar.zip", {"a/data.bin": bytes(range(256)) * 100}, compression=zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    # Shrink the declared uncompressed size in the central directory (offset 24 of the entry).
    at = raw.find(b"PK\x01\x02")
    raw[at + 24:at + 28] = (1000).to_bytes(4, "little")
    z.write_bytes(bytes(raw))
    with pytest.raises(DataError):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_too_many_entries(tmp_path):
    z = make_zip(tmp_path / "many.zip", {f"a/{i}.txt": b"x" for i in range(30)})
    with pytest.raises(DataError, match="more than the limit of 20"):
        safe_extract_zip(z, tmp_path / "out", max_entries=20)


def test_nested_zip_is_not_extracted_but_reported(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", {"x/1.png": image_bytes()}).read_bytes()
    z = make_zip(tmp_path / "outer.zip", {"a/1.png": image_bytes(), "a/more.zip": inner})
    notes = []
    dest = safe_extract_zip(z, tmp_path / "out", notes=notes)
    assert files_under(dest) == {"a", "a/1.png"}
    assert len(notes) == 1 and "more.zip" in notes[0]


def test_empty_and_junk_only_zips(tmp_path):
    with pytest.raises(DataError, match="empty"):
        safe_extract_zip(make_zip(tmp_path / "empty.zip", {}), tmp_path / "o1")
    with pytest.raises(DataError, match="empty"):
        safe_extract_zip(make_zip(tmp_path / "junk.zip", {"__MACOSX/._x": b"j", "d/": b""}), tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_not_a_zip(tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_bytes(b"Rar!\x1a\x07\x00 definitely not a zip")
    with pytest.raises(DataError, match="not a zip"):
        safe_extract_zip(fake, tmp_path / "out")


def test_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    z = make_zip(tmp_path / "d.zip", {"a/1.txt": b"x"})
    with pytest.raises(DataError, match="not empty"):
        safe_extract_zip(z, tmp_path / "out")
    assert files_under(tmp_path / "out") == {"keep.txt"}
