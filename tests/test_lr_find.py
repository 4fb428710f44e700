"""The learning-rate range test (lr_find.py) and the strategies compared in one click (strategies.py), on real
training steps of tiny models; the suggestion against fastai's rule on known curves."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_cli import cli
from test_trainer import image_config, text_config

from transfer_core.errors import RunError
from transfer_core.lr_find import LRRangeTest, judged, lr_find, steepest, range_test_config, valley
from transfer_core.strategies import STRATEGIES, strategy_configs
from transfer_core.trainer import fit


def test_valley_is_fastais_rule_on_a_known_curve():
    lrs = list(np.logspace(-7, 1, 100))
    # flat, then falling from step 30 to step 70, then blowing up
    losses = [2.0] * 30 + list(np.linspace(2.0, 0.4, 40)) + list(np.linspace(0.5, 20, 30))
    # longest decreasing run: from step 29 (the last flat point) to step 69; a third plus a sixth of the way in
    start, end = 29, 69
    sections = (end - start) / 3
    assert valley(lrs, losses) == lrs[start + int(sections) + int(sections / 2)]
    assert 30 <= lrs.index(steepest(lrs, losses)) < 70
    assert valley(lrs, [1.0]) is None and steepest(lrs, [1.0, 2.0]) is None
    assert valley(lrs, [1.0, 1.2, 1.5, 3.0]) is None          # the loss never fell: nothing to suggest
    trimmed_lrs, trimmed = judged(lrs, losses)
    assert trimmed_lrs == lrs[10:95] and trimmed == losses[10:95]


def test_the_rate_grows_exponentially_and_bad_ranges_are_refused():
    test = LRRangeTest(1e-6, 1.0, 7)
    assert [round(math.log10(test.rate(i)), 6) for i in range(7)] == [-6, -5, -4, -3, -2, -1, 0]
    for bad in ((0, 1, 10), (1.0, 0.1, 10), (1e-7, 10, 1)):
        with pytest.raises(RunError, match="start rate"):
            LRRangeTest(*bad)


def test_the_test_trains_the_first_stage_only_and_leaves_no_run(digits_folder, store):
    cfg = image_config(digits_folder, freeze__preset="staged", optim__scheduler="cosine")
    settings = range_test_config(cfg)
    assert settings.freeze.preset == "feature_extraction" and settings.optim.scheduler == "constant"
    result = lr_find(cfg, runs_dir=store.root, steps=40, end_lr=100.0)
    assert store.list_runs() == []
    n = len(result.lrs)
    assert 10 <= n <= 40 and len(result.losses) == len(result.smoothed) == n
    assert result.lrs[0] == pytest.approx(1e-7) and all(b > a for a, b in zip(result.lrs, result.lrs[1:]))
    if n < 40:
        assert result.stopped_by_divergence       # it stops early only once the loss blows up
    assert result.suggested_lr is not None and 1e-7 < result.suggested_lr < 100
    # The rates it used are the run's, as shares of the head's: the suggestion trains.
    trained = fit(image_config(digits_folder, optim__lr=result.suggested_lr, train__epochs=3), store=store)
    assert trained.status == "completed"


def test_a_text_model_full_fine_tuning_range_test(topics_csv, store):
    result = lr_find(text_config(topics_csv), runs_dir=store.root, steps=30)
    assert len(result.lrs) >= 10 and all(math.isfinite(x) for x in result.losses[:10])


def test_the_lr_find_command_prints_a_table_and_json_last(digits_folder, tmp_path):
    proc = cli("lr-find", "--data", digits_folder, "--model", "tiny_cnn", "--image-size", 16, "--steps", 30,
               "--freeze", "full", "--set", "model.pretrained=false", runs_dir=tmp_path / "runs")
    assert "note: learning rates for full" in proc.stderr     # the rates train would use, per group
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["learning_rate", "loss", "smoothed"]
    out = json.loads(lines[-1])
    assert out["model"] == "tiny_cnn" and out["suggested_lr"] > 0 and len(out["points"]) >= 10
    refused = cli("lr-find", "--data", digits_folder, "--model", "tiny_cnn", "--steps", 1, runs_dir=tmp_path / "runs",
                  check=False)
    assert refused.returncode == 2 and "2 steps or more" in refused.stderr


def test_the_strategies_differ_only_in_what_defines_them(digits_folder, store):
    first = fit(image_config(digits_folder, train__epochs=1), store=store)
    cfg = image_config(digits_folder, model__name=f"run:{first.run_id}", optim__lr=0.005, train__epochs=4)
    configs = dict((s.name, c) for s, c in strategy_configs(cfg, runs_dir=store.root))
    assert list(configs) == [s.name for s in STRATEGIES]
    assert configs["head_only"].freeze.preset == "feature_extraction"
    assert (configs["top_layers"].freeze.preset, configs["top_layers"].freeze.top_k) == ("top_k", 3)
    assert configs["full"].freeze.preset == "full" and configs["full"].model.name == f"run:{first.run_id}"
    scratch = configs["from_scratch"]
    assert scratch.model.name == "tiny_cnn" and not scratch.model.pretrained and scratch.freeze.body_lr_factor == 1.0
    for config in configs.values():
        assert (config.optim.lr, config.train.epochs, config.data.path) == (0.005, 4, str(digits_folder))


def test_a_run_model_is_found_in_the_runs_folder_and_paths_are_held_to_the_app_folders(digits_folder, store, tmp_path):
    first = fit(image_config(digits_folder, train__epochs=1), store=store)
    result = lr_find(image_config(digits_folder, model__name=f"run:{first.run_id}"), runs_dir=store.root, steps=15)
    assert len(result.lrs) >= 10
    with pytest.raises(Exception, match="outside"):
        lr_find(image_config(digits_folder), runs_dir=store.root, steps=15, allowed_roots=[tmp_path / "elsewhere"])


def test_the_compare_command_trains_the_four_strategies(digits_folder, tmp_path):
    proc = cli("compare", "--data", digits_folder, "--model", "tiny_cnn", "--image-size", 16, "--epochs", 1,
               "--batch-size", 8, "--quiet", runs_dir=tmp_path / "runs")
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[1:5]] == [s.name for s in STRATEGIES]
    rows = json.loads(lines[-1])["runs"]
    assert [r["status"] for r in rows] == ["completed"] * 4
    trainable = [r["trainable_params"] for r in rows]
    assert trainable[0] < trainable[1] < trainable[2] == trainable[3] == rows[0]["total_params"]
    listed = json.loads(cli("runs", "--json", runs_dir=tmp_path / "runs").stdout)
    assert {r["id"] for r in listed} == {r["run_id"] for r in rows}
