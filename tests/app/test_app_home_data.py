"""AppTest: the home page and the Data page (demo sets, uploads, the data report)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from apphelpers import SHAPES, draft, no_exceptions, open_app, png_bytes, shape_image


def _draft(at):
    from transfer_core.config import RunConfig
    return RunConfig.from_dict(at.session_state["draft_config"])


def test_home_explains_and_offers_both_demos(app_env):
    at = open_app()
    no_exceptions(at)
    assert at.title[0].value == "Transfer Studio"
    text = " ".join(m.value for m in at.markdown)
    assert "Transfer learning" in text
    labels = [b.label for b in at.button]
    assert "Start with demo images" in labels and "Start with demo texts" in labels


def test_demo_button_prepares_the_demo_and_opens_train(app_env):
    at = open_app()
    at.button(key="demo_text").click().run()
    no_exceptions(at)
    assert at.title[0].value == "Train"
    cfg = _draft(at)
    assert cfg.data.path.startswith("demo:bbc-news") and cfg.model.name == "minilm_l6"
    assert any(b.label == "Start training" for b in at.button)


def test_data_page_demo_set_shows_counts_report_and_samples(app_env):
    at = open_app("1_data")
    no_exceptions(at)
    assert at.title[0].value == "Data"
    at.number_input(key="demo_n_bbc-news").set_value(10)
    at.button(key="use_demo_bbc-news").click().run()
    no_exceptions(at)
    assert _draft(at).data.path == "demo:bbc-news?per_class=10"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Examples"] == "50" and metrics["Classes"] == "5"
    assert at.get("plotly_chart"), "the samples-per-class chart is missing"
    assert any("Data report" == h.value for h in at.subheader)
    assert len(at.dataframe) >= 1   # the sample table of texts


def test_zip_upload_is_saved_under_the_data_dir_and_reported(app_env, shapes_zip):
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Images (.zip)").run()
    at.file_uploader(key="upload_zip").set_value(("../../evil name.zip", shapes_zip, "application/zip")).run()
    no_exceptions(at)
    path = Path(_draft(at).data.path)
    uploads = app_env / "data" / "uploads"
    assert path.is_file() and path.resolve().is_relative_to(uploads.resolve())
    assert path.name == "evil_name.zip"       # the user's name is cleaned, never used as a path
    assert _draft(at).model.name == "efficientnet_lite0"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "3" and metrics["Examples"] == "36"
    assert at.image, "no thumbnails were drawn"
    # A rerun must not save the same upload again.
    at.run()
    assert len(list(uploads.iterdir())) == 1


def test_images_plus_label_csv_upload(app_env):
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Images + label CSV").run()
    files, rows = [], ["image,label"]
    for kind in SHAPES[:2]:
        for i in range(6):
            name = f"{kind} photo {i}.png"   # spaces stay: the CSV names files as they are
            files.append((name, png_bytes(shape_image(kind, i)), "image/png"))
            rows.append(f"{name},{kind}")
    at.file_uploader(key="upload_images").set_value(files)
    at.file_uploader(key="upload_labels").set_value(("labels.csv", "\n".join(rows).encode(), "text/csv")).run()
    no_exceptions(at)
    assert _draft(at).data.path.endswith("images_with_labels.zip")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "2" and metrics["Examples"] == "12"


def test_text_upload_picks_columns_from_dropdowns(app_env, topics_csv):
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Text file").run()
    at.file_uploader(key="upload_text").set_value(("topics.csv", topics_csv.read_bytes(), "text/csv")).run()
    no_exceptions(at)
    assert at.dataframe[0].value.shape[0] == 5          # the preview
    assert at.selectbox(key="text_column_pick").value == "sentence"   # detected from the common names
    assert at.selectbox(key="label_column_pick").value == "topic"
    cfg = _draft(at)
    assert (cfg.data.text_column, cfg.data.label_column) == ("sentence", "topic")
    assert cfg.model.name == "minilm_l6"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "3"
    at.selectbox(key="label_column_pick").set_value("sentence").run()
    assert any("different columns" in e.value for e in at.error)
    at.selectbox(key="label_column_pick").set_value("id").run()
    assert _draft(at).data.label_column == "id"

    # Back on the page later (the uploader is empty then): the columns of the chosen file can still change.
    at.switch_page("../pages/home.py").run()
    at.switch_page("../pages/1_data.py").run()
    no_exceptions(at)
    assert at.radio(key="data_source").value == "Text file"
    assert at.selectbox(key="label_column_pick").value == "id"
    at.selectbox(key="label_column_pick").set_value("topic").run()
    assert _draft(at).data.label_column == "topic"


def test_bad_data_gets_a_plain_message_not_a_traceback(app_env):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(4):
            zf.writestr(f"only/{i}.png", png_bytes(shape_image("circle", i)))
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Images (.zip)").run()
    at.file_uploader(key="upload_zip").set_value(("one_class.zip", buf.getvalue(), "application/zip")).run()
    no_exceptions(at)
    errors = " ".join(e.value for e in at.error)
    assert "only one class" in errors and "What to do" in errors


def test_not_a_zip_is_explained(app_env):
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Images (.zip)").run()
    at.file_uploader(key="upload_zip").set_value(("broken.zip", b"this is not a zip", "application/zip")).run()
    no_exceptions(at)
    assert any("not a zip file" in e.value for e in at.error)


def test_split_settings_change_the_split(app_env):
    at = open_app("1_data", session={"draft_config": draft(data__path="demo:bbc-news?per_class=10")})
    at.number_input(key="cfg.data.val_fraction").set_value(0.4).run()
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Validation"] == "20"


def _shown_on_mount(widget):
    """What the browser shows when it mounts a number box or checkbox: the value the server sends with
    it (`set_value`), else the element's default (a number box without `value=` defaults to its minimum)."""
    return widget.proto.value if widget.proto.set_value else widget.proto.default


