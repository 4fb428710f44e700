"""Paths inside a table (an image column of a CSV) are held to the allowed roots, like the table itself
(hostile trial: an uploaded CSV named images elsewhere on the machine, shown as thumbnails and trained on).

With roots (the web app) a row naming a file outside them is skipped with one line naming the rule, and
nothing outside is opened, listed or probed; with roots=None (the command line) every row loads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from apphelpers import no_exceptions, open_app, train_run
from datafiles import save_image

from transfer_core.config import RunConfig
from transfer_core.data import load_dataset
from transfer_core.errors import DataError
from transfer_core.events import RunStatus
from transfer_core.jobs import JobManager
from transfer_core.preparation import guess_modality, prepare_data

RULE = "outside the folders this app may read"
INSIDE = {"a": 4, "b": 4}         # images per class under the roots
SECRET = "secret"                  # the class of every image outside the roots


def _images(folder: Path, stem: str, n: int, seed: int) -> list[Path]:
    return [save_image(folder / f"{stem}{i}.png", size=(16, 16), seed=seed + i) for i in range(n)]


@pytest.fixture
def layout(tmp_path):
    """<tmp>/roots/data/table.csv naming images under the roots and, in three ways, images outside them:
    an absolute path, a relative path that climbs out with ../, and a link inside the roots pointing out."""
    roots, outside = tmp_path / "roots", tmp_path / "outside"
    data = roots / "data"
    rows = []
    for seed, (label, n) in enumerate(INSIDE.items()):
        rows += [(f"imgs/{p.name}", label) for p in _images(data / "imgs", f"in_{label}", n, 100 * seed)]
    secrets = _images(outside, SECRET, 3, 500)
    (data / "imgs" / "link.png").symlink_to(secrets[2])
    rows += [(str(secrets[0]), SECRET), (f"../../outside/{secrets[1].name}", SECRET), ("imgs/link.png", SECRET)]
    table = data / "table.csv"
    table.write_text("image,label\n" + "".join(f"{path},{label}\n" for path, label in rows))
    return {"roots": [roots], "table": table, "outside": outside, "refused": ["row 9", "row 10", "row 11"]}


def _config(table: Path) -> RunConfig:
    cfg = RunConfig()
    cfg.set("data.path", str(table))
    cfg.set("model.name", "tiny_cnn")
    cfg.set("model.pretrained", False)
    cfg.set("model.image_size", 16)
    cfg.set("train.epochs", 1)
    cfg.set("train.batch_size", 4)
    cfg.set("train.device", "cpu")
    return cfg


def _refusal_lines(warnings: list[str]) -> list[str]:
    return [w for w in warnings if RULE in w]


def test_rows_outside_the_roots_are_skipped_with_one_line_naming_the_rule(layout):
    ds = load_dataset(layout["table"], allowed_roots=layout["roots"])
    assert ds.modality == "image" and ds.class_counts() == INSIDE
    assert all(Path(s.input).is_relative_to(layout["roots"][0].resolve()) for s in ds.samples)
    assert [row for row, reason in ds.skipped if RULE in reason] == layout["refused"]
    [line] = _refusal_lines(ds.warnings)
    assert "\n" not in line and all(row in line for row in layout["refused"]), line
    cli = load_dataset(layout["table"])                 # the command line (roots=None) reads every row
    assert cli.class_counts() == {**INSIDE, SECRET: 3} and not cli.skipped


def test_nothing_outside_the_roots_is_probed_listed_or_opened(layout, monkeypatch):
    """Only Path.resolve() may look at an outside path (to follow links); no exists/is_file/listing/open."""
    touched: list[str] = []
    outside = str(layout["outside"])

    def spy(name):
        real = getattr(Path, name)

        def wrapper(self, *args, **kwargs):
            if str(self).startswith(outside) or "outside" in Path(str(self)).parts:
                touched.append(f"{name} {self}")
            return real(self, *args, **kwargs)
        return wrapper

    for name in ("exists", "is_file", "is_dir", "iterdir", "open"):
        monkeypatch.setattr(Path, name, spy(name))
    load_dataset(layout["table"], allowed_roots=layout["roots"])
    assert not touched, touched


def test_a_table_whose_rows_all_lie_outside_is_refused_naming_the_rule(layout):
    only_outside = layout["table"].with_name("outside_only.csv")
    secrets = sorted(layout["outside"].glob("*.png"))
    only_outside.write_text("image,label\n" + "".join(f"{p},{SECRET}\n" for p in secrets))
    with pytest.raises(DataError) as info:
        load_dataset(only_outside, allowed_roots=layout["roots"])
    message = str(info.value)
    assert "no usable rows" in message and RULE in message and "3 row(s)" in message and "\n" not in message


def test_a_table_outside_the_roots_is_refused(layout):
    elsewhere = layout["outside"] / "table.csv"
    elsewhere.write_text("image,label\nsecret0.png,x\n")
    for load in (lambda: load_dataset(elsewhere, allowed_roots=layout["roots"]),
                 lambda: guess_modality(str(elsewhere), allowed_roots=layout["roots"])):
        with pytest.raises(DataError, match=f"is {RULE}"):
            load()


def test_prepare_data_and_guess_modality_follow_the_roots(layout):
    prepared = prepare_data(_config(layout["table"]), allowed_roots=layout["roots"])
    assert prepared.classes == ["a", "b"] and len(prepared.dataset) == sum(INSIDE.values())
    assert _refusal_lines(prepared.notices)
    assert any(RULE in f.message for f in prepared.report.findings)   # the Data page's report says it
    assert guess_modality(str(layout["table"]), allowed_roots=layout["roots"]) == "image"


def test_a_web_app_run_trains_only_on_the_rows_inside_the_roots(layout, store):
    manager = JobManager(store, allowed_roots=layout["roots"])
    try:
        run_id = manager.submit(_config(layout["table"]))
        result = manager.wait(run_id, 180)
    finally:
        manager.shutdown()
    assert result is not None and result.status == RunStatus.COMPLETED, result and result.message
    assert json.loads((store.run_dir(run_id) / "labels.json").read_text()) == ["a", "b"]   # no "secret" class
    notices = [e.message for e in store.events(run_id) if e.kind == "Notice"]
    assert _refusal_lines(notices), notices


def test_the_web_app_refuses_to_resume_a_command_line_run_on_data_outside_the_roots(layout, store, tmp_path):
    """Refused before the run changes: failing inside the worker would mark it not resumable, for the CLI too."""
    outside_folder = tmp_path / "outside" / "folder"
    for seed, label in enumerate(("x", "y")):
        _images(outside_folder / label, label, 4, 100 * seed)
    cli_run = train_run(store.root, str(outside_folder), "tiny_cnn", **{"model.pretrained": False,
                                                                       "model.image_size": 16, "train.epochs": 1})
    manager = JobManager(store, allowed_roots=layout["roots"])
    try:
        with pytest.raises(DataError, match=f"is {RULE}"):
            manager.resume(cli_run, extra_epochs=1)
    finally:
        manager.shutdown()
    assert store.get_run(cli_run).status == RunStatus.COMPLETED and not store.resume_refusal(cli_run)


# ------------------------------------------------------------------------------------------ the web app
@pytest.fixture
def app_dirs(app_env, monkeypatch):
    """The shared AppTest setup without its extra allowed roots: the app may read only its runs and data."""
    monkeypatch.delenv("TRANSFER_APP_EXTRA_ROOTS")
    return app_env


def test_data_page_skips_outside_rows_and_shows_none_of_their_images(app_dirs):
    inside = [p for seed, label in enumerate(("a", "b"))
              for p in _images(app_dirs / "data" / "imgs" / label, f"in_{label}", 4, 100 * seed)]
    outside = _images(app_dirs / "elsewhere", SECRET, 3, 900)
    body = "image,label\n" + "".join(f"{p},{p.parent.name}\n" for p in inside) \
        + "".join(f"{p},{label}\n" for p, label in zip(outside, "aba"))
    at = open_app("1_data", timeout=120)
    at.radio(key="data_source").set_value("Text file").run()
    at.file_uploader(key="upload_text").set_value(("labels.csv", body.encode(), "text/csv")).run()
    no_exceptions(at)
    refusals = [i.value for i in at.info if RULE in i.value]
    assert len(refusals) == 1 and "row 9, row 10, row 11" in refusals[0], [i.value for i in at.info]
    captions = [c for images in at.get("image") for c in images.captions]
    assert len(captions) == len(inside), captions
    assert not [c for c in captions if SECRET in c], captions


def test_results_page_of_a_command_line_run_on_outside_data_shows_a_note_not_its_files(app_dirs):
    outside_folder = app_dirs / "elsewhere" / "shapes"
    for seed, label in enumerate(("x", "y")):
        _images(outside_folder / label, label, 6, 100 * seed)
    train_run(app_dirs / "runs", str(outside_folder), "tiny_cnn", **{"model.pretrained": False,
                                                                    "model.image_size": 16})
    at = open_app("4_results", timeout=120)
    at.radio(key="gallery_kind").set_value("highest loss").run()
    no_exceptions(at)
    assert not at.get("image"), "an image from outside the allowed roots was shown"
    assert any("not shown" in c.value and RULE in c.value for c in at.caption), [c.value for c in at.caption]
