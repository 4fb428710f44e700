"""AppTest: the Model and layers page, and the Train page's start / pause / resume / stop flow."""
from __future__ import annotations

from apphelpers import draft, no_exceptions, open_app, wait_for

from transfer_core.config import RunConfig
from transfer_core.events import RunStatus


def _cfg(at) -> RunConfig:
    return RunConfig.from_dict(at.session_state["draft_config"])


def _toggles(at) -> dict[str, bool]:
    return {t.key.removeprefix("layer."): t.value for t in at.toggle if t.key and t.key.startswith("layer.")}


def test_model_page_lists_fitting_models_and_maps_layers(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__image_size=32)})
    no_exceptions(at)
    models = at.selectbox(key="cfg.model.name")
    assert any(o.startswith("efficientnet_lite0 · ready ✓") for o in models.options)
    assert any(o.startswith("resnet18") for o in models.options)
    assert not any(o.startswith("minilm_l6") for o in models.options)     # text models do not fit images
    toggles = _toggles(at)
    assert list(toggles) == ["block1", "block2", "block3", "head"]
    assert toggles == {"block1": False, "block2": False, "block3": False, "head": True}
    labels = {m.label: m.value for m in at.metric}
    assert "Trainable parameters" in labels and "Total parameters" in labels and "Memory (rough)" in labels
    assert any(label.startswith("First epoch") for label in labels) and "Each later epoch (rough)" in labels

    at.radio(key="cfg.freeze.preset").set_value("full").run()
    assert all(_toggles(at).values())
    assert _cfg(at).freeze.preset == "full"

    at.radio(key="cfg.freeze.preset").set_value("top_k").run()
    at.number_input(key="cfg.freeze.top_k").set_value(2).run()
    assert _toggles(at) == {"block1": False, "block2": False, "block3": True, "head": True}

    at.toggle(key="layer.block1").set_value(True).run()       # a switch makes it a custom choice
    no_exceptions(at)
    cfg = _cfg(at)
    assert cfg.freeze.preset == "custom" and cfg.freeze.trainable_groups == ["block1", "block3", "head"]
    assert at.radio(key="cfg.freeze.preset").value == "custom"
    assert _toggles(at) == {"block1": True, "block2": False, "block3": True, "head": True}


def test_model_page_without_data_shows_every_model(app_env):
    at = open_app("2_model", session={"draft_config": draft(model__name="tiny_bert")})
    no_exceptions(at)
    options = at.selectbox(key="cfg.model.name").options
    assert any(o.startswith("minilm_l6") for o in options) and any(o.startswith("efficientnet_lite0") for o in options)
    assert "embeddings" in " ".join(_toggles(at))


def test_unknown_model_name_is_explained(app_env):
    at = open_app("2_model")
    at.text_input(key="other_model").input("no-such-model")
    at.button(key="use_other_model").click().run()
    no_exceptions(at)
    assert any("unknown model" in e.value for e in at.error)


def test_train_form_comes_from_the_config(app_env, shapes_folder):
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn")})
    no_exceptions(at)
    from transfer_core.config import iter_fields
    shown = {w.key for w in [*at.number_input, *at.selectbox, *at.checkbox] if w.key}
    for dotted, f, _ in iter_fields(RunConfig()):
        if dotted.split(".")[0] in ("optim", "train", "augment"):
            assert "cfg." + dotted in shown, dotted
    helps = [w.help for w in [*at.number_input, *at.selectbox, *at.checkbox] if w.key and w.key.startswith("cfg.")]
    assert all(helps), "every setting has help"
    at.number_input(key="cfg.train.epochs").set_value(7).run()
    assert _cfg(at).train.epochs == 7
    code = at.code[0].value
    assert code.startswith("python -m transfer_core") and "--epochs 7" in code and "--model tiny_cnn" in code
    assert at.get("download_button"), "config.json is offered for download"


def test_train_page_without_data_points_to_the_data_page(app_env):
    at = open_app("3_train")
    no_exceptions(at)
    assert any("choose the data" in i.value for i in at.info)


def test_invalid_settings_block_start_with_a_reason(app_env, shapes_folder):
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            freeze__preset="staged", freeze__staged_head_epochs=5,
                                                            train__epochs=3)})
    no_exceptions(at)
    assert any("staged_head_epochs" in e.value for e in at.error)
    assert at.button(key="start").disabled


