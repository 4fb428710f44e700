"""In a real headless Chromium, a teacher with the BBC News demo: the Try page's "Why?" marks the words a
prediction rests on, and the coach speaks beside the live curves of a run made not to learn (a learning rate
too low). Screenshots go to test-artifacts/screenshots/ (68_... to 70_...)."""
from __future__ import annotations

import re

import pytest
from e2ehelpers import no_error_boxes, open_page, screenshot, wait_until_idle
from playwright.sync_api import expect
from test_e2e_app import sidebar
from test_e2e_transfer import fill

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

SENTENCE = "The striker scored twice as the home team won the league match in front of a full stadium."


def test_a_teacher_sees_why_a_text_is_classified_and_hears_the_coach(app_server, context):
    page = open_page(context, app_server["url"])
    page.get_by_role("button", name="Start with demo texts").click()
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=60_000)
    fill(page, "Epochs", "3")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("completed", exact=True)).to_be_visible(timeout=600_000)

    page.get_by_role("link", name="See the results").click()
    expect(page.get_by_text("Examples it gets wrong")).to_be_visible(timeout=60_000)
    page.get_by_text("Show the words each prediction rests on").click()
    expect(page.get_by_text(re.compile(r"^true .+ · predicted ")).first).to_be_visible(timeout=120_000)
    wait_until_idle(page, timeout_ms=120_000)   # one text after another
    wrong = page.get_by_test_id("stDataFrame").last.locator("[role='row']").count() - 1   # without the header
    assert page.get_by_text(re.compile(r"^true .+ · predicted ")).count() == wrong
    no_error_boxes(page)
    page.get_by_text("Examples it gets wrong").scroll_into_view_if_needed()
    screenshot(page, "70_results_words_of_the_mistakes")

    sidebar(page, "Try and export")
    page.get_by_label("Type or paste a text").fill(SENTENCE)
    page.get_by_role("button", name="Classify").click()
    expect(page.get_by_text(re.compile(r"^Prediction: "))).to_be_visible(timeout=120_000)
    page.get_by_text("Why? Show what the prediction rests on").click()
    expect(page.get_by_text(re.compile(r"^Scores for "))).to_be_visible(timeout=120_000)
    expect(page.get_by_text("Integrated gradients over the word embeddings", exact=False)).to_be_visible()
    no_error_boxes(page)
    screenshot(page, "68_try_why_words")

    # The lowest learning rate the form takes (1e-7, 20 000 times below the demo's): after three epochs the
    # training accuracy is still near chance.
    sidebar(page, "Train")
    expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=60_000)
    fill(page, "Learning rate", "1e-7")
    fill(page, "Epochs", "200")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("running", exact=True)).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile(r"After \d+ epochs the training accuracy is"))).to_be_visible(timeout=300_000)
    expect(page.get_by_text("running", exact=True)).to_be_visible()
    no_error_boxes(page)
    screenshot(page, "69_train_coach_live")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("stopped", exact=True)).to_be_visible(timeout=180_000)
    wait_until_idle(page)
