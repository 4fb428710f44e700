"""End to end in a real headless Chromium: the newcomer's demo path, live training controls, results,
prediction and export. Every page is screenshotted to test-artifacts/screenshots/."""
from __future__ import annotations

import re
import statistics
import time
import zipfile

import pytest
from e2ehelpers import no_error_boxes, open_page, screenshot, wait_until_idle
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def sidebar(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    expect(page.get_by_role("heading", name=title if title != "Model and layers" else "Model and layers",
                            level=1)).to_be_visible(timeout=60_000)


def test_newcomer_reaches_a_trained_model_on_demo_images_in_two_clicks(app_server, context, tmp_path):
    page = open_page(context, app_server["url"])
    # (the first page a fresh server draws imports the engine: seconds on a 2-core machine)
    expect(page.get_by_role("heading", name="Transfer Studio", level=1)).to_be_visible(timeout=60_000)
    # The tab icon is served by the app itself: no font or emoji server is asked on a page load.
    icon = page.locator("link[rel~='icon']").last
    expect(icon).to_have_attribute("href", re.compile(r"^(/|data:|http://127\.0\.0\.1|http://localhost)"))
    screenshot(page, "01_home")
    clicks = 0

    page.get_by_role("button", name="Start with demo images").click()
    clicks += 1
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Fashion-MNIST demo images")).to_be_visible()
    screenshot(page, "02_train_demo_ready")
    started = time.monotonic()
    page.get_by_role("button", name="Start training").click()
    clicks += 1
    # The demo is there to watch: its curves are drawn and grow while it is still running.
    expect(page.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?.calcdata?.[0]?.length > 0",
                           timeout=120_000)
    first_points = page.evaluate("() => document.querySelector('.js-plotly-plot').calcdata[0].length")
    page.wait_for_timeout(5_000)
    expect(page.get_by_text("running", exact=True)).to_be_visible()
    points = page.evaluate("() => document.querySelector('.js-plotly-plot').calcdata[0].length")
    assert points > first_points, "the demo's curves grow while it runs"
    screenshot(page, "03_train_demo_running")
    expect(page.get_by_text("completed", exact=True)).to_be_visible(timeout=300_000)
    elapsed = time.monotonic() - started
    assert clicks <= 5
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    no_error_boxes(page)
    screenshot(page, "04_train_demo_completed")
    accuracy = page.get_by_test_id("stMetric").filter(has_text="Validation accuracy (your model)").inner_text()
    print(f"demo images: trained in {elapsed:.0f} s after {clicks} clicks; {accuracy!r}")
    assert float(re.search(r"([\d.]+) %", accuracy).group(1)) > 50

    page.get_by_role("link", name="See the results").click()
    expect(page.get_by_role("heading", name="Results", level=1)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Confusion matrix (validation)")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Examples it gets wrong")).to_be_visible()
    no_error_boxes(page)
    screenshot(page, "05_results")
    page.get_by_text("Show where the model looked", exact=False).click()
    wait_until_idle(page, timeout_ms=120_000)
    page.get_by_text("Examples it gets wrong").scroll_into_view_if_needed()
    no_error_boxes(page)
    screenshot(page, "05b_results_gallery_heatmaps")

    sidebar(page, "Try and export")
    sample = next((app_server["base"] / "cache" / "demo").glob("fashion-mnist-*/Bag/*.png"))
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(sample))
    expect(page.get_by_text(re.compile(r"^Prediction: "))).to_be_visible(timeout=120_000)
    page.get_by_role("button", name="Prepare the export bundle").click()
    download_button = page.get_by_role("button", name="Download the export bundle (.zip)")
    expect(download_button).to_be_visible(timeout=300_000)
    no_error_boxes(page)
    screenshot(page, "06_try_and_export")
    with page.expect_download(timeout=120_000) as info:
        download_button.click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        readme = zf.read("bundle/README.md").decode()
    assert {"bundle/predict.py", "bundle/labels.json", "bundle/model.onnx"} <= set(names)
    assert "import predict" in readme

    sidebar(page, "Data")
    expect(page.get_by_text("Samples per class", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_role("heading", name="Data report")).to_be_visible()
    no_error_boxes(page)
    screenshot(page, "07_data")
    sidebar(page, "Model and layers")
    expect(page.get_by_text("Trainable parameters")).to_be_visible(timeout=120_000)
    no_error_boxes(page)
    screenshot(page, "08_model_and_layers")
    page.get_by_test_id("stSelectbox").filter(has_text="Pretrained model").click()     # the model list, open
    options = page.get_by_role("option")
    expect(options.first).to_be_visible(timeout=30_000)
    listed = options.all_inner_texts()
    assert listed[0].startswith("efficientnet_lite0 · ready ✓") and not any("tiny_" in o for o in listed), listed
    screenshot(page, "08b_model_list")
    page.keyboard.press("Escape")
    sidebar(page, "Runs")
    expect(page.get_by_role("heading", name="Compare")).to_be_visible(timeout=60_000)
    no_error_boxes(page)
    screenshot(page, "09_runs")


def test_live_training_refreshes_and_obeys_pause_resume_stop(app_server, context):
    sent: list[float] = []      # client-to-server websocket messages: the live view's refresh requests
    context.on("page", lambda p: p.on("websocket", lambda ws: ws.on("framesent", lambda _: sent.append(time.monotonic()))))
    page = open_page(context, app_server["url"])
    page.get_by_role("button", name="Start with demo images").click()
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=60_000)
    sidebar(page, "Model and layers")       # full fine-tuning: every step is slow enough to watch
    page.get_by_test_id("stRadio").get_by_text("Full fine-tuning", exact=True).click()
    expect(page.get_by_test_id("stCaptionContainer").filter(has_text="Every layer trains.")).to_be_visible(timeout=60_000)
    sidebar(page, "Train")
    expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=60_000)
    epochs = page.get_by_label("Epochs", exact=True)      # long enough to pause even on a fast machine
    epochs.fill("200")
    epochs.press("Enter")
    expect(page.get_by_text("--epochs 200", exact=False)).to_be_attached(timeout=30_000)
    page.get_by_role("button", name="Start training").click()

    progress = page.get_by_test_id("stProgress")
    expect(progress.filter(has_text=re.compile(r"step [1-9]"))).to_be_visible(timeout=180_000)
    first_text = progress.inner_text()
    # The chart is drawn a moment after the progress text on a loaded machine: wait for its first trace.
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?.calcdata?.[0]", timeout=60_000)
    first_points = page.evaluate("() => document.querySelector('.js-plotly-plot').calcdata[0].length")
    sent.clear()
    window_start = time.monotonic()
    expect(progress).not_to_have_text(first_text, timeout=60_000)     # progress moves on its own
    page.wait_for_timeout(8_000)
    points = page.evaluate("() => document.querySelector('.js-plotly-plot').calcdata[0].length")
    assert points > first_points, "the loss curve grew without any click"
    window = [t for t in sent if t >= window_start]
    gaps = [b - a for a, b in zip(window, window[1:])]
    interval = statistics.median(gaps)
    print(f"live view: {len(window)} refresh requests in {time.monotonic() - window_start:.1f} s, "
          f"median interval {interval:.2f} s, max {max(gaps):.2f} s")
    assert interval <= 2.0
    no_error_boxes(page)
    screenshot(page, "10_train_live")

    # A second tab and a reload attach to the same running job; other pages stay usable meanwhile.
    run_name = page.locator("[data-testid='stMarkdownContainer'] strong").first.inner_text()
    other = open_page(context, app_server["url"], "train")
    expect(other.get_by_text(run_name).first).to_be_visible(timeout=60_000)
    expect(other.get_by_text("running", exact=True)).to_be_visible()
    sidebar(other, "Runs")
    expect(other.get_by_test_id("stAlertContentInfo").filter(has_text=run_name)).to_contain_text("is running",
                                                                                                 timeout=60_000)
    other.close()

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("paused", exact=True)).to_be_visible(timeout=120_000)
    paused_text = progress.inner_text()
    page.wait_for_timeout(4_000)
    assert progress.inner_text() == paused_text, "nothing trains while paused"
    screenshot(page, "11_train_paused")
    page.reload()
    expect(page.get_by_text("paused", exact=True)).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)
    expect(progress).not_to_have_text(paused_text, timeout=120_000)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("stopped", exact=True)).to_be_visible(timeout=180_000)
    expect(page.get_by_role("link", name="See the results")).to_be_visible()
    no_error_boxes(page)
    screenshot(page, "12_train_stopped")
