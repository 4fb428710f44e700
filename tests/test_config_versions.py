"""Config layout versions: saved runs and drafts from an older layout are upgraded, never reset; a config from a
newer version is refused in one line (transfer_core/config.py, CONFIG_VERSION and its upgrade steps)."""
from __future__ import annotations

import json

import pytest

from transfer_core.config import _UPGRADES, CONFIG_VERSION, ConfigError, RunConfig


def test_a_saved_config_records_its_layout_version_and_reads_back_the_same():
    cfg = RunConfig()
    cfg.set("train.epochs", 7)
    saved = cfg.to_dict()
    assert saved["version"] == CONFIG_VERSION
    assert RunConfig.from_dict(saved).to_dict() == saved
    assert RunConfig.of_saved_run(json.loads(json.dumps(saved))).train.epochs == 7


def test_every_older_version_has_an_upgrade_step():
    assert set(_UPGRADES) == set(range(1, CONFIG_VERSION))


def test_a_config_saved_before_versions_keeps_every_choice():
    old = {"model": {"name": "minilm_l6", "max_length": 64}, "train": {"epochs": 9, "batch_size": 4}}
    cfg = RunConfig.of_saved_run(old)
    assert (cfg.model.name, cfg.model.max_length, cfg.train.epochs, cfg.train.batch_size) == ("minilm_l6", 64, 9, 4)
    assert cfg.model.pooling == "cls"          # what version 1 trained text models with


@pytest.mark.parametrize("version, names", [(CONFIG_VERSION + 1, "saved by a newer Transfer Studio"),
                                            (0, "not a layout version"), ("2", "not a layout version")])
def test_a_version_this_code_cannot_read_is_refused_in_one_line(version, names):
    with pytest.raises(ConfigError, match=names) as err:
        RunConfig.of_saved_run({"version": version, "train": {"epochs": 3}})
    assert "\n" not in str(err.value)


def test_the_app_upgrades_an_old_draft_and_sets_aside_one_it_cannot_read(app_env):
    from apphelpers import no_exceptions, open_app

    data_dir = app_env / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "last_config.json").write_text(json.dumps({"model": {"name": "minilm_l6"}, "train": {"epochs": 7}}))
    at = open_app("3_train")
    no_exceptions(at)
    draft = RunConfig.from_dict(at.session_state["draft_config"])
    assert (draft.model.name, draft.train.epochs) == ("minilm_l6", 7)

    (data_dir / "last_config.json").write_text(json.dumps({"version": CONFIG_VERSION + 1, "train": {"epochs": 7}}))
    at = open_app("3_train")
    no_exceptions(at)
    assert any("could not be read" in w.value and "newer Transfer Studio" in w.value for w in at.warning)
    assert (data_dir / "last_config.unreadable.json").is_file()
    assert RunConfig.from_dict(at.session_state["draft_config"]).train.epochs == RunConfig().train.epochs


@pytest.mark.parametrize("optim, nesterov", [({"optimizer": "sgd", "momentum": 0.9}, True), ({"optimizer": "sgd"}, True),
                                             ({"optimizer": "sgd", "momentum": 0.0}, False), ({"optimizer": "adamw"}, False)])
def test_sgd_runs_saved_before_the_nesterov_switch_keep_nesterov_momentum(optim, nesterov):
    # Until layout 3, SGD with momentum always used Nesterov's: a resumed run must go on with it.
    assert RunConfig.of_saved_run({"version": 2, "optim": optim}).optim.nesterov is nesterov
    assert RunConfig().optim.nesterov is False      # new runs: plain momentum unless asked
