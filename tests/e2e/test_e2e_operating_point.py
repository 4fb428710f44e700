"""In a real headless Chromium: a domain expert's two-class parts (few defects among many good parts): class balance
suggested, the learning-rate finder, the decision threshold on the Results page, evaluating on another upload, and
starting the next run from this one. The Try page's "Why?" heatmap of a part, and the embedding map. Screenshots go
to test-artifacts/screenshots/ (60_... to 67_...)."""
from __future__ import annotations

import re
import zipfile

import pytest
from apphelpers import png_bytes, shape_image
from e2ehelpers import no_error_boxes, open_page, screenshot, wait_until_idle
from playwright.sync_api import expect
from test_e2e_app import sidebar
from test_e2e_transfer import fill

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def parts_zip(path, good: int = 36, defect: int = 3):
    """'good' parts (circles) outnumber 'defect' parts (squares) twelve to one."""
    with zipfile.ZipFile(path, "w") as zf:
        for label, kind, count in (("good", "circle", good), ("defect", "square", defect)):
            for i in range(count):
                zf.writestr(f"parts/{label}/{i:03d}.png", png_bytes(shape_image(kind, 500 + i, size=32)))
    return path


def test_a_domain_expert_sets_the_operating_point_of_a_two_class_model(app_server, context, tmp_path):
    page = open_page(context, app_server["url"])
    sidebar(page, "Data")
    page.get_by_test_id("stRadio").get_by_text("Images (.zip)", exact=True).click()
    page.locator(".st-key-upload_zip").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        str(parts_zip(tmp_path / "parts.zip")))
    expect(page.get_by_role("heading", name="Using: your upload parts.zip")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("12 times as many samples", exact=False)).to_be_visible(timeout=60_000)
    wait_until_idle(page)   # a rerun still drawing can briefly show the expander twice
    page.get_by_text("Separate validation and test files (optional)").first.click()
    wait_until_idle(page)
    screenshot(page, "60_data_imbalanced_and_split_files")

    sidebar(page, "Model and layers")
    expect(page.get_by_text("Trainable parameters")).to_be_visible(timeout=120_000)
    fill(page, "Image size (pixels)", "32")
    sidebar(page, "Train")
    expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Set Class balance to", exact=False)).to_be_visible(timeout=60_000)
    page.get_by_text("Find a learning rate").click()
    page.get_by_role("button", name="Run the test").click()
    expect(page.get_by_text(re.compile(r"^Suggested: "))).to_be_visible(timeout=300_000)
    no_error_boxes(page)
    screenshot(page, "61_train_lr_finder")
    use = page.get_by_role("button", name=re.compile(r"^Use \d"))
    if use.count():
        use.click()
        wait_until_idle(page)
    fill(page, "Epochs", "3")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("completed", exact=True)).to_be_visible(timeout=600_000)

    page.get_by_role("link", name="See the results").click()
    expect(page.get_by_role("heading", name="Decision threshold")).to_be_visible(timeout=60_000)
    page.get_by_test_id("stRadio").get_by_text("A share of them to find (recall)", exact=True).click()
    wait_until_idle(page)
    page.get_by_role("button", name=re.compile(r"^Use the threshold")).click()
    expect(page.get_by_text("In use: it says", exact=False)).to_be_visible(timeout=60_000)
    no_error_boxes(page)
    page.get_by_role("heading", name="Decision threshold").scroll_into_view_if_needed()
    screenshot(page, "62_results_decision_threshold")
    page.get_by_text("Evaluate on other labelled data").click()
    page.locator("[class*='st-key-evaluate_upload_']").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        str(parts_zip(tmp_path / "more_parts.zip", good=10, defect=10)))
    expect(page.get_by_text("Confusion matrix (more_parts.zip)")).to_be_visible(timeout=120_000)
    no_error_boxes(page)
    screenshot(page, "63_results_evaluate_other_data")
    page.get_by_text("Show the embedding map", exact=False).click()
    expect(page.get_by_text("misclassified (crosses)", exact=False)).to_be_visible(timeout=180_000)
    no_error_boxes(page)
    page.get_by_text("misclassified (crosses)", exact=False).scroll_into_view_if_needed()
    screenshot(page, "67_results_embedding_map")

    sidebar(page, "Try and export")
    part = tmp_path / "part.png"
    shape_image("square", 901, size=32).save(part)
    page.locator(".st-key-try_image").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(part))
    expect(page.get_by_text(re.compile(r"^Prediction: "))).to_be_visible(timeout=120_000)
    page.get_by_text("Why? Show what the prediction rests on").click()
    expect(page.get_by_text(re.compile(r"^Evidence for "))).to_be_visible(timeout=120_000)
    no_error_boxes(page)
    screenshot(page, "66_try_why_heatmap")

    sidebar(page, "Model and layers")
    page.get_by_text("Start from one of your runs").click()
    expect(page.get_by_role("button", name="Start from this run")).to_be_visible(timeout=60_000)
    no_error_boxes(page)
    screenshot(page, "64_model_start_from_a_run")
    sidebar(page, "Runs")
    expect(page.get_by_role("heading", name="Compare")).to_be_visible(timeout=60_000)
    no_error_boxes(page)
    screenshot(page, "65_runs_compare")
