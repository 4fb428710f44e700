"""The classic recipes (transfer_core/recipes.py): valid settings, the CLI's --recipe with options that win,
and the Model page's Recipes box (tests/app/test_app_recipes.py)."""
from __future__ import annotations

import json

import pytest
from test_cli import cli

from transfer_core.config import RunConfig
from transfer_core.recipes import RECIPES
from transfer_core.run_files import CONFIG_FILE


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_is_a_valid_starting_point_that_says_what_it_is_for(name):
    recipe = RECIPES[name]
    cfg = RunConfig()
    cfg.data.path = "demo:bbc-news"
    recipe.apply(cfg).check()
    assert all(cfg.get(key) == value for key, value in recipe.settings.items())
    assert len(recipe.about.split(". ")) >= 2 and recipe.title   # a few sentences: what it does, when to use it


def test_train_with_a_recipe_takes_its_settings_and_the_options_given_win(digits_folder, tmp_path):
    runs = tmp_path / "runs"
    cli("train", "--data", digits_folder, "--model", "tiny_cnn", "--recipe", "feature_extractor", "--epochs", 1,
        "--image-size", 16, "--set", "model.pretrained=false", "--lr", 0.01, "--quiet", runs_dir=runs)
    (folder,) = [p for p in runs.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()]
    saved = RunConfig.of_saved_run(json.loads((folder / CONFIG_FILE).read_text()))
    assert (saved.freeze.preset, saved.optim.optimizer, saved.optim.momentum, saved.optim.nesterov) == \
        ("feature_extraction", "sgd", 0.9, False)
    assert (saved.optim.lr, saved.train.epochs) == (0.01, 1)     # given on the command line: they win


def test_a_recipes_rates_are_kept_not_replaced_by_the_models_recommended_ones(digits_folder, tmp_path):
    runs = tmp_path / "runs"
    cli("train", "--data", digits_folder, "--model", "tiny_cnn", "--recipe", "from_scratch", "--epochs", 1,
        "--image-size", 16, "--quiet", runs_dir=runs)
    (folder,) = [p for p in runs.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()]
    saved = RunConfig.of_saved_run(json.loads((folder / CONFIG_FILE).read_text()))
    # Random weights everywhere: one rate for every layer (not the pretrained layers' smaller share).
    assert (saved.model.pretrained, saved.freeze.preset, saved.freeze.body_lr_factor) == (False, "full", 1.0)


def test_an_unknown_recipe_is_refused_in_one_line(tmp_path):
    proc = cli("train", "--data", "demo:bbc-news", "--recipe", "magic", runs_dir=tmp_path / "runs", check=False)
    assert proc.returncode == 2 and "invalid choice: 'magic'" in proc.stderr and "bert_finetune" in proc.stderr
