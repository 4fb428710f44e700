"""The numbers and words a user reads: class names as categories in every chart, training time and time
left after an extension, the Model page's estimates and top-k wording, the Data page's heading and
report, the Train page's pace and queue words, and the Runs page's tables, chart and delete button."""
from __future__ import annotations

import io
import re
import zipfile
from types import SimpleNamespace

import pandas as pd
import pytest
from apphelpers import SHAPES, draft, no_exceptions, open_app, png_bytes, run_started, shape_image

DIGITS = [str(i) for i in range(10)]
CONFIG_NAME = re.compile(r"\b(data|model|train|optim|freeze|augment)\.[a-z_]+\b")


# ---- numeric class names ------------------------------------------------------------------------

def _every_tick(axis, names):
    assert axis.type == "category", axis.type
    assert list(axis.tickvals) == names and list(axis.ticktext) == names


def test_numeric_class_names_are_categories_in_every_chart():
    from app import charts
    counts = {d: 10 + i for i, d in enumerate(DIGITS)}
    fig = charts.class_counts(counts, {"train": {d: 8 for d in DIGITS}, "val": {d: 2 for d in DIGITS}})
    _every_tick(fig.layout.xaxis, DIGITS)                       # not a numeric axis labelled 0, 2, 4...
    assert list(fig.data[0].x) == DIGITS

    matrix = [[int(i == j) * 5 for j in range(10)] for i in range(10)]
    fig = charts.confusion_matrix(matrix, DIGITS)
    _every_tick(fig.layout.xaxis, DIGITS)                       # every row and column named
    _every_tick(fig.layout.yaxis, DIGITS)

    top = [{"label": "7", "probability": 0.8}, {"label": "1", "probability": 0.15}, {"label": "9", "probability": 0.05}]
    fig = charts.top_k(top)
    _every_tick(fig.layout.yaxis, ["9", "1", "7"])              # the bars carry their class names
    assert list(fig.data[0].y) == ["9", "1", "7"]
    # Ratings read from a table may arrive as numbers: still names.
    assert charts.top_k([{"label": 5, "probability": 1.0}]).data[0].y == ("5",)


# ---- training time and time left after an extension -------------------------------------------------

def _extended_run(now: float):
    """Two epochs trained in about a minute, finished; extended 17 minutes later by two more epochs,
    of which 3 s have run (5 steps of 8 per epoch)."""
    from transfer_core.events import RunEnded, RunStatus
    events = [run_started(1000.0, epochs=2, steps_per_epoch=8),
              RunEnded("r", 1062.0, status=RunStatus.COMPLETED, epochs_done=2, best_epoch=1),
              run_started(2080.0, epochs=4, steps_per_epoch=8, start_epoch=2)]
    first = pd.DataFrame({"step": range(1, 17), "epoch": [0] * 8 + [1] * 8,
                          "time": [1000.0 + 3.8 * i for i in range(1, 17)]})
    second = pd.DataFrame({"step": range(17, 22), "epoch": [2] * 5, "time": [2080.0 + 0.6 * i for i in range(1, 6)]})
    steps = pd.concat([first, second], ignore_index=True).assign(loss=1.0, lr=0.1, samples_per_second=20.0)
    epochs = pd.DataFrame({"epoch": [0, 1], "step": [8, 16], "time": [1031.0, 1062.0], "seconds": [30.0, 30.0]})
    record = SimpleNamespace(status="running", is_active=True, updated=now, best_metrics={})
    return record, events, steps, epochs


def test_run_card_time_is_training_time_after_an_extension():
    from app.progress import training_seconds
    now = 2083.0
    record, events, steps, epochs = _extended_run(now)
    # 60 s of training before, 3 s since the extension started: not the 18 minutes since the run was created.
    assert training_seconds(record, events, epochs, now=now) == pytest.approx(63.0)
    done = SimpleNamespace(status="completed", is_active=False, updated=now + 9, best_metrics={"train_seconds": 71.5})
    assert training_seconds(done, events, epochs) == 71.5      # the trainer's own count once it ended
    paused = SimpleNamespace(status="paused", is_active=True, updated=2081.0, best_metrics={})
    assert training_seconds(paused, events, epochs, now=now + 600) == pytest.approx(61.0)   # pauses do not count


