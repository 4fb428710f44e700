"""AppTest: the Train page's learning-rate finder and "Compare strategies", and the Runs page's side by side view
(settings that differ, trainable parameters, confusion matrices) and "Reuse these settings"."""
from __future__ import annotations

from apphelpers import draft, no_exceptions, open_app, wait_for

from transfer_core.config import RunConfig
from transfer_core.events import RunStatus
from transfer_core.store import RunStore


def _cfg(at) -> RunConfig:
    return RunConfig.from_dict(at.session_state["draft_config"])


def test_find_a_learning_rate_and_use_it(app_env, shapes_folder):
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__image_size=32)})
    at.button(key="lr_find_run").click().run(timeout=180)
    no_exceptions(at)
    assert any(c.value.startswith("Suggested: ") for c in at.caption)
    suggested = at.button(key="lr_find_use").label.removeprefix("Use ")
    at.button(key="lr_find_use").click().run()
    no_exceptions(at)
    assert _cfg(at).optim.lr == float(suggested)
    assert at.number_input(key="cfg.optim.lr").value == float(suggested)
    at.number_input(key="cfg.train.batch_size").set_value(8).run()
    assert any("settings changed since the test" in c.value for c in at.caption)


def test_compare_strategies_queues_four_runs_shown_side_by_side(app_env, shapes_folder):
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__image_size=32, train__epochs=2)})
    at.button(key="compare_strategies").click().run()
    no_exceptions(at)
    ids = at.session_state["compared_runs"]
    assert len(ids) == 4
    with RunStore(app_env / "runs") as store:
        wait_for(lambda: all(store.get_run(i).status == RunStatus.COMPLETED for i in ids), timeout=240,
                 what="the four runs to finish")
        names = [store.get_run(i).name for i in ids]
    assert [n.split(" · ")[0] for n in names] == ["Head only", "Top layers", "Full fine-tuning", "From scratch"]

    at.switch_page("../pages/6_runs.py").run()
    no_exceptions(at)
    assert at.multiselect(key="compare_runs").value == ids
    tables = [d.value for d in at.dataframe]
    compared = next(t for t in tables if "trainable parameters" in t.columns)
    assert compared["trainable parameters"].str.contains(" of ").all()
    differing = next(t for t in tables if "Layers that train" in t.columns)
    assert list(differing["Layers that train"]) == ["feature extraction", "top k", "full", "full"]
    assert list(differing["Start from pretrained weights"]) == ["yes", "yes", "yes", "no"]
    assert "Learning rate" not in differing.columns          # the same in all four
    assert len(at.get("plotly_chart")) == 1 + 4              # the curves, and one confusion matrix per run


def test_reuse_the_settings_of_a_run(app_env, shapes_folder):
    from apphelpers import train_run
    run_id = train_run(app_env / "runs", str(shapes_folder), "tiny_cnn", **{"model.image_size": 32, "optim.lr": 0.0123})
    at = open_app("6_runs", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn")})
    at.selectbox(key="manage_run").set_value(run_id).run()
    at.button(key="run_reuse").click().run()
    no_exceptions(at)
    cfg = _cfg(at)
    assert cfg.optim.lr == 0.0123 and cfg.model.image_size == 32
