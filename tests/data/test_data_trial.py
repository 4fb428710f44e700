"""Data findings of the hostile trial (issue 13): each test builds the real file a user would bring."""
from __future__ import annotations

import json
import unicodedata

import pytest

from datafiles import image_bytes, image_tree, make_zip
from transfer_core.cli import main
from transfer_core.config import RunConfig
from transfer_core.data import build_report, load_dataset
from transfer_core.errors import DataError
from transfer_core.preparation import prepare_data


def _nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


def _config(path, **data) -> RunConfig:
    cfg = RunConfig()
    cfg.set("data.path", str(path))
    for key, value in data.items():
        cfg.set(f"data.{key}", value)
    return cfg


def test_compressed_folder_with_images_and_labels_csv_reads_the_csv(tmp_path):
    """Finder's Compress on a folder `photos` gives photos/<images> and photos/labels.csv."""
    rows = ["image,label"] + [f"{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(8)]
    entries = {f"photos/{i}.png": image_bytes(seed=i) for i in range(8)}
    entries["photos/labels.csv"] = "\n".join(rows).encode()
    entries["__MACOSX/photos/._labels.csv"] = b"junk"
    ds = load_dataset(make_zip(tmp_path / "photos.zip", entries))
    assert ds.modality == "image"
    assert ds.class_counts() == {"cat": 4, "dog": 4}


def test_labels_csv_at_the_archive_root_beside_a_wrapping_image_folder(tmp_path):
    rows = ["image,label"] + [f"pics/{i}.png,{'a' if i < 3 else 'b'}" for i in range(6)]
    entries = {f"pics/{i}.png": image_bytes(seed=i) for i in range(6)}
    entries["labels.csv"] = "\n".join(rows).encode()
    ds = load_dataset(make_zip(tmp_path / "d.zip", entries))
    assert ds.class_counts() == {"a": 3, "b": 3}


@pytest.mark.parametrize("disk,table", [("NFD", "NFC"), ("NFC", "NFD")])
def test_file_names_match_the_labels_csv_whatever_their_unicode_form(tmp_path, disk, table):
    """macOS writes names decomposed (NFD); a CSV typed elsewhere holds them composed (NFC)."""
    names = ["café_1.png", "crème_2.png", "naïve_3.png", "señor_4.png"]
    entries = {unicodedata.normalize(disk, f"data/{n}"): image_bytes(seed=i) for i, n in enumerate(names)}
    rows = ["image,label"] + [f"{n},{'sweet' if i % 2 else 'savoury'}" for i, n in enumerate(names)]
    entries["data/labels.csv"] = unicodedata.normalize(table, "\n".join(rows)).encode()
    ds = load_dataset(make_zip(tmp_path / "mac.zip", entries), modality="image")
    assert ds.modality == "image" and len(ds) == 4 and not ds.skipped
    assert ds.class_counts() == {"savoury": 2, "sweet": 2}


def test_table_labels_in_nfc_and_nfd_are_one_class(tmp_path):
    path = tmp_path / "t.csv"
    rows = ["text,label"] + [f"text {i},{'café' if i % 2 else _nfd('café')}" for i in range(6)] \
        + [f"other {i},tea" for i in range(6)]
    path.write_text("\n".join(rows), encoding="utf-8")
    assert load_dataset(path).class_counts() == {"café": 6, "tea": 6}


def _case_csv(tmp_path):
    path = tmp_path / "pets.csv"
    rows = ["text,label"] + [f"meow {i},{'Cat' if i < 2 else 'cat'}" for i in range(8)] + [f"woof {i},dog" for i in range(8)]
    path.write_text("\n".join(rows), encoding="utf-8")
    return path


def test_labels_differing_only_in_case_are_reported_naming_the_setting(tmp_path):
    report = prepare_data(_config(_case_csv(tmp_path))).report
    finding = next(f for f in report.findings if f.code == "case_only_labels")
    assert finding.level == "warning"
    assert "'Cat'" in finding.message and "'cat'" in finding.message
    assert "data.merge_case" in finding.fix
    assert set(report.class_counts) == {"Cat", "cat", "dog"}


def test_merge_case_setting_merges_them_into_the_commonest_spelling(tmp_path):
    prepared = prepare_data(_config(_case_csv(tmp_path), merge_case=True))
    assert prepared.report.class_counts == {"cat": 8, "dog": 8}
    assert not [f for f in prepared.report.findings if f.code == "case_only_labels"]
    assert any("'Cat'" in n and "'cat'" in n for n in prepared.notices)


def test_deeply_nested_jsonl_is_one_line_naming_the_row(tmp_path, capsys):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + ', "label": "b"}\n')
    with pytest.raises(DataError, match="line 2") as info:
        load_dataset(path)
    assert "\n" not in str(info.value) and "nest" in str(info.value)
    assert main(["report", "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2" in err and "Traceback" not in err


def test_huge_integer_label_in_jsonl_is_one_line_naming_the_row(tmp_path, capsys):
    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"text": "x", "label": 1}\n{"text": "y", "label": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataError, match="line 3") as info:
        load_dataset(path)
    assert "\n" not in str(info.value) and "digits" in str(info.value)
    assert main(["report", "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3" in err and "Traceback" not in err


def _folder_with_copies(tmp_path):
    """Class 'b' is two copies of one photo: after duplicate removal it has a single sample."""
    root = image_tree(tmp_path / "copies", {"a": 4})
    (root / "b").mkdir()
    for name in ("1.png", "2.png"):
        (root / "b" / name).write_bytes(image_bytes(seed=99))
    return root


def test_classes_emptied_by_duplicate_removal_say_so(tmp_path):
    with pytest.raises(DataError) as info:
        prepare_data(_config(_folder_with_copies(tmp_path)))
    message = str(info.value)
    assert "'b'" in message and "duplicate" in message and "data.dedupe" in message and "\n" not in message


def test_report_command_prints_the_report_when_the_data_is_refused(tmp_path, capsys):
    assert main(["report", "--data", str(_folder_with_copies(tmp_path))]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and report["class_counts"]["b"] == 2
    assert any(f["code"] == "duplicates_emptied_class" and "'b'" in f["message"] for f in report["findings"])
    assert any(f["code"] == "duplicates" for f in report["findings"])
    assert captured.err.count("\n") == 1 and "duplicate" in captured.err


def test_a_class_whose_images_are_all_unreadable_is_named(tmp_path):
    root = image_tree(tmp_path / "pics", {"a": 4, "b": 4})
    (root / "c").mkdir()
    for i in range(3):
        (root / "c" / f"{i}.png").write_bytes(b"not a picture " + bytes([i]))
    report = build_report(load_dataset(root))
    finding = next(f for f in report.findings if f.code == "class_unreadable")
    assert "'c'" in finding.message
    prepared = prepare_data(_config(root))
    assert "c" not in prepared.classes
    assert any("'c'" in n for n in prepared.notices)
    assert any(f.code == "class_unreadable" for f in prepared.report.findings)


def test_report_command_prints_the_report_when_a_class_is_too_small_to_split(tmp_path, capsys):
    root = image_tree(tmp_path / "small", {"a": 4, "b": 1})
    assert main(["report", "--data", str(root)]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and report["class_counts"] == {"a": 4, "b": 1}
    assert captured.err.count("\n") == 1 and "'b'" in captured.err


def test_evaluating_a_merge_case_run_scores_case_variants_as_its_classes(tmp_path):
    """A run trained with data.merge_case knows "cat" for "Cat" too: new data spelled either way is scored,
    not refused as labels the run never saw."""
    from transfer_core.errors import RunError
    from transfer_core.runs import evaluate_run
    from transfer_core.store import RunStore
    from transfer_core.trainer import fit

    store = RunStore(tmp_path / "runs")
    for merge in (True, False):
        cfg = _config(_case_csv(tmp_path), merge_case=merge)
        for key, value in (("model.name", "tiny_bert"), ("model.pretrained", False), ("train.epochs", 1),
                           ("train.batch_size", 4), ("data.dedupe", False)):
            cfg.set(key, value)
        run = fit(cfg, store=store)
        assert run.status == "completed", run.message
        new = tmp_path / f"new-{merge}.csv"
        new.write_text("text,label\nmeow 1,CAT\nwoof 1,Dog\nmeow 2,cat\n", encoding="utf-8")
        if merge:
            assert evaluate_run(store, run.run_id, str(new))["accuracy"] is not None
        else:
            with pytest.raises(RunError, match="labels the run never saw"):
                evaluate_run(store, run.run_id, str(new))
    store.close()