def test_time_left_comes_from_the_current_attempts_pace():
    from app.progress import progress
    record, events, steps, epochs = _extended_run(2083.0)
    p = progress(record, events, steps, epochs)
    # 11 steps left at 0.6 s a step (this attempt's pace), not at the pace across the 17-minute gap.
    assert p.seconds_left == pytest.approx(11 * 0.6)
    assert "about 7 s left" in p.text()
    assert p.seconds_per_epoch == pytest.approx(8 * 0.6)


def test_live_view_shows_training_time(app_env, shapes_folder):
    from app.resources import get_store
    from transfer_core.config import RunConfig
    from transfer_core.events import RunStatus
    cfg = RunConfig()
    cfg.set("data.path", str(shapes_folder))
    store = get_store()
    run_id = store.create_run(cfg.to_dict(), name="old run", modality="image", model="tiny_cnn",
                              dataset=str(shapes_folder))
    store.update_run(run_id, status=RunStatus.COMPLETED, epochs_done=2,
                     best_metrics={"val_accuracy": 0.5, "val_loss": 0.9, "train_seconds": 65.0})
    at = open_app("3_train", session={"current_run": run_id})
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training time"] == "1 min 05 s"


# ---- Model page: calibrated estimates, top-k words ---------------------------------------------------

def test_epoch_estimate_uses_the_measured_training_step():
    from app.model_ui import estimate
    groups = [{"group": g, "params": 1000} for g in ("stem", "block1", "block2", "head")]
    common = dict(modality="image", batch_size=8, image_size=32, max_length=16, n_train=100, n_val=20,
                  per_sample=0.01)
    full = estimate(groups, {"stem", "block1", "block2", "head"}, cached=False, train_per_sample=0.05, **common)
    # A measured step five times the forward pass, not the assumed three: 100 x 0.05 + 20 x 0.01.
    assert full["later_epoch"] == pytest.approx(5.2)
    top = estimate(groups, {"block2", "head"}, cached=True, train_per_sample=0.05, **common)
    assert top["later_epoch"] == pytest.approx(100 * 0.05 / 3 + 20 * 0.01 / 3)


def test_a_training_step_is_timed_on_a_copy_of_the_model(app_env):
    import torch

    from app import model_ui
    classes = ("a", "b", "c")
    built = model_ui.built_model("tiny_cnn", classes, 32, 16)
    before = {k: v.clone() for k, v in built.net.state_dict().items()}
    seconds = model_ui.seconds_per_train_sample("tiny_cnn", classes, 32, 16, "cpu")
    assert 0 < seconds < 5
    after = built.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the shared model changed"
    assert all(p.grad is None for p in built.net.parameters())


def test_top_k_words_match_the_groups_that_train(app_env, shapes_folder):
    from app.model_ui import PRESETS
    assert "just below it train" not in PRESETS["top_k"][1] and "counting the head" in PRESETS["top_k"][1]
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__image_size=32, freeze__preset="top_k",
                                                            freeze__top_k=2)})
    no_exceptions(at)
    assert at.number_input(key="cfg.freeze.top_k").label == "Groups that train (k, counting the head)"
    trained = [t.label for t in at.toggle if t.label == "trains"]
    assert len(trained) == 2                                     # k = 2: the head and one group below it
    caption = next(c.value for c in at.caption if c.value.startswith("k = 2"))
    assert caption.count("`") == 4 and "`head`" in caption and "the head counts as one of the k" in caption


# ---- Data page ----------------------------------------------------------------------------------

def _draft(at):
    from transfer_core.config import RunConfig
    return RunConfig.from_dict(at.session_state["draft_config"])


