"""model.feature_layer: the head reads an inner layer group, from building to training, reloading, run:<id>
and export (real components: tiny models, the offline EfficientNet-Lite0, real files)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_export import run_predict_script, write_images
from test_head_hidden import fit_with_and_without_cache
from test_trainer import image_config, text_config

from transfer_core.errors import ModelError
from transfer_core.evaluate import load_predictions, predict_inputs
from transfer_core.events import RunStatus
from transfer_core.export import export_bundle
from transfer_core.models import build_model
from transfer_core.models.feature_layer import InnerLayerNet
from transfer_core.models.heads import HeadLinear, HeadMLP
from transfer_core.run_files import PREDICTIONS_FILE
from transfer_core.runs import export_run, load_run_model
from transfer_core.trainer import fit

CLASSES = ["a", "b", "c"]


def built_pair(name: str, layer: str, **kwargs):
    """The model read at its last group and at `layer`, from the same random weights."""
    torch.manual_seed(0)
    full = build_model(name, CLASSES, pretrained=False, **kwargs)
    torch.manual_seed(0)
    return full, build_model(name, CLASSES, pretrained=False, feature_layer=layer, **kwargs)


def test_an_image_head_reads_the_pooled_output_of_the_chosen_group():
    full, inner = built_pair("tiny_cnn", "block2", image_size=16)
    assert isinstance(inner.net, InnerLayerNet) and inner.feature_layer == "block2"
    assert [g.name for g in inner.groups] == ["block1", "block2", "head"]
    assert inner.groups[-1].param_names == ["head.weight", "head.bias"]
    # The group above is gone from the network and its state dict, not only skipped.
    assert not any("block3" in k for k in inner.net.state_dict())
    assert sum(p.numel() for p in inner.net.parameters()) < sum(p.numel() for p in full.net.parameters())
    pixels = torch.randn(4, 3, 16, 16)
    full.net.eval(), inner.net.eval()
    # What the probe measured for block2 (global average of its feature maps) is what the head reads.
    torch.testing.assert_close(inner.net.features(pixel_values=pixels), full.net.pool_hidden(full.net.prefix(2, pixels)))
    assert inner.net(pixel_values=pixels).shape == (4, 3) and inner.net.head.in_features == 16


def test_the_last_group_or_nothing_leaves_the_model_as_it_is_and_a_wrong_name_is_refused():
    full, same = built_pair("tiny_cnn", "block3", image_size=16)
    assert type(same.net) is type(full.net) and same.feature_layer == ""
    with pytest.raises(ModelError, match="'block9' is not a layer group of tiny_cnn; choose one of block1, block2, block3"):
        build_model("tiny_cnn", CLASSES, pretrained=False, feature_layer="block9")
    with pytest.raises(ModelError, match="is not a layer group"):
        build_model("tiny_cnn", CLASSES, pretrained=False, feature_layer="head")


def test_a_bert_model_keeps_its_own_form_with_fewer_encoder_layers(tmp_path):
    full, inner = built_pair("tiny_bert", "layer0", max_length=16, head_hidden=0)
    assert inner.hf_model.config.num_hidden_layers == 1 and len(inner.hf_model.bert.encoder.layer) == 1
    assert [g.name for g in inner.groups] == ["embeddings", "layer0", "head"]
    assert inner.groups[-1].param_names == full.groups[-1].param_names     # its own head: pooler and classifier
    batch = dict(inner.preprocess.tokenizer(["the team won", "a new phone chip"], return_tensors="pt", padding=True))
    full.net.eval(), inner.net.eval()
    torch.testing.assert_close(inner.net.features(**batch), full.net.pool_hidden(full.net.prefix(2, **batch)))
    # Still a standard Hugging Face model: the bundle saves, reloads with one layer and predicts the same.
    with torch.no_grad():
        for p in inner.hf_model.classifier.parameters():
            p.mul_(30)
    texts = ["the team won the match", "a new phone chip", "bake the bread with cheese"]
    result = export_bundle(inner, tmp_path / "bundle", verify_inputs=texts)
    assert result.parity["hf"]["passed"]
    assert json.loads((result.path / "hf_model" / "config.json").read_text())["num_hidden_layers"] == 1
    rows = run_predict_script(result.path, *texts)
    assert [r["label"] for r in rows] == [inner.classes[i] for i in predict_inputs(inner, texts).argmax(axis=1)]


def test_a_run_from_an_inner_group_caches_reloads_and_exports(digits_folder, store, tmp_path):
    extra = {"freeze__preset": "feature_extraction", "model__feature_layer": "block2", "model__head_hidden": 8}
    cached = fit_with_and_without_cache(image_config, digits_folder, store, **extra)

    built = load_run_model(store, cached.run_id)
    assert built.feature_layer == "block2" and isinstance(built.net.head, HeadMLP) and built.net.head.in_features == 16
    table = load_predictions(store.run_dir(cached.run_id) / PREDICTIONS_FILE)
    probs = predict_inputs(built, [str(digits_folder / i) for i in table["id"]])
    np.testing.assert_allclose(probs, table[[f"prob_{c}" for c in built.classes]].to_numpy(), atol=1e-4)

    images = write_images(tmp_path)
    bundle = export_run(store, cached.run_id, tmp_path / "bundle")
    assert bundle.formats == ["torchscript", "onnx"] and all(bundle.parity[f]["passed"] for f in bundle.formats)
    assert json.loads((bundle.path / "export.json").read_text())["feature_layer"] == "block2"
    np.testing.assert_allclose(predict_inputs(load_run_model(store, cached.run_id), images),
                               predict_inputs(built, images), atol=1e-5)


def test_a_run_from_an_inner_group_is_a_starting_point_with_its_own_or_a_new_head(digits_folder, store):
    first = fit(image_config(digits_folder, model__feature_layer="block1", train__epochs=1), store=store)
    assert first.status == RunStatus.COMPLETED, first.message
    trained = load_run_model(store, first.run_id)
    name = f"run:{first.run_id}"
    kept = build_model(name, trained.classes, runs_dir=store.root)
    assert kept.feature_layer == "block1" and torch.equal(kept.net.head.weight, trained.net.head.weight)
    other = build_model(name, ["x", "y"], runs_dir=store.root)
    assert isinstance(other.net.head, HeadLinear) and other.net.head.out_features == 2 and other.net.head.in_features == 8
    assert [g.name for g in other.groups] == ["block1", "head"]
    torch.testing.assert_close(other.net.body.block1[0].weight, trained.net.body.block1[0].weight)
    second = fit(image_config(digits_folder, model__name=name, train__epochs=1), store=store)
    assert second.status == RunStatus.COMPLETED, second.message
    assert load_run_model(store, second.run_id).feature_layer == "block1"


def test_a_text_run_from_an_inner_layer_trains_and_reloads(topics_csv, store):
    result = fit(text_config(topics_csv, model__feature_layer="embeddings"), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    built = load_run_model(store, result.run_id)
    assert built.hf_model.config.num_hidden_layers == 0 and [g.name for g in built.groups] == ["embeddings", "head"]


def test_the_cli_takes_the_feature_layer_and_names_a_wrong_one(digits_folder, tmp_path):
    base = [sys.executable, "-m", "transfer_core", "--runs-dir", str(tmp_path), "train", "--data", str(digits_folder),
            "--model", "tiny_cnn", "--epochs", "1", "--image-size", "16", "--set", "model.pretrained=false"]
    proc = subprocess.run(base + ["--feature-layer", "block2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
    assert json.loads((tmp_path / run_id / "config.json").read_text())["model"]["feature_layer"] == "block2"
    bad = subprocess.run(base + ["--feature-layer", "stage9"], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "model.feature_layer 'stage9' is not a layer group" in bad.stderr


def test_efficientnet_lite0_from_a_middle_stage_matches_the_probe_and_learns(digits_folder, store):
    torch.manual_seed(0)
    built = build_model("efficientnet_lite0", CLASSES, image_size=64, feature_layer="stage5")
    assert [g.name for g in built.groups][-2:] == ["stage5", "head"] and built.net.head.in_features == 112
    cfg = image_config(digits_folder, model__name="efficientnet_lite0", model__pretrained=True, model__image_size=64,
                       model__feature_layer="stage5", train__epochs=3, optim__lr=0.003)
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    assert result.metrics["val_accuracy"] >= 0.75