def test_split_settings_show_the_value_in_use_after_another_source(app_env):
    """Another source without data hides the split settings for a run that ends early (st.stop), which
    leaves their values in session state while the browser drops the boxes; drawn again, each box must
    be sent the value in use, not mounted at its minimum (streamlit#4247)."""
    at = open_app("1_data", session={"draft_config": draft(data__path="demo:bbc-news?per_class=10")})
    at.number_input(key="cfg.data.val_fraction").set_value(0.3).run()
    at.radio(key="data_source").set_value("Text file").run()
    assert "cfg.data.val_fraction" not in [w.key for w in at.number_input]
    at.radio(key="data_source").set_value("Demo set").run()
    no_exceptions(at)
    boxes = [w for w in [*at.number_input, *at.checkbox] if str(w.key).startswith("cfg.")]
    assert {w.key for w in boxes} >= {"cfg.data.val_fraction", "cfg.data.test_fraction", "cfg.data.dedupe"}
    for w in boxes:
        assert _shown_on_mount(w) == w.value, (w.key, _shown_on_mount(w), w.value)
    assert at.number_input(key="cfg.data.val_fraction").value == 0.3 == _draft(at).data.val_fraction
    assert {m.label: m.value for m in at.metric}["Validation"] == "15"
    # A box the browser still holds is left alone: nothing is sent with it on the next run.
    at.run()
    assert not at.number_input(key="cfg.data.val_fraction").proto.set_value


def _jpeg(kind: str, seed: int) -> bytes:
    buf = io.BytesIO()
    shape_image(kind, seed, size=48).save(buf, format="JPEG")
    return buf.getvalue()


def test_webcam_capture_per_class_like_teachable_machine(app_env):
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Webcam").run()
    at.text_input(key="cam_classes").input("circle, square").run()
    assert at.button(key="cam_use").disabled          # not enough photos yet
    for kind in ("circle", "square"):
        at.radio(key="cam_class").set_value(kind).run()
        for i in range(3):
            at.camera_input(key="cam_shot").set_value((f"{kind}{i}.jpg", _jpeg(kind, i), "image/jpeg")).run()
    no_exceptions(at)
    at.run()                                          # the same photo is not counted twice
    assert any(m.value == "**circle**: 3 photo(s)" for m in at.markdown)
    at.button(key="cam_use").click().run()
    no_exceptions(at)
    path = Path(_draft(at).data.path)
    assert path.is_dir() and path.resolve().is_relative_to((app_env / "data" / "uploads").resolve())
    assert sorted(p.name for p in path.iterdir()) == ["circle", "square"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Examples"] == "6" and metrics["Classes"] == "2"
    assert any("fewer than" in w.value for w in at.warning)   # the report says 3 per class is too few
