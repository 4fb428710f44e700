"""Data findings of the hostile trial (issue 13) as met on the Data page (AppTest): webcam classes whose
names clean to one folder are refused, and a JSONL file the engine cannot read gets one line naming the row."""
from __future__ import annotations

import pytest

from app.text import md

from apphelpers import no_exceptions, open_app


@pytest.mark.parametrize("names,first,second", [("cat/dog, cat:dog", "cat/dog", "cat:dog"), ("OK, OK.", "OK", "OK.")])
def test_webcam_classes_that_clean_to_one_folder_are_refused(app_env, names, first, second):
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Webcam").run()
    at.text_input(key="cam_classes").input(names).run()
    no_exceptions(at)
    errors = [e.value for e in at.error]
    shown = [f"'{md(name)}'" for name in (first, second)]     # class names are shown as text (escaped)
    assert any(shown[0] in e and shown[1] in e and "rename" in e for e in errors), errors
    assert not at.camera_input and not [b for b in at.button if b.key == "cam_use"]


def test_saving_clashing_webcam_classes_writes_nothing(app_env):
    from app.data_ui import save_camera_captures
    from transfer_core.errors import DataError
    with pytest.raises(DataError, match="'cat/dog' and 'cat:dog'"):
        save_camera_captures({"cat/dog": [b"a", b"b"], "cat:dog": [b"c", b"d"]})
    uploads = app_env / "data" / "uploads"
    assert not (uploads.exists() and any(uploads.iterdir()))


@pytest.mark.parametrize("body,line", [
    ('{"text": "a", "label": "x"}\n{"text": ' + "[" * 50_000 + "]" * 50_000 + ', "label": "y"}\n', "line 2"),
    ('{"text": "a", "label": 1}\n{"text": "b", "label": ' + "7" * 5000 + "}\n", "line 2"),
], ids=["deeply_nested", "5000_digit_label"])
def test_unreadable_jsonl_upload_is_one_line_naming_the_row(app_env, monkeypatch, body, line):
    monkeypatch.setenv("TRANSFER_CORE_CACHE", str(app_env / "cache"))
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Text file").run()
    at.file_uploader(key="upload_text").set_value(("odd.jsonl", body.encode(), "application/json")).run()
    no_exceptions(at)
    errors = [e.value for e in at.error]
    assert any(line in e and "odd.jsonl" in e and "\n" not in e for e in errors), errors
