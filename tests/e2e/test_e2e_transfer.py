"""In a real headless Chromium: the digits demo with its shifted copy as a new domain, the layer probe on the
Model page, and a DANN run whose live chart draws the new domain's accuracy. Screenshots go to
test-artifacts/screenshots/ (50_... to 53_...)."""
from __future__ import annotations

import pytest
from e2ehelpers import no_error_boxes, open_page, screenshot, wait_until_idle
from playwright.sync_api import expect
from test_e2e_app import sidebar

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_until_idle(page)


def test_a_teacher_adapts_the_digits_to_their_shifted_copy(app_server, context):
    page = open_page(context, app_server["url"])
    sidebar(page, "Data")
    # The draft is shared with the other browser tests: its data may be an upload, so pick the demo sets.
    page.get_by_test_id("stRadio").get_by_text("Demo set", exact=True).click()
    per_class = page.get_by_label("Examples per class", exact=True).nth(2)   # the demo sets: bbc, fashion, digits
    per_class.fill("20")
    per_class.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Use Digits", exact=True).click()
    expect(page.get_by_role("heading", name="Data report")).to_be_visible(timeout=60_000)
    page.get_by_text("New domain (optional)").click()
    page.get_by_role("button", name="Use the shifted digits as the new domain").click()
    expect(page.get_by_text("898 unlabelled images")).to_be_visible(timeout=60_000)
    no_error_boxes(page)
    screenshot(page, "50_data_new_domain")

    sidebar(page, "Model and layers")
    expect(page.get_by_text("Trainable parameters")).to_be_visible(timeout=120_000)
    fill(page, "Image size (pixels)", "32")
    page.get_by_test_id("stRadio").get_by_text("Full fine-tuning", exact=True).click()
    wait_until_idle(page)
    box = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Adaptation method", exact=True))
    box.scroll_into_view_if_needed()
    box.click()
    page.keyboard.type("dann")     # the selectbox filters its options as one types
    expect(page.get_by_role("option", name="dann")).to_have_count(1, timeout=30_000)
    page.keyboard.press("Enter")
    wait_until_idle(page)
    page.get_by_text("Which layer transfers best?").click()
    wait_until_idle(page)       # a click during a redraw can be lost
    page.get_by_role("button", name="Measure each layer").click()
    expect(page.get_by_text("validation accuracy with a linear head")).to_be_visible(timeout=300_000)
    no_error_boxes(page)
    screenshot(page, "51_model_probe_and_adaptation")

    sidebar(page, "Train")
    expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=60_000)
    fill(page, "Epochs", "2")
    expect(page.get_by_text("--adapt dann", exact=False)).to_be_attached(timeout=30_000)
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("completed", exact=True)).to_be_visible(timeout=600_000)
    legend = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(p => p.data.map(t => t.name))")
    assert "new domain" in legend, legend
    no_error_boxes(page)
    screenshot(page, "52_train_adapted")
    page.get_by_role("link", name="See the results").click()
    expect(page.get_by_text("New domain (labelled examples, never trained on)", exact=False)).to_be_visible(timeout=60_000)
    screenshot(page, "53_results_new_domain")
