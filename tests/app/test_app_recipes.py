"""The Model page's Recipes box: a classic recipe's settings put into the draft, and shown by the widgets."""
from __future__ import annotations

from apphelpers import draft, no_exceptions, open_app

from transfer_core.config import RunConfig


def test_the_model_page_applies_a_recipe_to_the_draft(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__pretrained=False)})
    no_exceptions(at)
    at.selectbox(key="recipe_choice").set_value("freeze_then_unfreeze").run()
    no_exceptions(at)
    assert any("Train the head" in m.value or "trains the new head alone" in m.value for m in at.markdown)
    at.button(key="recipe_apply").click().run()
    no_exceptions(at)
    cfg = RunConfig.from_dict(at.session_state["draft_config"])
    assert (cfg.freeze.preset, cfg.freeze.staged_head_epochs, cfg.optim.scheduler, cfg.optim.weight_decay) == \
        ("staged", 3, "exponential", 1e-4)
    assert at.radio(key="cfg.freeze.preset").value == "staged"    # the widgets show the recipe's values
    assert (cfg.optim.lr, cfg.freeze.body_lr_factor) == (1e-3, 1.0)  # kept, not replaced by recommended rates


def test_a_recipes_rates_stay_after_the_page_is_reloaded(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__pretrained=False)})
    at.radio(key="cfg.freeze.preset").set_value("full").run()
    assert RunConfig.from_dict(at.session_state["draft_config"]).freeze.body_lr_factor == 0.1   # the form's CNN rate
    at.selectbox(key="recipe_choice").set_value("from_scratch").run()
    at.button(key="recipe_apply").click().run()
    assert RunConfig.from_dict(at.session_state["draft_config"]).freeze.body_lr_factor == 1.0
    # A reload is a new session: the draft comes back from the data folder, and 1.0 (also the config's
    # default, a value the form could have chosen) is still the recipe's, not replaced by the CNN rate.
    again = open_app("2_model")
    no_exceptions(again)
    assert RunConfig.from_dict(again.session_state["draft_config"]).freeze.body_lr_factor == 1.0


def test_gradual_unfreezing_recipe_shows_its_order_in_the_layer_map(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__pretrained=False)})
    at.selectbox(key="recipe_choice").set_value("gradual_unfreezing").run()
    at.button(key="recipe_apply").click().run()
    no_exceptions(at)
    cfg = RunConfig.from_dict(at.session_state["draft_config"])
    assert (cfg.freeze.preset, cfg.freeze.lr_decay, cfg.train.epochs) == ("gradual", 0.6, 10)
    assert at.radio(key="cfg.freeze.preset").value == "gradual"
    captions = " ".join(c.value for c in at.caption)
    assert "Gradual: epoch 1 trains `head` alone" in captions and "every group trains" in captions
    assert all(at.toggle(key=f"layer.{name}").value for name in ("block1", "head"))   # all train by the end