def test_start_pause_resume_stop(app_env, shapes_folder):
    from app.resources import get_store
    settings = dict(data__path=str(shapes_folder), model__name="tiny_cnn", model__image_size=32,
                    freeze__preset="full", train__epochs=1000, train__batch_size=4)
    at = open_app("3_train", session={"draft_config": draft(**settings)})
    at.text_input(key="run_name").input("flow test")
    at.button(key="start").click().run()
    no_exceptions(at)
    store = get_store()
    run_id = at.session_state["current_run"]
    assert store.get_run(run_id).name == "flow test"
    wait_for(lambda: len(store.metrics(run_id, "step")) > 0, what="the first steps")
    at.run()
    assert at.get("plotly_chart"), "the live chart is drawn"
    assert any(p.proto.text.startswith("Epoch") for p in at.get("progress")), "progress: epoch, step, speed"

    at.button(key="run_pause").click().run()
    wait_for(lambda: store.get_run(run_id).status == RunStatus.PAUSED, what="paused")
    steps = len(store.metrics(run_id, "step"))
    at.run()
    assert at.button(key="run_resume").label == "Resume"
    assert len(store.metrics(run_id, "step")) == steps        # nothing trains while paused

    at.button(key="run_resume").click().run()
    wait_for(lambda: store.get_run(run_id).status == RunStatus.RUNNING
             and len(store.metrics(run_id, "step")) > steps, what="running again")
    at.run()
    at.button(key="run_stop").click().run()
    wait_for(lambda: store.get_run(run_id).status == RunStatus.STOPPED, what="stopped")
    at.run()
    no_exceptions(at)
    assert not [b for b in at.button if b.key in ("run_pause", "run_stop")]
    assert any("badge[stopped]" in m.value for m in at.markdown)
    assert "Validation accuracy (your model)" in {m.label for m in at.metric}   # the stopped model's own evaluation
    partly = any("Stopped before the first epoch ended" in c.value for c in at.caption)
    assert partly == (store.get_run(run_id).epochs_done == 0)


def test_reload_reattaches_to_the_active_run(app_env, shapes_folder):
    from app.resources import get_jobs, get_store
    cfg = RunConfig.from_dict(draft(data__path=str(shapes_folder), model__name="tiny_cnn", model__image_size=32,
                                    freeze__preset="full", train__epochs=1000))
    open_app()                       # creates the shared JobManager
    run_id = get_jobs().submit(cfg, name="started elsewhere")
    try:
        at = open_app("3_train")     # a fresh session: nothing in its state
        no_exceptions(at)
        assert at.session_state["current_run"] == run_id
        assert any("started elsewhere" in m.value for m in at.markdown)
        assert at.query_params["run"] in (run_id, [run_id])   # the URL keeps it for a reload
    finally:
        get_jobs().stop(run_id)
        wait_for(lambda: not get_store().get_run(run_id).is_active, what="stopped")


def test_data_that_cannot_be_trained_on_blocks_start_with_its_reason(app_env, tmp_path):
    """One class only: the Data page's report refuses it, so Start stays off instead of making a failed run."""
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,a\nworld,a\nagain,a\n", encoding="utf-8")
    at = open_app("3_train", session={"draft_config": draft(data__path=str(bad), model__name="tiny_bert")})
    no_exceptions(at)
    assert at.button(key="start").disabled
    assert any(e.value.startswith("Start needs data that can be read:") and "one class" in e.value for e in at.error)


def test_train_page_offers_turning_augmentation_off_when_it_blocks_the_feature_cache(app_env, shapes_folder):
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            freeze__preset="feature_extraction", augment__flip=True)})
    no_exceptions(at)
    assert any("cache is off" in i.value for i in at.info)
    at.button(key="augment_off").click().run()
    no_exceptions(at)
    assert not _cfg(at).augment.enabled
    assert not any("cache is off" in i.value for i in at.info)
    assert at.checkbox(key="cfg.augment.flip").value is False


def test_model_page_shows_how_a_text_model_pools(app_env, topics_csv):
    # all-MiniLM-L6-v2 was trained through mean pooling: auto says so, and a choice is kept in the draft.
    at = open_app("2_model", session={"draft_config": draft(data__path=str(topics_csv), model__name="minilm_l6")})
    no_exceptions(at)
    pooling = at.selectbox(key="cfg.model.pooling")
    assert pooling.value == "auto"
    assert any("the average of all its tokens, as this sentence encoder was trained" in c.value for c in at.caption)
    pooling.set_value("cls").run()
    no_exceptions(at)
    assert _cfg(at).model.pooling == "cls"
    assert any("The head reads its first token." in c.value for c in at.caption)


def test_model_page_hides_pooling_for_images(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn")})
    no_exceptions(at)
    assert not [s for s in at.selectbox if s.key == "cfg.model.pooling"]


def test_hidden_units_in_the_head_are_an_advanced_model_setting_and_size_the_head(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__image_size=32)})
    hidden = at.number_input(key="cfg.model.head_hidden")
    assert hidden.label == "Hidden units in the head" and hidden.value == 0
    hidden.set_value(16).run()
    no_exceptions(at)
    assert _cfg(at).model.head_hidden == 16
    # 32 features -> 16 hidden units -> 3 classes, with biases.
    assert any(m.value == f"{32 * 16 + 16 + 16 * 3 + 3:,}" for m in at.markdown)
