"""User text shown as text: labels, file names, texts and run names never render as Markdown or Plotly HTML.

AppTest hands back each element's body as the page sent it: a body holding the raw hostile text would
render it (an image fetched, a link, a colour, maths); the escaped text (app.text.md) must be there instead.
"""
from __future__ import annotations

import html as html_module
import json
import re

import pandas as pd
import pytest
from apphelpers import draft, no_exceptions, open_app, png_bytes, shape_image, train_run
from hostile import (ANCHOR, COLOUR, FILE_NAMES, FOLDER_LABELS, FORMULA, IMAGE, LATEX, LINK, MARKUP_LABELS,
                     image_csv, image_folder, text_csv)
from markdown_it import MarkdownIt

from app import charts
from app.text import WORD_JOINER, md, plot

RUN_NAME = f"{LINK} {COLOUR}"


def bodies(at) -> list[str]:
    """Every text on the page that Streamlit reads as Markdown: texts, alerts, captions (images' too),
    headings and widget labels."""
    out = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader",
                                "title", "header") for e in at.get(kind)]
    for images in at.get("image"):
        out += [c for c in images.captions if c]
    for kind in ("radio", "selectbox", "multiselect", "text_input", "number_input", "button", "toggle",
                 "metric", "slider", "text_area", "camera_input"):
        out += [e.label for e in at.get(kind) if getattr(e, "label", None)]
    for radio in at.get("radio"):
        out += list(radio.proto.options)
    return out


def assert_shown_as_text(at, hostile: tuple[str, ...]) -> None:
    texts = bodies(at)
    for h in hostile:
        raw = [t for t in texts if h in t]
        assert not raw, f"rendered as Markdown: {raw}"
        assert any(md(h) in t for t in texts), f"{h!r} is not shown (escaped) anywhere: {texts}"


# ---------------------------------------------------------------- the helpers


def shown(html: str) -> str:
    """The text a browser shows for rendered HTML."""
    return html_module.unescape(re.sub(r"<[^>]*>", "", html)).replace(WORD_JOINER, "")


@pytest.mark.parametrize("value", [IMAGE, LINK, COLOUR, LATEX, ANCHOR, FORMULA, "**b** *i* _i_ `c` ~~s~~ a|b",
                                   "http://127.0.0.1:9/x www.example.org a@example.org :smile: :material/home:",
                                   "line\n# heading\n- item", "- item", "12. item", "> quote", "# heading",
                                   "&lt;entity&gt; \\[escaped\\] &amp;", "tiny_cnn a_b_c", "plain words 123"])
def test_md_escapes_every_markdown_construct(value):
    escaped = md(value)
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(f"**{escaped}** · tail")
    assert re.findall(r"<[^>]*>", html) == ["<p>", "<strong>", "</strong>", "</p>"], html   # no other element
    assert shown(html) == value.replace("\n", " ") + " · tail\n", "the text itself, on one line"
    alone = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(escaped)   # at a block's start
    assert re.findall(r"<[^>]*>", alone) == ["<p>", "</p>"], alone
    # Streamlit's own markup, which CommonMark does not know: $ maths, and the ":name:" emoji and icons
    # and GFM's bare links, which match the text after the escapes are gone (a word joiner breaks them).
    assert not re.search(r"(?<!\\)\$", escaped), escaped
    text = escaped.replace("\\", "")
    assert not re.search(r":[A-Za-z0-9_+/-]|https?://|www\.|\w@", text), text


def test_md_leaves_ordinary_text_alone():
    assert md("tiny_cnn on shapes.zip (60 per class); lr 0.003, 5 % off") == \
        "tiny_cnn on shapes.zip (60 per class); lr 0.003, 5 % off"


def test_plot_escapes_html():
    assert plot(ANCHOR) == '&lt;a href="http://127.0.0.1:9/a"&gt;anchor&lt;/a&gt;'
    assert plot("<b>x</b>\n<br>&") == "&lt;b&gt;x&lt;/b&gt; &lt;br&gt;&amp;"


@pytest.mark.parametrize("figure", ["confusion_matrix", "class_counts", "top_k", "compare_curves", "layer_params"])
def test_charts_show_labels_as_text(figure):
    labels = [ANCHOR, "<b>bold</b>", "plain"]
    build = {
        "confusion_matrix": lambda: charts.confusion_matrix([[1, 2, 0], [0, 3, 1], [1, 0, 2]], labels),
        "class_counts": lambda: charts.class_counts(dict.fromkeys(labels, 3), {"train": dict.fromkeys(labels, 2),
                                                                               "val": dict.fromkeys(labels, 1)}),
        "top_k": lambda: charts.top_k([{"label": c, "probability": p} for c, p in zip(labels, (0.6, 0.3, 0.1))]),
        "compare_curves": lambda: charts.compare_curves(
            pd.DataFrame({"run_id": ["r1", "r1", "r2"], "epoch": [0, 1, 0], "val_accuracy": [0.5, 0.6, 0.4]}),
            "val_accuracy", {"r1": ANCHOR, "r2": "<b>bold</b>"}, title="<a href='x'>t</a>"),
        "layer_params": lambda: charts.layer_params([{"group": c, "params": 10, "trainable": True} for c in labels]),
    }[figure]
    text = json.dumps(build().to_plotly_json(), default=str)
    assert "<a" not in text and "<b>" not in text, text[:400]
    assert "&lt;a href=" in text or figure == "compare_curves" and "&lt;b&gt;" in text


