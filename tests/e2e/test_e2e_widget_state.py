"""End to end: a setting's box shows the value in use after the page went a while without drawing it (the
Data page hides the split settings while another source has no data). Screenshot:
test-artifacts/screenshots/29_data_split_after_switching_back.png."""
from __future__ import annotations

import json
import time
import zipfile

import pytest
from apphelpers import SHAPES, png_bytes, shape_image
from e2ehelpers import no_error_boxes, open_page, screenshot, wait_until_idle
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


def shapes_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        for kind in SHAPES[:2]:
            for i in range(12):
                zf.writestr(f"shapes/{kind}/{i:03d}.png", png_bytes(shape_image(kind, i, size=32)))
    return path


def in_use(app_server, dotted: str):
    """The draft's value, as new runs will use it (the app keeps the latest draft in last_config.json)."""
    section, name = dotted.split(".")
    return json.loads((app_server["base"] / "data" / "last_config.json").read_text())[section][name]


def settles_at(app_server, dotted: str, expected: float, timeout: float = 30) -> None:
    """The value in use reaches `expected` (the server writes the draft during the run the click starts)."""
    deadline = time.monotonic() + timeout
    while in_use(app_server, dotted) != pytest.approx(expected):
        assert time.monotonic() < deadline, (dotted, in_use(app_server, dotted), expected)
        time.sleep(0.2)


def test_split_setting_shows_the_value_in_use_after_switching_sources(app_server, context, tmp_path):
    page = open_page(context, app_server["url"])
    page.get_by_test_id("stSidebarNav").get_by_text("Data", exact=True).click()
    page.get_by_test_id("stRadio").get_by_text("Images (.zip)", exact=True).click()
    uploader = page.locator(".st-key-upload_zip").get_by_test_id("stFileUploaderDropzoneInput")  # not the new domain's
    uploader.set_input_files(str(shapes_zip(tmp_path / "shapes.zip")))
    expect(page.get_by_role("heading", name="Using: your upload shapes.zip")).to_be_visible(timeout=120_000)
    share = page.get_by_label("Validation share", exact=True)
    before = in_use(app_server, "data.val_fraction")         # the draft is shared with the other browser tests
    expect(share).to_have_value(f"{before:g}", timeout=30_000)

    page.get_by_test_id("stRadio").get_by_text("Text file", exact=True).click()
    expect(page.get_by_text("Upload a text file above.", exact=False)).to_be_visible(timeout=60_000)
    # Wait until the browser has dropped the box (about a second after the run); coming back sooner
    # reuses the box still on the page, which hides the problem.
    expect(share).to_have_count(0, timeout=30_000)
    page.get_by_test_id("stRadio").get_by_text("Images (.zip)", exact=True).click()
    expect(page.get_by_role("heading", name="Using: your upload shapes.zip")).to_be_visible(timeout=60_000)
    wait_until_idle(page)
    screenshot(page, "29_data_split_after_switching_back")
    assert float(share.input_value()) == in_use(app_server, "data.val_fraction") == before

    # One step from the value in use, not from the box's minimum; and back, leaving the draft as it was.
    box = page.get_by_test_id("stNumberInput").filter(has_text="Validation share")
    box.get_by_test_id("stNumberInputStepUp").click()
    wait_until_idle(page)
    expect(share).to_have_value(f"{before + 0.01:g}", timeout=10_000)
    settles_at(app_server, "data.val_fraction", before + 0.01)
    box.get_by_test_id("stNumberInputStepDown").click()
    wait_until_idle(page)
    expect(share).to_have_value(f"{before:g}", timeout=10_000)
    settles_at(app_server, "data.val_fraction", before)
    no_error_boxes(page)
