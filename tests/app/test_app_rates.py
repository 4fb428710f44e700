"""AppTest: learning rates follow the preset and the model; the new-run form says what it kept (issue 12)."""
from __future__ import annotations

import pytest
from apphelpers import draft, no_exceptions, open_app, wait_for

from transfer_core.config import RunConfig
from transfer_core.events import RunStatus


def _cfg(at) -> RunConfig:
    return RunConfig.from_dict(at.session_state["draft_config"])


def _rate_warnings(at) -> list[str]:
    return [w.value for w in at.warning if "pretrained layers would train" in w.value]


def test_preset_change_gives_pretrained_layers_a_slow_rate_and_keeps_user_rates(app_env, topics_csv):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(topics_csv), model__name="tiny_bert")})
    no_exceptions(at)
    at.radio(key="cfg.freeze.preset").set_value("full").run()
    no_exceptions(at)
    cfg = _cfg(at)
    # The new head keeps its fast rate; the pretrained transformer layers get a fine-tuning rate.
    assert cfg.optim.lr == 2e-3 and cfg.freeze.body_lr_factor == pytest.approx(0.025)
    assert not _rate_warnings(at)

    # A rate the user entered is kept, and the page says it looks wrong for full fine-tuning.
    at.number_input(key="cfg.freeze.body_lr_factor").set_value(1.0).run()
    at.radio(key="cfg.freeze.preset").set_value("feature_extraction").run()
    assert not _rate_warnings(at)                 # a head alone may learn at 2e-3
    at.radio(key="cfg.freeze.preset").set_value("full").run()
    no_exceptions(at)
    assert _cfg(at).freeze.body_lr_factor == 1.0
    assert len(_rate_warnings(at)) == 1 and "0.002" in _rate_warnings(at)[0]


def test_train_page_warns_about_an_out_of_range_rate(app_env, topics_csv):
    at = open_app("3_train", session={"draft_config": draft(data__path=str(topics_csv), model__name="tiny_bert",
                                                            freeze__preset="full")})
    no_exceptions(at)
    assert _cfg(at).freeze.body_lr_factor == pytest.approx(0.025)   # a stock value is the form's own
    assert not _rate_warnings(at)
    at.number_input(key="cfg.optim.lr").set_value(0.5).run()
    no_exceptions(at)
    assert _cfg(at).optim.lr == 0.5
    assert any("very high" in w.value for w in at.warning)
    assert not at.button(key="start").disabled       # a warning, not a block


def test_new_run_form_says_what_it_kept_from_the_last_run_and_resets(app_env, shapes_folder):
    from app.resources import get_store
    extreme = dict(data__path=str(shapes_folder), model__name="tiny_cnn", model__image_size=32, train__epochs=1,
                   optim__lr=10.0, train__batch_size=4096, model__pretrained=False)
    at = open_app("3_train", session={"draft_config": draft(**extreme)})
    assert not [i for i in at.info if "Kept from the last run" in i.value]    # no run yet: nothing was kept
    at.button(key="start").click().run()
    run_id = at.session_state["current_run"]
    wait_for(lambda: not get_store().get_run(run_id).is_active, what="the run to end")
    at.run()
    no_exceptions(at)
    kept = [i.value for i in at.info if "Kept from the last run" in i.value]
    assert kept and "Learning rate **10**" in kept[0] and "Batch size **4096** (default 32)" in kept[0]

    at.button(key="reset_settings").click().run()
    no_exceptions(at)
    cfg = _cfg(at)
    assert cfg.optim.lr == 2e-3 and cfg.train.batch_size == 32 and cfg.train.epochs == 10
    assert at.number_input(key="cfg.optim.lr").value == 2e-3
    assert at.number_input(key="cfg.train.batch_size").value == 32
    assert not [i for i in at.info if "Kept from the last run" in i.value]
    assert get_store().get_run(run_id).status in RunStatus.TERMINAL


@pytest.mark.parametrize("optimizer,lr,factor", [("adamw", 2e-3, 0.025), ("sgd", 2e-3, 0.025), ("sgd", 2e-2, 1.0)])
def test_cli_command_gives_the_cli_the_same_rates(monkeypatch, tmp_path, optimizer, lr, factor):
    import shlex

    from app.commands import cli_command
    from transfer_core.cli import build_parser, config_from_args, explicit_settings
    from transfer_core.freezing import apply_recommended_rates
    from transfer_core.models import get_spec
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRANSFER_CORE_RUNS", str(tmp_path / "runs"))
    cfg = RunConfig.from_dict(draft(data__path="demo:bbc-news", model__name="minilm_l6", freeze__preset="full",
                                    optim__optimizer=optimizer, optim__lr=lr, freeze__body_lr_factor=factor))
    args = build_parser().parse_args(shlex.split(cli_command(cfg))[3:])
    rebuilt = config_from_args(args)
    apply_recommended_rates(rebuilt, get_spec("minilm_l6"), keep=explicit_settings(args))   # as `train` does
    assert rebuilt.to_dict() == cfg.to_dict()
