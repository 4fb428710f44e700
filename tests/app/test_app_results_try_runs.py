"""AppTest: Results, Try and export, and Runs pages on runs that already exist in the store."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
from apphelpers import ROOT, no_exceptions, open_app, png_bytes, shape_image, train_run, wait_for

from transfer_core.events import RunStatus


@pytest.fixture
def image_run(app_env, shapes_folder) -> str:
    return train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32, "train.epochs": 3})


@pytest.fixture
def text_run(app_env, topics_csv) -> str:
    return train_run(app_env / "runs", str(topics_csv), "tiny_bert", **{"model.max_length": 32})


def test_results_page_shows_metrics_matrix_table_and_gallery(image_run):
    at = open_app("4_results")
    no_exceptions(at)
    assert at.selectbox(key="results_run").value == image_run
    labels = [m.label for m in at.metric]
    assert {"Validation accuracy", "Macro F1", "Validation loss"} <= set(labels)
    captions = [c.value for c in at.caption]
    assert captions[0].startswith("completed · your model's validation accuracy")   # the picked run's state, beside the picker
    assert any(c.startswith("Trained on cpu in fp32, batch size") for c in captions)
    assert at.get("plotly_chart"), "confusion matrix"
    per_class = at.dataframe[0].value
    assert list(per_class["class"]) == ["circle", "square", "triangle"]
    at.radio(key="gallery_kind").set_value("highest loss").run()
    no_exceptions(at)
    assert len(at.image) >= 1, "the hardest examples are shown as images"
    assert any("predicted" in c.value for c in at.caption)
    at.toggle(key="cm_normalise").set_value(True).run()
    no_exceptions(at)


def test_results_for_texts_list_the_texts(text_run):
    at = open_app("4_results")
    at.radio(key="gallery_kind").set_value("highest loss").run()
    no_exceptions(at)
    table = at.dataframe[-1].value
    assert {"text", "true", "predicted", "confidence"} <= set(table.columns)
    assert table["text"].str.len().min() > 10    # the texts themselves, not their ids


def test_results_without_runs_says_what_to_do(app_env):
    at = open_app("4_results")
    no_exceptions(at)
    assert any("No run has finished yet" in i.value for i in at.info)


def test_try_an_image_and_download_the_export(image_run, app_env):
    at = open_app("5_try")
    no_exceptions(at)
    at.file_uploader(key="try_image").set_value(("new.png", png_bytes(shape_image("square", 999)), "image/png")).run()
    no_exceptions(at)
    assert any(m.value.startswith("Prediction:") for m in at.markdown)
    assert at.get("plotly_chart"), "top-k bar chart"

    at.button(key="export_build").click().run(timeout=180)
    no_exceptions(at)
    assert at.get("download_button"), "the bundle is offered for download"
    zipped = app_env / "data" / "exports" / image_run / "bundle.zip"
    with zipfile.ZipFile(zipped) as zf:
        names = zf.namelist()
        readme = zf.read("bundle/README.md").decode()
    assert "bundle/predict.py" in names and "bundle/labels.json" in names
    assert "import predict" in readme
    assert any("predict.predict" in m.value for m in at.markdown), "the README's how-to is shown"


def test_try_a_text(text_run):
    at = open_app("5_try")
    at.text_area(key="try_text").input("goal team player coach league")
    at.button(key="try_classify").click().run()
    no_exceptions(at)
    assert any(m.value.startswith("Prediction:") for m in at.markdown)


def test_runs_page_lists_compares_extends_and_deletes(image_run, app_env, shapes_folder):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = subprocess.run([sys.executable, "-m", "transfer_core", "--runs-dir", str(app_env / "runs"), "train",
                          "--data", str(shapes_folder), "--model", "tiny_cnn", "--image-size", "32", "--epochs", "1",
                          "--name", "from the cli", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 0, cli.stderr
    at = open_app("6_runs")
    no_exceptions(at)
    table = at.dataframe[0].value
    assert set(table["name"]) == {"tiny_cnn test run", "from the cli"}
    assert {"status", "model", "data", "val accuracy", "best epoch", "training time"} <= set(table.columns)
    assert len(at.multiselect(key="compare_runs").value) == 2
    at.radio(key="compare_metric").set_value("val_loss").run()
    no_exceptions(at)
    assert at.get("plotly_chart")

    from app.resources import get_store
    store = get_store()
    at.selectbox(key="manage_run").set_value(image_run).run()
    at.number_input(key="extend_epochs").set_value(1)
    at.button(key="run_extend").click().run()
    no_exceptions(at)
    assert at.title[0].value == "Train"        # it follows the extended run
    wait_for(lambda: store.get_run(image_run).status == RunStatus.COMPLETED
             and store.get_run(image_run).epochs_done == 4, timeout=120, what="the extension")

    at = open_app("6_runs")
    at.selectbox(key="manage_run").set_value(image_run).run()
    at.button(key="run_delete").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="run_delete_no").click().run()
    assert store.get_run(image_run)
    at.button(key="run_delete").click().run()
    at.button(key="run_delete_yes").click().run()
    no_exceptions(at)
    assert [r.name for r in store.list_runs()] == ["from the cli"]
    assert not (app_env / "runs" / image_run).exists()


def test_runs_page_resumes_an_interrupted_run(app_env, shapes_folder):
    from transfer_core.config import RunConfig
    from transfer_core.store import RunStore
    cfg = RunConfig()
    for k, v in {"data.path": str(shapes_folder), "model.name": "tiny_cnn", "model.image_size": 32,
                 "train.epochs": 2}.items():
        cfg.set(k, v)
    with RunStore(app_env / "runs") as store:   # a run whose process died before it started
        run_id = store.create_run(cfg.to_dict(), name="crashed", modality="image", model="tiny_cnn",
                                  dataset=str(shapes_folder))
        store.update_run(run_id, status=RunStatus.RUNNING, pid=2 ** 22 + 12345)
    at = open_app("6_runs")
    no_exceptions(at)
    from app.resources import get_store
    assert get_store().get_run(run_id).status == RunStatus.INTERRUPTED
    at.selectbox(key="manage_run").set_value(run_id).run()
    assert any("stopped unexpectedly" in i.value for i in at.info)
    at.button(key="run_resume_saved").click().run()
    no_exceptions(at)
    wait_for(lambda: get_store().get_run(run_id).status == RunStatus.COMPLETED, timeout=120, what="the resumed run")
