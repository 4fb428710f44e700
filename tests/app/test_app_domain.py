"""AppTest: the layer probe and the adaptation method on the Model page, the new-domain step on the Data page, and the new
domain's line on the live chart (app/domain_ui.py, app/charts.py)."""
from __future__ import annotations

import pandas as pd
from apphelpers import draft, no_exceptions, open_app

from app import charts
from transfer_core.config import RunConfig


def _draft(at) -> RunConfig:
    return RunConfig.from_dict(at.session_state["draft_config"])


def test_the_digits_demo_offers_its_shifted_copy_as_the_new_domain(app_env):
    at = open_app("1_data", session={"draft_config": draft(data__path="demo:digits?per_class=10",
                                                           model__name="tiny_cnn", model__pretrained=False)})
    no_exceptions(at)
    assert any("Domain adaptation" in m.value for m in at.markdown)
    at.button(key="domain_digits").click().run()
    no_exceptions(at)
    cfg = _draft(at)
    assert (cfg.adapt.target, cfg.adapt.target_val) == ("demo:digits-shifted", "demo:digits-shifted")
    assert any("898 unlabelled images" in s.value for s in at.success)
    at.button(key="domain_clear").click().run()
    no_exceptions(at)
    assert (_draft(at).adapt.target, _draft(at).adapt.method) == ("", "none")


def test_the_model_page_asks_how_to_adapt_and_says_what_blocks_it(app_env):
    at = open_app("2_model", session={"draft_config": draft(
        data__path="demo:digits?per_class=10", model__name="tiny_cnn", model__pretrained=False,
        adapt__target="demo:digits-shifted", adapt__target_val="demo:digits-shifted")})
    no_exceptions(at)
    at.selectbox(key="cfg.adapt.method").set_value("dann").run()
    no_exceptions(at)
    assert any("feature_extraction freezes" in e.value for e in at.error)   # the default preset freezes it all
    at.radio(key="cfg.freeze.preset").set_value("full").run()
    no_exceptions(at)
    assert not [e for e in at.error if "adapt" in e.value]
    assert _draft(at).adapt.method == "dann"


def test_without_a_new_domain_the_model_page_does_not_ask(app_env):
    at = open_app("2_model", session={"draft_config": draft(data__path="demo:digits?per_class=10",
                                                            model__name="tiny_cnn", model__pretrained=False)})
    no_exceptions(at)
    assert "cfg.adapt.method" not in [w.key for w in at.selectbox]


def test_the_live_chart_draws_the_new_domain_only_when_measured():
    epochs = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                           "train_accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7], "lr": [0.1, 0.1]})
    plain = charts.training_curves(epochs, pd.DataFrame())
    adapted = charts.training_curves(epochs.assign(target_accuracy=[0.2, 0.35]), pd.DataFrame())
    assert "new domain" not in [t.name for t in plain.data]
    assert [list(t.y) for t in adapted.data if t.name == "new domain"] == [[0.2, 0.35]]


def test_the_model_page_measures_which_layer_transfers_best(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__pretrained=False, model__image_size=16)})
    no_exceptions(at)
    at.button(key="probe_start").click().run()
    no_exceptions(at)
    text = " ".join(m.value for m in at.markdown)
    assert "Best: **`block" in text and "validation accuracy with a linear head" in text
    again = at.run()   # kept for the session: shown again without measuring
    assert "Best: **`block" in " ".join(m.value for m in again.markdown)
    # One click: the head reads the best group, and the Train page is next.
    result = next(iter(again.session_state["probe_results"].values()))
    names = [layer.layer for layer in result.layers]
    if result.best_layer == names[-1]:
        assert any("The head reads `" in c.value for c in again.caption)
    else:
        again.button(key="probe_use_best").click().run()
        assert _draft(again).model.feature_layer == result.best_layer


def test_the_head_reads_an_inner_group_chosen_above_the_layer_map(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__pretrained=False, model__image_size=16)})
    no_exceptions(at)
    choice = at.selectbox(key="cfg.model.feature_layer")
    assert choice.options == ["block3: the last group, as pretrained", "block1: the groups above it are removed",
                              "block2: the groups above it are removed"]
    assert {"layer.block1", "layer.block2", "layer.block3", "layer.head"} <= {t.key for t in at.toggle}
    choice.set_value("block2").run()
    no_exceptions(at)
    assert _draft(at).model.feature_layer == "block2"
    toggles = {t.key for t in at.toggle}
    assert "layer.block3" not in toggles and {"layer.block2", "layer.head"} <= toggles   # the map shows what is kept
    # A model without those groups: the choice does not carry over.
    at.session_state["draft_config"] = draft(data__path=str(shapes_folder), model__name="efficientnet_lite0",
                                             model__image_size=32, model__feature_layer="block2")
    at.run()
    no_exceptions(at)
    assert _draft(at).model.feature_layer == ""