def test_data_page_heading_follows_the_source_and_uploads_are_kept(app_env, shapes_zip, topics_csv):
    at = open_app("1_data")
    at.number_input(key="demo_n_bbc-news").set_value(10)
    at.button(key="use_demo_bbc-news").click().run()
    assert at.subheader[0].value.startswith("Using: BBC News demo texts")

    at.radio(key="data_source").set_value("Images (.zip)").run()
    no_exceptions(at)
    assert not [s.value for s in at.subheader if s.value.startswith("Using:")]     # nothing chosen here yet
    assert any(i.value.startswith("Upload a zip of images above. Until then, new runs use BBC News demo texts")
               for i in at.info)
    at.file_uploader(key="upload_zip").set_value(("shapes.zip", shapes_zip, "application/zip")).run()
    assert at.subheader[0].value == "Using: your upload shapes.zip"

    at.radio(key="data_source").set_value("Text file").run()
    at.file_uploader(key="upload_text").set_value(("topics.csv", topics_csv.read_bytes(), "text/csv")).run()
    assert at.subheader[0].value == "Using: your upload topics.csv"
    at.radio(key="data_source").set_value("Images (.zip)").run()      # the uploader is empty again...
    no_exceptions(at)
    assert _draft(at).data.path.endswith("shapes.zip")                # ...but the zip is not forgotten
    assert _draft(at).model.name == "efficientnet_lite0"
    assert at.subheader[0].value == "Using: your upload shapes.zip"
    assert any(c.value.startswith("In use: shapes.zip") for c in at.caption)
    at.radio(key="data_source").set_value("Text file").run()          # and back to the texts and their columns
    assert _draft(at).data.path.endswith("topics.csv") and _draft(at).data.label_column == "topic"
    at.radio(key="data_source").set_value("Demo set").run()
    assert at.subheader[0].value.startswith("Using: BBC News demo texts (10 per class)")


def test_duplicates_are_reported_once_in_plain_words(app_env):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for kind in SHAPES[:2]:
            for i in range(8):
                zf.writestr(f"{kind}/{kind}_{i}.png", png_bytes(shape_image(kind, i)))
        zf.writestr("circle/copy_of_circle_0.png", png_bytes(shape_image("circle", 0)))
    at = open_app("1_data")
    at.radio(key="data_source").set_value("Images (.zip)").run()
    at.file_uploader(key="upload_zip").set_value(("dups.zip", buf.getvalue(), "application/zip")).run()
    no_exceptions(at)
    boxes = [b.value for kind in (at.error, at.warning, at.info, at.success) for b in kind]
    about_copies = [b for b in boxes if "cop" in b.lower() or "duplicate" in b.lower()]
    assert len(about_copies) == 1, about_copies
    assert "exact copies" in about_copies[0]
    assert not [b for b in boxes if CONFIG_NAME.search(b)], boxes


def test_thumbnail_captions_fit_one_line():
    from app.data_ui import CAPTION_CHARS, thumb_caption
    assert thumb_caption("shapes/circle/circle_00.png") == "circle_00"
    long = thumb_caption("photos/seven/IMG_20240101_123456.jpg")
    assert len(long) <= CAPTION_CHARS and long.endswith("23456") and "…" in long


# ---- Train page -------------------------------------------------------------------------------

