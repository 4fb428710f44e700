"""model.head_hidden: a head with one hidden layer, from training to reloading, run:<id> and export (real components)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_export import run_predict_script, write_images
from test_trainer import image_config, text_config

from transfer_core.evaluate import load_predictions, predict_inputs
from transfer_core.events import RunStatus
from transfer_core.export import export_bundle, load_bundle
from transfer_core.loop.randomness import seed_everything
from transfer_core.models import build_model
from transfer_core.models.heads import HeadLinear, HeadMLP
from transfer_core.run_files import PREDICTIONS_FILE
from transfer_core.runs import export_run, load_run_model
from transfer_core.trainer import fit

HIDDEN = 12


def hidden_head(net: torch.nn.Module) -> HeadMLP:
    heads = [m for m in net.modules() if isinstance(m, HeadMLP)]
    assert len(heads) == 1 and not any(isinstance(m, HeadLinear) for m in net.modules())
    return heads[0]


def fit_with_and_without_cache(build, path, store, **extra):
    """Train the run `build(path, **extra)` describes with the frozen-feature cache and without it; both must end
    with the same validation scores. Returns the cached run's result."""
    cached = fit(build(path, **extra), store=store)
    plain = fit(build(path, train__cache_features=False, **extra), store=store)
    assert cached.status == plain.status == RunStatus.COMPLETED, cached.message
    assert cached.metrics["val_accuracy"] == plain.metrics["val_accuracy"]
    assert cached.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], abs=1e-5)
    return cached


def test_head_is_scriptable_and_answers_as_a_linear_head():
    head = HeadMLP(8, HIDDEN, 3, dropout=0.5).eval()
    assert (head.in_features, head.out_features, head.hidden_features) == (8, 3, HIDDEN)
    x = torch.randn(4, 8)
    torch.testing.assert_close(torch.jit.script(head)(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))      # dropout acts in training only


@pytest.mark.parametrize("make_config, data", [("image", "digits_folder"), ("text", "topics_csv")])
def test_feature_extraction_trains_the_whole_hidden_head_and_caches_its_input(make_config, data, store, request):
    path = request.getfixturevalue(data)
    build = image_config if make_config == "image" else text_config
    extra = {"freeze__preset": "feature_extraction", "model__head_hidden": HIDDEN, "model__head_dropout": 0.1,
             "optim__lr": 0.01}
    cached = fit_with_and_without_cache(build, path, store, **extra)

    built = load_run_model(store, cached.run_id)
    head = hidden_head(built.net)
    assert head.hidden.out_features == HIDDEN and head.out_features == len(built.classes)
    # Both layers are in the head group: head-only training moved them all, and nothing else, from the
    # weights the run started with (the trainer seeds, then builds).
    head_name = next(n for n, m in built.net.named_modules() if m is head)
    head_params = set(built.groups[-1].param_names)
    assert {f"{head_name}.{n}" for n, _ in head.named_parameters()} <= head_params
    seed_everything(0)
    start = build_model(built.spec.name, built.classes, pretrained=False, head_hidden=HIDDEN, image_size=16,
                        max_length=16).net.state_dict()
    for name, value in built.net.named_parameters():
        assert torch.equal(value, start[name]) != (name in head_params), name


def test_a_saved_hidden_head_run_predicts_as_it_did_at_the_end_of_training(digits_folder, store):
    result = fit(image_config(digits_folder, model__head_hidden=HIDDEN, freeze__preset="full"), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    table = load_predictions(store.run_dir(result.run_id) / PREDICTIONS_FILE)
    built = load_run_model(store, result.run_id)
    assert hidden_head(built.net).hidden_features == HIDDEN
    probs = predict_inputs(built, [str(digits_folder / i) for i in table["id"]])
    expected = table[[f"prob_{c}" for c in built.classes]].to_numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-4)


