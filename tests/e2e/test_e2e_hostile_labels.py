"""End to end: class labels written as Markdown and HTML render as text in the browser (what AppTest
cannot see: Streamlit's Markdown and Plotly's HTML are rendered by the frontend). A run on such labels,
its Results page: no link, image, colour or maths from a label, no <a> in the confusion matrix, and no
request to the labels' addresses. Screenshot: test-artifacts/screenshots/hostile_labels_results.png."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from apphelpers import train_run
from e2ehelpers import no_error_boxes, open_page, screenshot, wait_until_idle
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardening"))
from hostile import ANCHOR, MARKUP_LABELS, image_csv  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


def test_hostile_labels_render_as_text_on_the_results_page(app_server, context, tmp_path):
    data = image_csv(tmp_path / "hostile", (*MARKUP_LABELS, ANCHOR))
    train_run(app_server["base"] / "runs", str(data), "tiny_cnn", **{"model.image_size": 32})
    page = open_page(context, app_server["url"], "results")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    expect(page.get_by_role("heading", name="Results", level=1)).to_be_visible(timeout=60_000)
    page.get_by_test_id("stRadio").get_by_text("Highest loss (hardest examples)").click()
    wait_until_idle(page)
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stCaptionContainer").filter(has_text="predicted").first).to_be_visible()
    no_error_boxes(page)
    shot = screenshot(page, "hostile_labels_results")

    main = page.get_by_test_id("stMain")
    assert chart.locator("a").count() == 0, "a label became a link in the confusion matrix"
    ticks = chart.locator(".xtick text").all_text_contents()
    assert ANCHOR in ticks, ticks                                     # shown as typed
    assert main.locator("a[href*='127.0.0.1:9']").count() == 0, "a label became a link"
    assert main.locator("img[src*='127.0.0.1:9']").count() == 0, "a label became an image"
    assert main.locator(".katex").count() == 0, "a label was typeset as maths"
    assert not [r for r in requests if "127.0.0.1:9/" in r], requests
    page_text = main.inner_text().replace("\u2060", "")
    for label in (*MARKUP_LABELS, ANCHOR):
        assert label in page_text, f"{label!r} is not shown as typed ({shot})"
