"""End to end with class names that look like numbers (ratings 1-3): the charts name every class, the
Data page's heading follows the chosen source and keeps an upload, the Model page names the top-k groups,
the run card's training time stays small after an extension, and the Runs page's tables and delete
confirmation. Screenshots go to test-artifacts/screenshots/2x_*.png."""
from __future__ import annotations

import io
import re
import zipfile

import pytest
from apphelpers import SHAPES, png_bytes, shape_image
from e2ehelpers import no_error_boxes, open_page, screenshot, wait_until_idle
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def sidebar(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible(timeout=60_000)


def ratings_zip(path):
    """Three classes named 1, 2 and 3 (as ratings often are), 14 images each, with long file names."""
    with zipfile.ZipFile(path, "w") as zf:
        for rating, kind in zip(("1", "2", "3"), SHAPES):
            for i in range(14):
                zf.writestr(f"ratings/{rating}/IMG_20240101_{rating}{i:05d}.png",
                            png_bytes(shape_image(kind, 100 * int(rating) + i, size=32)))
    return path


def test_numeric_class_names_times_and_words_in_the_browser(app_server, context, tmp_path):
    page = open_page(context, app_server["url"])
    sidebar(page, "Data")
    page.get_by_test_id("stRadio").get_by_text("Images (.zip)", exact=True).click()
    page.locator(".st-key-upload_zip").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        str(ratings_zip(tmp_path / "ratings.zip")))
    expect(page.get_by_role("heading", name="Using: your upload ratings.zip")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("Samples per class", exact=True)).to_be_visible(timeout=60_000)
    ticks = page.locator(".js-plotly-plot .xtick text")
    expect(ticks).to_have_count(3, timeout=30_000)          # the chart is drawn a moment after its title
    axis = ticks.all_text_contents()
    assert axis == ["1", "2", "3"], axis                      # one tick per class, named
    no_error_boxes(page)
    screenshot(page, "20_data_numeric_classes")

    page.get_by_test_id("stRadio").get_by_text("Text file", exact=True).click()
    expect(page.get_by_text("Upload a text file above. Until then, new runs use your upload ratings.zip."))\
        .to_be_visible(timeout=60_000)
    expect(page.get_by_role("heading", name=re.compile("^Using:"))).to_have_count(0)
    screenshot(page, "21_data_other_source")
    page.get_by_test_id("stRadio").get_by_text("Images (.zip)", exact=True).click()
    expect(page.get_by_role("heading", name="Using: your upload ratings.zip")).to_be_visible(timeout=60_000)
    screenshot(page, "21_data_back_to_images")

    sidebar(page, "Model and layers")
    wait_until_idle(page)       # a click during the page's first run can be lost when it redraws
    page.get_by_test_id("stRadio").get_by_text("Top k groups", exact=True).click()
    expect(page.get_by_text(re.compile(r"^k = \d+: .* train \(the head counts as one of the k\)\.$")))\
        .to_be_visible(timeout=120_000)
    expect(page.get_by_text("Each later epoch (rough)")).to_be_visible(timeout=120_000)
    no_error_boxes(page)
    screenshot(page, "22_model_top_k")
    page.get_by_test_id("stRadio").get_by_text("Feature extraction (head only)", exact=True).click()
    wait_until_idle(page)

    sidebar(page, "Train")
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill("4")
    epochs.press("Enter")
    expect(page.get_by_text("--epochs 4", exact=False)).to_be_attached(timeout=30_000)
    page.get_by_label("Run name (optional)").fill("ratings 1-3, head only, learning rate 0.002, four epochs")
    page.get_by_label("Run name (optional)").press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("completed", exact=True)).to_be_visible(timeout=300_000)
    # The page redraws once when the run ends; while it does, the old run card can still be on screen.
    training_time = page.get_by_test_id("stMetric").filter(has_text="Training time")
    expect(training_time).to_have_count(1, timeout=30_000)
    expect(training_time).to_be_visible()
    no_error_boxes(page)
    screenshot(page, "23_train_numeric_completed")

    sidebar(page, "Results")
    expect(page.get_by_text("Confusion matrix (validation)")).to_be_visible(timeout=60_000)
    rows = page.locator(".js-plotly-plot").first.locator(".ytick text")
    expect(rows).to_have_count(3, timeout=30_000)
    assert rows.all_text_contents() == ["1", "2", "3"]       # every row named
    no_error_boxes(page)
    screenshot(page, "24_results_numeric_matrix")

    sidebar(page, "Try and export")
    sample = tmp_path / "new.png"
    shape_image("square", 999, size=32).save(sample)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(sample))
    expect(page.get_by_text(re.compile(r"^Prediction: [123] "))).to_be_visible(timeout=120_000)
    bars = page.locator(".js-plotly-plot").first.locator(".ytick text")
    expect(bars).to_have_count(3, timeout=30_000)
    assert sorted(bars.all_text_contents()) == ["1", "2", "3"]               # the bars carry their class names
    no_error_boxes(page)
    screenshot(page, "25_try_numeric_top_predictions")

    sidebar(page, "Runs")
    expect(page.get_by_role("heading", name="Compare")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Extend").click()
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("completed", exact=True)).to_be_visible(timeout=300_000)
    wait_until_idle(page)     # the page reruns once when the run ends; read the metric after that
    time_text = page.get_by_test_id("stMetric").filter(has_text="Training time").first.inner_text()
    assert "min" not in time_text, time_text                   # seconds of training, not the time since creation
    screenshot(page, "26_train_extended")

    sidebar(page, "Runs")
    expect(page.get_by_role("heading", name="Compare")).to_be_visible(timeout=60_000)
    no_error_boxes(page)
    screenshot(page, "27_runs")
    page.get_by_role("button", name="Delete...").click()
    expect(page.get_by_text("This cannot be undone.", exact=False)).to_be_visible(timeout=60_000)
    screenshot(page, "28_runs_delete_confirmation")
    page.get_by_role("button", name="Cancel").click()
    wait_until_idle(page)
