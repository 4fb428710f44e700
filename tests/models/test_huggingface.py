"""Hugging Face folders and hub ids: loading by path, modality, labels, remote code refused, offline errors."""
from __future__ import annotations

import json

import pytest
import torch

from transfer_core.errors import ModelError
from transfer_core.models import build_model, get_spec

from modelchecks import assert_well_formed, forward, image_batch, state_of, text_batch


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny BERT saved with save_pretrained (weights, config, tokenizer), as a user would have."""
    torch.manual_seed(1)
    built = build_model("tiny_bert", ["neg", "pos"])
    folder = tmp_path_factory.mktemp("tiny_bert_hf")
    built.hf_model.save_pretrained(folder)
    built.preprocess.tokenizer.save_pretrained(folder)
    return folder, built


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    """A tiny ViT image classifier with its image processor (mean/std 0.5)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=3)
    folder = tmp_path_factory.mktemp("tiny_vit_hf")
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def test_local_text_folder_loads_its_weights(bert_folder):
    folder, original = bert_folder
    spec = get_spec(str(folder))
    assert spec.source == "local" and spec.modality == "text" and spec.offline
    built = build_model(str(folder), ["x", "y", "z"], max_length=16)
    assert_well_formed(built, 3)
    assert built.export_format == "hf"
    kept = state_of(original.net, skip="model.classifier.")
    loaded = built.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in kept.items())
    assert forward(built, text_batch(built)).shape == (2, 3)


def test_local_folder_keeps_a_head_for_the_same_labels(bert_folder):
    folder, original = bert_folder
    same = build_model(str(folder), ["neg", "pos"])
    assert torch.equal(same.hf_model.classifier.weight, original.hf_model.classifier.weight)
    relabelled = build_model(str(folder), ["pos", "neg"])   # same count, other meaning: a fresh head
    assert not torch.equal(relabelled.hf_model.classifier.weight, original.hf_model.classifier.weight)


def test_local_image_folder_uses_its_processor(vit_folder):
    spec = get_spec(str(vit_folder))
    assert spec.modality == "image" and spec.default_image_size == 32
    built = build_model(str(vit_folder), ["a", "b"], image_size=32)
    assert_well_formed(built, 2)
    assert built.preprocess.mean == (0.5, 0.5, 0.5) and built.preprocess.std == (0.5, 0.5, 0.5)
    assert [g.name for g in built.groups] == ["embeddings", "layer0", "layer1", "neck", "head"]
    assert forward(built, image_batch(2, 32)).shape == (2, 2)
    bigger = build_model(str(vit_folder), ["a", "b"], image_size=48)    # position embeddings interpolated
    assert forward(bigger, image_batch(1, 48)).shape == (1, 2)


def test_text_inputs_a_model_does_not_take_are_dropped(tmp_path):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification
    from transfer_core.models.offline import minilm_dir
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    config = DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    built = build_model(str(tmp_path), ["a", "b"], head_dropout=0.2)
    batch = text_batch(built)
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    assert forward(built, batch).shape == (2, 2)
    assert built.hf_model.config.seq_classif_dropout == 0.2
    assert [g.name for g in built.groups][-1] == "head"
    assert {"model.pre_classifier.weight", "model.classifier.weight"} <= set(built.groups[-1].param_names)


def test_remote_code_is_refused_and_never_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "evil_model",
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForSequenceClassification": "modeling_evil.EvilModel"}}))
    marker = tmp_path / "RAN"
    (tmp_path / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(ModelError, match="trust_remote_code"):
        build_model(str(tmp_path), ["a", "b"])
    assert not marker.exists()


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        get_spec(str(tmp_path))
    with pytest.raises(ModelError, match="does not exist"):
        get_spec(str(tmp_path / "missing"))


@pytest.mark.parametrize("name", ["bert-base-uncased", "someone/some-model"])
def test_hub_models_offline_name_the_offline_models(name):
    with pytest.raises(ModelError) as err:
        build_model(name, ["a", "b"], pretrained=False)
    assert "minilm_l6" in str(err.value) and "efficientnet_lite0" in str(err.value)
