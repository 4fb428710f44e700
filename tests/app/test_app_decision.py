"""AppTest: class balance suggested on the Train page for imbalanced data, and the Results page's decision
threshold of a two-class run, used by the Try page and the export bundle."""
from __future__ import annotations

import json
import zipfile

import pytest
from apphelpers import draft, no_exceptions, open_app, png_bytes, shape_image, train_run

from transfer_core.run_files import DECISION_FILE


def shapes(root, counts: dict[str, int]):
    for k, (kind, n) in enumerate(counts.items()):
        (root / kind).mkdir(parents=True)
        for i in range(n):
            shape_image(kind, 100 * k + i).save(root / kind / f"{kind}_{i:02d}.png")
    return root


@pytest.fixture
def two_class_run(app_env, tmp_path) -> str:
    folder = shapes(tmp_path / "parts", {"circle": 24, "square": 12})
    return train_run(app_env / "runs", str(folder), "tiny_cnn", **{"model.image_size": 32, "train.epochs": 3,
                                                                    "data.val_fraction": 0.4})


def test_imbalanced_data_gets_class_balance_suggested_until_it_is_on(app_env, tmp_path):
    folder = shapes(tmp_path / "rare", {"circle": 40, "square": 3})
    at = open_app("3_train", session={"draft_config": draft(data__path=str(folder), model__name="tiny_cnn")})
    no_exceptions(at)
    suggestion = [i.value for i in at.info if "Class balance" in i.value]
    assert suggestion and "13.33 times as many samples" in suggestion[0]
    at.selectbox(key="cfg.train.class_balance").set_value("weighted_loss").run()
    no_exceptions(at)
    assert not any("Class balance" in i.value for i in at.info)
    assert RunConfigOf(at).train.class_balance == "weighted_loss"


def RunConfigOf(at):
    from transfer_core.config import RunConfig
    return RunConfig.from_dict(at.session_state["draft_config"])


def test_a_threshold_chosen_on_results_is_used_by_try_and_the_export(two_class_run, app_env):
    at = open_app("4_results")
    no_exceptions(at)
    assert "Decision threshold" in [h.value for h in at.subheader]
    assert at.selectbox(key=f"decision_positive_{two_class_run}").value == "square"   # the rarer class
    at.radio(key=f"decision_mode_{two_class_run}").set_value("recall").run()
    at.slider(key=f"decision_recall_{two_class_run}_square").set_value(1.0).run()
    no_exceptions(at)
    assert "Found (recall)" in [m.label for m in at.metric]
    assert [m.value for m in at.metric if m.label == "Found (recall)"] == ["100.0 %"]
    at.button(key="decision_save").click().run()
    no_exceptions(at)
    run_dir = app_env / "runs" / two_class_run
    saved = json.loads((run_dir / DECISION_FILE).read_text())
    assert saved["positive"] == "square" and saved["target_recall"] == 1.0
    assert any("In use: it says **square**" in c.value for c in at.caption)
    assert at.button(key="decision_save").disabled and at.button(key="decision_save").label == "In use"
    assert any("only 5 examples of 'square'" in w.value for w in at.warning)   # 12 squares, 40 % for validation

    at.switch_page("../pages/5_try.py").run()
    at.file_uploader(key="try_image").set_value(("new.png", png_bytes(shape_image("circle", 7)), "image/png")).run()
    no_exceptions(at)
    assert any(m.value.startswith("Prediction: **") for m in at.markdown)
    at.button(key="export_build").click().run(timeout=180)
    no_exceptions(at)
    with zipfile.ZipFile(app_env / "data" / "exports" / two_class_run / "bundle.zip") as zf:
        assert json.loads(zf.read(f"bundle/{DECISION_FILE}")) == saved

    at.switch_page("../pages/4_results.py").run()
    at.button(key="decision_clear").click().run()
    no_exceptions(at)
    assert not (run_dir / DECISION_FILE).exists()
    at.switch_page("../pages/5_try.py").run()
    assert at.button(key="export_build"), "the bundle holds the old threshold: it is built again"


def test_a_run_of_three_classes_has_no_threshold(app_env, shapes_folder):
    train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32})
    at = open_app("4_results")
    no_exceptions(at)
    assert "Decision threshold" not in [h.value for h in at.subheader]