def test_run_id_keeps_or_replaces_a_hidden_head(digits_folder, store):
    first = fit(image_config(digits_folder, model__head_hidden=HIDDEN, train__epochs=1), store=store)
    assert first.status == RunStatus.COMPLETED, first.message
    trained = load_run_model(store, first.run_id)
    name = f"run:{first.run_id}"
    kept = build_model(name, trained.classes, head_hidden=HIDDEN, runs_dir=store.root)
    assert torch.equal(hidden_head(kept.net).output.weight, hidden_head(trained.net).output.weight)
    # Other classes, or another head shape: a new head on the run's trained body.
    wider = build_model(name, ["x", "y"], head_hidden=2 * HIDDEN, runs_dir=store.root)
    assert hidden_head(wider.net).hidden_features == 2 * HIDDEN and wider.net.head.out_features == 2
    linear = build_model(name, trained.classes, head_hidden=0, runs_dir=store.root)
    assert isinstance(linear.net.head, HeadLinear) and linear.net.head.in_features == 32
    assert torch.equal(linear.net.block3[0].weight, trained.net.block3[0].weight)
    # A run started from it, with a linear head, trains and reloads.
    second = fit(image_config(digits_folder, model__name=name, train__epochs=1), store=store)
    assert second.status == RunStatus.COMPLETED, second.message
    assert isinstance(load_run_model(store, second.run_id).net.head, HeadLinear)


def test_image_export_with_a_hidden_head(digits_folder, store, tmp_path):
    result = fit(image_config(digits_folder, model__head_hidden=HIDDEN, train__epochs=1), store=store)
    images = write_images(tmp_path)
    bundle = export_run(store, result.run_id, tmp_path / "bundle")
    assert bundle.formats == ["torchscript", "onnx"], bundle.skipped
    assert all(bundle.parity[f]["passed"] for f in ("torchscript", "onnx"))
    engine = predict_inputs(load_run_model(store, result.run_id), images)
    module = load_bundle(bundle.path)
    for backend, tol in (("torchscript", 1e-4), ("onnx", 1e-3)):
        np.testing.assert_allclose(module.load(backend=backend).predict_proba(images), engine, atol=tol)


def test_text_export_with_a_hidden_head_puts_the_head_back(tmp_path):
    torch.manual_seed(0)
    built = build_model("tiny_bert", ["sport", "tech", "food"], pretrained=False, max_length=16, head_hidden=HIDDEN)
    with torch.no_grad():   # spread the random logits so top labels are clear-cut
        for p in built.hf_model.classifier.parameters():
            p.mul_(30)
    texts = ["the team won the match", "a new phone chip", "bake the bread with cheese"]
    result = export_bundle(built, tmp_path / "bundle", verify_inputs=texts)
    assert result.parity["hf"]["passed"]
    config = json.loads((result.path / "hf_model" / "config.json").read_text())
    assert config["transfer_hidden_head"] == {"units": HIDDEN, "paths": ["classifier"]}
    assert "hidden layer" in (result.path / "README.md").read_text()
    rows = run_predict_script(result.path, *texts)
    assert [r["label"] for r in rows] == [built.classes[i] for i in predict_inputs(built, texts).argmax(axis=1)]


def test_cli_sets_the_hidden_units(digits_folder, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "transfer_core", "--runs-dir", str(tmp_path), "train", "--data",
                           str(digits_folder), "--model", "tiny_cnn", "--epochs", "1", "--image-size", "16",
                           "--set", "model.pretrained=false", "--set", f"model.head_hidden={HIDDEN}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
    config = json.loads((tmp_path / run_id / "config.json").read_text())
    assert config["model"]["head_hidden"] == HIDDEN
    bad = subprocess.run([sys.executable, "-m", "transfer_core", "--runs-dir", str(tmp_path), "train", "--data",
                          str(digits_folder), "--model", "tiny_cnn", "--set", "model.head_hidden=-1"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "model.head_hidden" in bad.stderr


def test_efficientnet_lite0_learns_with_a_hidden_head(digits_folder, store):
    cfg = image_config(digits_folder, model__name="efficientnet_lite0", model__pretrained=True, model__image_size=64,
                       model__head_hidden=64, train__epochs=3, optim__lr=0.003)
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    built = load_run_model(store, result.run_id)
    assert hidden_head(built.net).in_features == 1280
    assert result.metrics["val_accuracy"] >= 0.75
