"""AppTest: start from an earlier run picked from a list (Model page), evaluate a run on another uploaded labelled
set (Results page), and separate validation and test files (Data page)."""
from __future__ import annotations

import io
import zipfile

from apphelpers import draft, no_exceptions, open_app, train_run

from transfer_core.config import RunConfig


def _cfg(at) -> RunConfig:
    return RunConfig.from_dict(at.session_state["draft_config"])


def zipped(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f"{folder.name}/{f.parent.name}/{f.name}")
    return buf.getvalue()


def test_start_from_a_run_picked_from_the_list(app_env, shapes_folder):
    run_id = train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32})
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__image_size=48)})
    no_exceptions(at)
    assert at.selectbox(key="from_run_pick").value == run_id
    assert at.radio(key="from_run_head").value == "keep"        # the data has the run's classes
    at.radio(key="from_run_head").set_value("new").run()
    at.button(key="use_from_run").click().run()
    no_exceptions(at)
    cfg = _cfg(at)
    assert cfg.model.name == f"run:{run_id}" and cfg.model.new_head
    assert cfg.model.image_size == 32                             # the run's input size
    assert at.selectbox(key="cfg.model.name").value == f"run:{run_id}"


def test_a_run_of_other_classes_always_gets_a_new_head(app_env, shapes_folder, tmp_path):
    run_id = train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32})
    other = tmp_path / "two"
    for kind in ("circle", "square"):
        (other / kind).mkdir(parents=True)
        for f in sorted((shapes_folder / kind).glob("*.png")):
            (other / kind / f.name).write_bytes(f.read_bytes())
    at = open_app("2_model", session={"draft_config": draft(data__path=str(other), model__name="tiny_cnn")})
    assert not [r for r in at.radio if r.key == "from_run_head"]
    assert any("other classes than the run" in c.value for c in at.caption)
    at.button(key="use_from_run").click().run()
    no_exceptions(at)
    assert _cfg(at).model.name == f"run:{run_id}"


def test_evaluate_a_run_on_an_uploaded_labelled_set(app_env, shapes_folder):
    run_id = train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32})
    at = open_app("4_results")
    at.file_uploader(key=f"evaluate_upload_{run_id}").set_value(("more.zip", zipped(shapes_folder), "application/zip")).run()
    no_exceptions(at)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Examples"] == "36" and labels["Accuracy"].endswith("%")
    assert at.dataframe[-1].value["class"].tolist() == ["circle", "square", "triangle"]


def test_evaluating_on_data_with_an_unknown_class_says_so(app_env, shapes_folder, tmp_path):
    train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32})
    odd = tmp_path / "odd"
    (odd / "star").mkdir(parents=True)
    for f in sorted((shapes_folder / "circle").glob("*.png"))[:3]:
        (odd / "star" / f.name).write_bytes(f.read_bytes())
    at = open_app("4_results")
    uploader = next(u for u in at.get("file_uploader") if u.key and u.key.startswith("evaluate_upload_"))
    at.file_uploader(key=uploader.key).set_value(("odd.zip", zipped(odd), "application/zip")).run()
    no_exceptions(at)
    assert any("labels the run never saw: star" in e.value for e in at.error)


def test_validation_and_test_files_on_the_data_page(app_env, shapes_folder, shapes_zip):
    at = open_app("1_data", session={"draft_config": draft(data__path=str(shapes_folder))})
    no_exceptions(at)
    at.file_uploader(key="upload_test_path").set_value(("test.zip", shapes_zip, "application/zip")).run()
    no_exceptions(at)
    cfg = _cfg(at)
    assert cfg.data.test_path.endswith("test.zip") and not cfg.data.val_path
    assert {m.label: m.value for m in at.metric}["Test"] == "36"
    at.button(key="split_files_clear").click().run()
    assert not _cfg(at).data.test_path