def test_progress_shows_the_pace_in_epochs_not_samples():
    from app.progress import fmt_pace, progress
    record = SimpleNamespace(status="running")
    events = [run_started(0.0, epochs=30, steps_per_epoch=2)]
    # A cached head-only run: thousands of samples per second, a fraction of a second per epoch.
    steps = pd.DataFrame({"step": range(1, 11), "epoch": [i // 2 for i in range(10)],
                          "time": [0.01 * i for i in range(1, 11)], "loss": 1.0, "lr": 0.1,
                          "samples_per_second": 74071.0})
    text = progress(record, events, steps, steps.head(0)).text()
    assert "samples/s" not in text and "50 epochs per second" in text
    assert fmt_pace(42.0) == "42 s per epoch"


def test_a_run_being_set_up_is_not_called_queued():
    from app.progress import progress
    queued = SimpleNamespace(status="queued")
    empty = pd.DataFrame()
    # Picked up by the worker (nothing ahead), or started elsewhere: it is loading, not waiting.
    for ahead in (0, None):
        assert progress(queued, [], empty, empty, ahead).text() == "Loading the data and the model..."
    assert progress(queued, [], empty, empty, 1).text() == "Queued: waiting for 1 run before it to finish."
    assert progress(queued, [], empty, empty, 2).text() == "Queued: waiting for 2 runs before it to finish."


# ---- Runs page --------------------------------------------------------------------------------

def _record(run_id, *, dataset="demo:fashion-mnist?per_class=60", modality="image", status="completed",
            best=None, created=1.8e9):
    return SimpleNamespace(id=run_id, name=f"run {run_id}", status=status, model="efficientnet_lite0",
                           dataset=dataset, modality=modality, created=created, epochs_done=3, batch_size=32,
                           is_active=status in ("queued", "running", "paused"),
                           best_metrics=best if best is not None else {"val_accuracy": 0.76667, "val_macro_f1": 0.75,
                                                                       "val_loss": 0.61234, "train_seconds": 63.0},
                           config={"freeze": {"preset": "top_k"}, "optim": {"lr": 0.003},
                                   "train": {"batch_size": 32}})


def test_runs_tables_fit_and_say_the_same():
    from app import runs_ui
    runs = [_record("a"), _record("b", status="failed", best={})]
    table = runs_ui.runs_table(runs)
    assert list(table.columns) == list(runs_ui.RUNS_TABLE_WIDTHS)   # every column has a width...
    assert sum(runs_ui.RUNS_TABLE_WIDTHS.values()) <= runs_ui.MAIN_AREA_WIDTH   # ...and together they fit
    assert table["training time"].tolist() == ["1 min 03 s", "-"]
    assert "%.1f %%" % table["val accuracy"][0] == "76.7 %"
    compare = runs_ui.comparison_table(runs)
    assert list(compare.columns) == list(runs_ui.COMPARE_TABLE_WIDTHS)
    assert sum(runs_ui.COMPARE_TABLE_WIDTHS.values()) <= runs_ui.MAIN_AREA_WIDTH
    assert compare["val accuracy"].tolist() == ["76.7 %", "-"]      # as in the table above
    assert compare["val loss"].tolist() == ["0.612", "-"]
    assert "None" not in compare.to_string() and "nan" not in compare.to_string()


def test_compare_chart_shows_the_whole_percent_scale():
    from app import charts
    frame = pd.DataFrame({"run_id": ["a"] * 3 + ["b"] * 3, "epoch": [0, 1, 2] * 2,
                          "val_accuracy": [0.75, 0.77, 0.76, 0.78, 0.79, 0.77], "val_loss": [0.6] * 6})
    fig = charts.compare_curves(frame, "val_accuracy", {"a": "A", "b": "B"})
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= 1   # not zoomed to 75-79 %
    assert charts.compare_curves(frame, "val_loss", {}).layout.yaxis.range is None


def test_compare_defaults_to_runs_on_the_same_data():
    from app.runs_ui import default_comparison
    runs = [_record("text1", dataset="demo:bbc-news?per_class=50", modality="text"),
            _record("img1"), _record("text2", dataset="demo:bbc-news?per_class=50", modality="text"), _record("img2"),
            _record("img3"), _record("img4")]
    assert default_comparison(runs) == ["text1", "text2"]                # the newest run and its data
    assert default_comparison(runs, "img2") == ["img2", "img1", "img3"]  # the followed run first
    assert default_comparison([]) == []


def test_runs_page_delete_confirmation_is_not_primary(app_env, shapes_folder):
    from app.resources import get_store
    from transfer_core.config import RunConfig
    from transfer_core.events import RunStatus
    store = get_store()
    cfg = RunConfig()
    cfg.set("data.path", str(shapes_folder))
    run_id = store.create_run(cfg.to_dict(), name="to delete", modality="image", model="tiny_cnn",
                              dataset=str(shapes_folder))
    store.update_run(run_id, status=RunStatus.COMPLETED, best_metrics={"train_seconds": 3.0})
    at = open_app("6_runs")
    no_exceptions(at)
    at.button(key="run_delete").click().run()
    yes = at.button(key="run_delete_yes")
    assert yes.proto.type != "primary" and "red" in yes.label
    yes.click().run()
    no_exceptions(at)
    assert store.list_runs() == []


def test_the_runs_table_shows_a_batch_size_lowered_by_running_out_of_memory():
    from app import runs_ui
    lowered = SimpleNamespace(**{**vars(_record("r1")), "batch_size": 8})
    assert runs_ui.batch_size_cell(lowered) == "8 (asked 32)"
    assert runs_ui.batch_size_cell(_record("r2")) == "32"
    assert runs_ui.batch_size_cell(SimpleNamespace(config={}, batch_size=None)) == "-"   # not started yet
