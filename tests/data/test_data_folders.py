"""Image data from folders, zips and image CSVs, through load_dataset."""
from pathlib import Path

import pytest

from datafiles import files_under, image_bytes, image_tree, make_zip, save_image
from transfer_core.data import load_dataset
from transfer_core.errors import DataError


def test_image_folder_recursive_with_ids_and_ignored_files(tmp_path):
    root = image_tree(tmp_path / "pets", {"cat": 2, "dog": 3})
    save_image(root / "cat" / "2019" / "old.JPG", fmt="JPEG")   # nested and upper-case extension
    (root / "cat" / ".hidden.png").write_bytes(image_bytes())
    (root / ".git").mkdir()
    (root / ".git" / "x.png").write_bytes(image_bytes())
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "loose.png").write_bytes(image_bytes())
    (root / "empty").mkdir()
    ds = load_dataset(root)
    assert ds.modality == "image" and ds.class_counts() == {"cat": 3, "dog": 3}
    assert "cat/2019/old.JPG" in [s.id for s in ds.samples]
    assert all(Path(s.input).is_absolute() and Path(s.input).is_file() for s in ds.samples)
    text = " ".join(ds.warnings)
    assert "outside any class folder" in text and "empty" in text and "not images" in text


def test_unreadable_images_are_listed_not_rejected_at_load(tmp_path):
    root = image_tree(tmp_path / "d", {"a": 2, "b": 2})
    (root / "a" / "broken.jpg").write_bytes(b"")
    ds = load_dataset(root)
    assert "a/broken.jpg" in [s.id for s in ds.samples]


def test_single_wrapping_folder_is_unwrapped(tmp_path):
    image_tree(tmp_path / "outer" / "dataset", {"x": 1, "y": 1})
    ds = load_dataset(tmp_path / "outer")
    assert sorted(s.id for s in ds.samples) == ["x/0.png", "y/0.png"]


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    for i in range(3):
        (tmp_path / "flat" / f"{i}.png").write_bytes(image_bytes(seed=i))
    with pytest.raises(DataError, match="no class subfolders.*own subfolder"):
        load_dataset(tmp_path / "flat")


def test_zip_of_image_folder_is_extracted_once_and_reused(tmp_path, isolated_cache):
    z = make_zip(tmp_path / "pets.zip", {"pets/cat/1.png": image_bytes(seed=1), "pets/dog/1.png": image_bytes(seed=2),
                                         "__MACOSX/pets/cat/._1.png": b"junk", "pets/readme.zip": b"PK"})
    ds = load_dataset(z)
    assert ds.class_counts() == {"cat": 1, "dog": 1} and ds.source == str(z)
    assert any("readme.zip" in w for w in ds.warnings)
    extracted = list((isolated_cache / "extracted").iterdir())
    folder = next(p for p in extracted if p.is_dir())
    stamp = (folder / "pets" / "cat" / "1.png").stat().st_mtime_ns
    again = load_dataset(z)
    assert [s.input for s in again.samples] == [s.input for s in ds.samples]
    assert (folder / "pets" / "cat" / "1.png").stat().st_mtime_ns == stamp
    assert any("readme.zip" in w for w in again.warnings)


def test_zip_into_explicit_work_dir(tmp_path):
    z = make_zip(tmp_path / "d.zip", {"a/1.png": image_bytes(seed=1), "b/1.png": image_bytes(seed=2)})
    ds = load_dataset(z, work_dir=tmp_path / "work")
    assert all(Path(s.input).is_relative_to(tmp_path / "work") for s in ds.samples)


def test_malicious_zip_through_load_dataset_writes_nothing(tmp_path, isolated_cache):
    z = make_zip(tmp_path / "evil.zip", {"a/1.png": image_bytes(), "../../escape.png": image_bytes()})
    before = files_under(tmp_path)
    with pytest.raises(DataError, match="leaves the folder"):
        load_dataset(z)
    after = files_under(tmp_path)
    assert all(p.startswith("cache") for p in after - before)
    assert not any(Path(p).name.endswith(".png") for p in after - before)


def test_zip_without_class_folders_and_fake_zip(tmp_path):
    with pytest.raises(DataError, match="flat.zip has no class subfolders"):
        load_dataset(make_zip(tmp_path / "flat.zip", {"1.png": image_bytes(), "2.png": image_bytes(seed=3)}))
    (tmp_path / "fake.zip").write_text("hello")
    with pytest.raises(DataError, match="not a zip"):
        load_dataset(tmp_path / "fake.zip")


def test_image_csv_relative_paths_and_missing_files(tmp_path):
    save_image(tmp_path / "imgs" / "a.png", seed=1)
    save_image(tmp_path / "imgs" / "b.jpg", fmt="JPEG", seed=2)
    (tmp_path / "labels.csv").write_text("filename,category\nimgs/a.png,cat\nimgs\\b.jpg,dog\nimgs/missing.png,dog\n")
    ds = load_dataset(tmp_path / "labels.csv")
    assert ds.modality == "image"
    assert [(s.id, s.label) for s in ds.samples] == [("imgs/a.png", "cat"), ("imgs/b.jpg", "dog")]
    assert ds.skipped == [("row 3", "file not found")]


def test_text_csv_with_a_file_column_that_is_not_images_stays_text(tmp_path):
    (tmp_path / "t.csv").write_text("file,text,label\nreport1,hello there,a\nreport2,bye now,b\n")
    ds = load_dataset(tmp_path / "t.csv")
    assert ds.modality == "text" and [s.input for s in ds.samples] == ["hello there", "bye now"]


def test_zip_with_image_csv_cannot_reach_outside(tmp_path):
    outside = save_image(tmp_path / "secret.png")
    z = make_zip(tmp_path / "d.zip", {
        "data/imgs/1.png": image_bytes(seed=1), "data/imgs/2.png": image_bytes(seed=2),
        "data/labels.csv": f"image,label\nimgs/1.png,a\nimgs/2.png,b\n{outside},a\n".encode()})
    ds = load_dataset(z)
    assert ds.modality == "image" and len(ds) == 2
    assert ("row 3", "path outside the data folder") in ds.skipped


def test_modality_mismatch_is_reported(tmp_path):
    root = image_tree(tmp_path / "d", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="holds image data but text data was expected"):
        load_dataset(root, modality="text")