# ---------------------------------------------------------------- the pages


@pytest.fixture(scope="module")
def hostile_images(tmp_path_factory):
    return image_csv(tmp_path_factory.mktemp("hostile_images"), (*MARKUP_LABELS, ANCHOR))


@pytest.fixture
def image_run(app_env, hostile_images) -> str:
    from transfer_core.store import RunStore

    run_id = train_run(app_env / "runs", str(hostile_images), "tiny_cnn", **{"model.image_size": 32})
    with RunStore(app_env / "runs") as store:
        store.update_run(run_id, name=RUN_NAME)
    return run_id


def test_data_page_shows_hostile_class_and_file_names_as_text(app_env, tmp_path):
    folder = image_folder(tmp_path / "hostile folder")
    at = open_app("1_data", session={"draft_config": draft(data__path=str(folder), model__name="tiny_cnn")})
    no_exceptions(at)
    assert at.radio(key="data_source").value == "Images (.zip)"
    assert_shown_as_text(at, FOLDER_LABELS + FILE_NAMES)


def test_data_page_shows_hostile_labels_in_the_report_as_text(app_env, tmp_path):
    path = text_csv(tmp_path / "hostile.csv")
    at = open_app("1_data", session={"draft_config": draft(data__path=str(path), data__text_column="text",
                                                           data__label_column="label", model__name="tiny_bert")})
    no_exceptions(at)
    findings = [e.value for e in (*at.warning, *at.error, *at.info)]
    assert any("fewer than" in f for f in findings), findings     # the report names every class (8 samples each)
    assert_shown_as_text(at, MARKUP_LABELS)


def test_results_page_shows_labels_as_text(image_run):
    at = open_app("4_results")
    no_exceptions(at)
    at.radio(key="gallery_kind").set_value("highest loss").run()
    at.slider(key="gallery_k").set_value(48).run()
    no_exceptions(at)
    assert any("predicted" in c.value for c in at.caption)
    assert_shown_as_text(at, MARKUP_LABELS)
    figure = json.dumps([c.proto.spec for c in at.get("plotly_chart")])
    assert "<a" not in figure and "&lt;a href=" in figure, "the confusion matrix shows the label as text"


def test_try_page_shows_the_predicted_label_as_text(image_run):
    at = open_app("5_try")
    at.slider(key="try_k").set_value(5).run()
    at.file_uploader(key="try_image").set_value(("new.png", png_bytes(shape_image("square", 7)), "image/png")).run()
    no_exceptions(at)
    prediction = next(m.value for m in at.markdown if m.value.startswith("Prediction:"))
    assert any(md(label) in prediction for label in (*MARKUP_LABELS, ANCHOR)), prediction
    assert not any(label in prediction for label in (*MARKUP_LABELS, ANCHOR)), prediction
    figure = json.dumps([c.proto.spec for c in at.get("plotly_chart")])
    assert "<a" not in figure, "the top-k chart shows the label as text"


def test_model_page_shows_a_run_models_description_as_text(image_run):
    at = open_app("2_model", session={"draft_config": draft(model__name=f"run:{image_run}")})
    no_exceptions(at)
    described = [e.value for e in (*at.info, *at.success) if "tuned in run" in e.value]
    assert described, [e.value for e in (*at.info, *at.success)]
    assert_shown_as_text_in(described, MARKUP_LABELS[:3])


def test_runs_page_shows_run_names_as_text(image_run):
    at = open_app("6_runs")
    no_exceptions(at)
    at.button(key="run_delete").click().run()
    no_exceptions(at)
    assert_shown_as_text(at, (LINK, COLOUR))


def assert_shown_as_text_in(texts: list[str], hostile: tuple[str, ...]) -> None:
    for h in hostile:
        assert not [t for t in texts if h in t], texts
    assert any(md(h) in t for t in texts for h in hostile), texts


def test_webcam_class_names_are_shown_as_text(app_env):
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Webcam").run()
    at.text_input(key="cam_classes").input(f"{LINK}, {COLOUR}, {LATEX}").run()
    no_exceptions(at)
    assert at.radio(key="cam_class").value == LINK, "the class keeps its name; only its display is escaped"
    assert_shown_as_text(at, (LINK, COLOUR, LATEX))


def test_train_page_shows_the_run_name_as_text(image_run):
    at = open_app("3_train", session={"current_run": image_run})
    no_exceptions(at)
    assert_shown_as_text(at, (LINK, COLOUR))
