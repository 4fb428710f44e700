"""A representative subset of the bad inputs uploaded on the Data page (AppTest): a friendly one-line
message (or a data-report warning naming the skipped item), no exception, nothing written outside the
app's data/runs/cache folders, and the page still works afterwards."""
from __future__ import annotations

import pytest

from apphelpers import no_exceptions, open_app
from badinputs import ALL_CASES, zip_bytes_of

# case id -> (upload widget, what the page must say)
UPLOADS = {
    "truncated_jpeg": ("zip", "cannot be read"),
    "decompression_bomb_png": ("zip", "cannot be read"),
    "zip_dotdot_entry": ("zip", "leaves the folder"),
    "zip_bomb": ("zip", "zip bomb"),
    "zip_empty": ("zip", "is empty"),
    "header_only": ("text", "header but no rows"),
    "not_utf8_bytes": ("text", "not UTF-8"),
    "5000_classes_three_samples_each": ("text", "more than the limit of 1,000"),
}
CASES = [c for c in ALL_CASES if c.id in UPLOADS]


def _page_text(at) -> str:
    return " ".join(e.value for kind in (at.error, at.warning, at.info) for e in kind)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_data_page_upload(case, app_env, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TRANSFER_CORE_CACHE", str(app_env / "cache"))
    name, data = zip_bytes_of(case, tmp_path_factory.mktemp("upload"))
    widget, expected = UPLOADS[case.id]
    at = open_app("1_data")
    if widget == "zip":
        at.radio(key="data_source").set_value("Images (.zip)").run()
        at.file_uploader(key="upload_zip").set_value((name, data, "application/zip")).run()
    else:
        at.radio(key="data_source").set_value("Text file").run()
        at.file_uploader(key="upload_text").set_value((name, data, "text/csv")).run()
    no_exceptions(at)
    assert at.title[0].value == "Data"
    text = _page_text(at)
    assert expected in text, text
    for box in at.error:
        assert "\n" not in box.value.split("**What to do:**")[0], box.value
    # Nothing outside the app's folders; no half-extracted zip.
    assert {p.name for p in app_env.iterdir()} <= {"data", "runs", "cache"}
    extracted = app_env / "cache" / "extracted"
    assert not (extracted.exists() and [p for p in extracted.iterdir() if p.name.startswith(".extracting")])
    # The page still works: a demo set can be chosen next.
    at.radio(key="data_source").set_value("Demo set").run()
    no_exceptions(at)
    assert any(b.key == "use_demo_bbc-news" for b in at.button)
