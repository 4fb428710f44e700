"""Learning rates that follow the preset and the model (transfer_core.freezing), as the CLI and the app apply them.

Issue 12: a switch from head only to full fine-tuning kept 2e-3 for MiniLM's pretrained layers, and the
model ended at chance. The new head learns at optim.lr, pretrained groups at optim.lr x freeze.body_lr_factor.
"""
from __future__ import annotations

import json

import pytest

from transfer_core.config import RunConfig
from transfer_core.freezing import (apply_recommended_rates, body_lr, optimizer_param_groups, rate_warnings,
                                    recommended_rates)
from transfer_core.models import build_model, get_spec

from test_cli import cli


def config(model: str, preset: str, **sets) -> RunConfig:
    cfg = RunConfig()
    cfg.model.name = model
    cfg.freeze.preset = preset
    for key, value in sets.items():
        cfg.set(key.replace("__", "."), value)
    return cfg


def test_recommended_rates_follow_the_model_and_the_optimizer():
    minilm, lite0, vit = get_spec("minilm_l6"), get_spec("efficientnet_lite0"), get_spec("vit_b_16")
    assert recommended_rates(minilm) == {"optim.lr": 2e-3, "freeze.body_lr_factor": pytest.approx(0.025)}
    assert recommended_rates(lite0)["freeze.body_lr_factor"] == pytest.approx(0.1)
    assert recommended_rates(vit)["freeze.body_lr_factor"] == pytest.approx(0.025)    # a vision transformer
    assert recommended_rates(lite0, "sgd")["optim.lr"] == pytest.approx(2e-2)
    # Full fine-tuning of MiniLM: the new head fast, the pretrained layers at a transformer's usual rate.
    cfg = config("minilm_l6", "full")
    apply_recommended_rates(cfg, minilm)
    assert cfg.optim.lr == 2e-3 and body_lr(cfg) == pytest.approx(5e-5)
    assert rate_warnings(cfg, minilm) == []


def test_user_rates_are_kept_and_warned_about_when_out_of_range():
    minilm = get_spec("minilm_l6")
    cfg = config("minilm_l6", "full", optim__lr=2e-3, freeze__body_lr_factor=1.0)
    assert apply_recommended_rates(cfg, minilm, keep={"optim.lr", "freeze.body_lr_factor"}) == {}
    assert cfg.freeze.body_lr_factor == 1.0
    warnings = rate_warnings(cfg, minilm)
    assert len(warnings) == 1 and "pretrained layers would train at 0.002" in warnings[0]
    # The same rate is right for a head alone: no warning for head-only training.
    assert rate_warnings(config("minilm_l6", "feature_extraction", optim__lr=2e-3), minilm) == []
    assert rate_warnings(config("minilm_l6", "top_k", freeze__top_k=1, freeze__body_lr_factor=1.0), minilm) == []
    # Far out of range for the head, and far too slow a body.
    assert "very high" in rate_warnings(config("minilm_l6", "feature_extraction", optim__lr=10), minilm)[0]
    slow = rate_warnings(config("efficientnet_lite0", "staged", optim__lr=1e-3, freeze__body_lr_factor=1e-4),
                         get_spec("efficientnet_lite0"))
    assert len(slow) == 1 and "so slowly" in slow[0]


def test_pretrained_groups_get_the_body_factor():
    built = build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16)
    names = tuple(g.name for g in built.groups)
    groups = optimizer_param_groups(built, names, lr=1e-2, lr_decay=0.5, weight_decay=0.01, body_lr_factor=0.1)
    rates = {g["name"].removesuffix(".no_decay"): g["lr"] for g in groups}
    assert rates == {"head": pytest.approx(1e-2), "block3": pytest.approx(1e-2 * 0.1 * 0.5),
                     "block2": pytest.approx(1e-2 * 0.1 * 0.25), "block1": pytest.approx(1e-2 * 0.1 * 0.125)}


def _saved_config(runs, proc) -> dict:
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
    return json.loads((runs / run_id / "config.json").read_text())


def test_cli_applies_the_rates_unless_given(digits_folder, tmp_path):
    runs = tmp_path / "runs"
    common = ("train", "--data", digits_folder, "--model", "tiny_cnn", "--epochs", 1, "--image-size", 16,
              "--batch-size", 16, "--freeze", "full", "--set", "model.pretrained=false")
    proc = cli(*common, runs_dir=runs)
    saved = _saved_config(runs, proc)
    assert saved["optim"]["lr"] == 2e-3 and saved["freeze"]["body_lr_factor"] == pytest.approx(0.1)
    assert "pretrained layers 0.0002" in proc.stderr and "warning" not in proc.stderr

    proc = cli(*common, "--lr", "0.004", "--set", "freeze.body_lr_factor=1", runs_dir=runs)
    saved = _saved_config(runs, proc)
    assert saved["optim"]["lr"] == 0.004 and saved["freeze"]["body_lr_factor"] == 1.0
    assert "warning: The pretrained layers would train at 0.004" not in proc.stderr   # 0.004 suits a CNN
    proc = cli(*common, "--lr", "0.05", "--set", "freeze.body_lr_factor=1", runs_dir=runs)
    assert "warning: The pretrained layers would train at 0.05" in proc.stderr


def test_runs_report_the_heads_rate(digits_folder, store):
    from transfer_core.trainer import fit
    cfg = config("tiny_cnn", "full", data__path=str(digits_folder), model__pretrained=False, model__image_size=16,
                 train__epochs=1, train__batch_size=16, train__device="cpu", optim__scheduler="constant",
                 optim__lr=0.004, freeze__body_lr_factor=0.1)
    result = fit(cfg, store=store)
    assert result.status == "completed", result.message
    # The chart's learning rate is the one the form calls "Learning rate", not the pretrained groups' share.
    assert set(store.metrics(result.run_id, "step")["lr"]) == {0.004}
    assert list(store.metrics(result.run_id, "epoch")["lr"]) == [0.004]
