"""The offline models load their real pretrained weights, quietly, with no network."""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from transfer_core.models import build_model
from transfer_core.models.offline import lite0_weights_path, minilm_dir

from modelchecks import forward, image_batch, text_batch


def test_lite0_loads_the_installed_weights(lite0):
    raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    net = lite0.net.model
    for key in ["_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_conv_head.weight", "_bn1.running_var"]:
        assert torch.equal(net.state_dict()[key], raw[key]), key
    assert net._fc.weight.shape == (3, 1280)


def test_lite0_random_init_differs_from_pretrained(lite0):
    fresh = build_model("efficientnet_lite0", ["a", "b"], pretrained=False, image_size=64)
    assert not torch.equal(fresh.net.model._conv_stem.weight, lite0.net.model._conv_stem.weight)


def test_lite0_prints_nothing(capfd):
    built = build_model("efficientnet_lite0", ["a", "b"], image_size=32)
    forward(built, image_batch(1, 32))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_lite0_features_are_pretrained(lite0):
    """ImageNet features separate a smooth image from noise far better than at random init."""
    smooth = torch.linspace(-1, 1, 64).repeat(3, 64, 1).unsqueeze(0)
    noise = torch.rand(1, 3, 64, 64) * 2 - 1
    body = lite0.net.model.eval()
    with torch.no_grad():
        a, b = body.extract_features(smooth).mean((2, 3)), body.extract_features(noise).mean((2, 3))
    assert torch.isfinite(a).all() and not torch.allclose(a, b, atol=1e-3)


def test_minilm_loads_the_installed_weights(minilm):
    raw = load_file(str(minilm_dir() / "model.safetensors"))
    state = minilm.hf_model.state_dict()
    key = next(k for k in raw if k.endswith("encoder.layer.3.attention.self.query.weight"))
    ours = next(k for k in state if k.endswith("encoder.layer.3.attention.self.query.weight"))
    assert torch.equal(state[ours], raw[key])
    assert any(k.endswith("pooler.dense.weight") for k in raw)    # loaded, then set to the identity (below)


def test_minilm_pooler_trains_with_the_head(minilm):
    head = minilm.groups[-1]
    assert any("pooler" in n for n in head.param_names) and any("classifier" in n for n in head.param_names)


def test_minilm_pooler_starts_as_identity_on_the_mean_of_its_tokens(minilm):
    """A sentence-transformers checkpoint trained through mean pooling: the head starts from tanh(mean of tokens)."""
    from transfer_core.models.huggingface import sentence_pooling
    assert sentence_pooling(str(minilm_dir())) == "mean"
    dense = minilm.hf_model.bert.pooler.dense
    assert torch.equal(dense.weight, torch.eye(384)) and torch.equal(dense.bias, torch.zeros(384))
    assert "model.bert.pooler.dense.weight" in minilm.groups[-1].param_names
    batch = text_batch(minilm)
    minilm.net.eval()
    with torch.no_grad():
        hidden = minilm.hf_model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        assert torch.allclose(minilm.hf_model.bert.pooler(minilm.net.features(**batch)), torch.tanh(mean), atol=1e-6)
    random = build_model("minilm_l6", ["a", "b"], pretrained=False)
    assert not torch.equal(random.hf_model.bert.pooler.dense.weight, torch.eye(384))


def test_plain_bert_folder_keeps_its_pooler(tmp_path):
    """No modules.json: an ordinary (or fine-tuned and exported) checkpoint keeps its trained pooler."""
    torch.manual_seed(3)
    tiny = build_model("tiny_bert", ["a", "b"])
    tiny.hf_model.save_pretrained(tmp_path)
    tiny.preprocess.tokenizer.save_pretrained(tmp_path)
    loaded = build_model(str(tmp_path), ["a", "b"])
    assert torch.equal(loaded.hf_model.bert.pooler.dense.weight, tiny.hf_model.bert.pooler.dense.weight)
    assert loaded.net.pooling == "pooler"
    # A sentence-transformers folder: modules.json names a Pooling module whose config says how it pooled.
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling").mkdir()
    for mode, pooling in (("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean")):
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, mode: True}))
        as_st = build_model(str(tmp_path), ["a", "b"])
        assert as_st.net.pooling == pooling
        assert torch.equal(as_st.hf_model.bert.pooler.dense.weight, torch.eye(32))
    chosen = build_model(str(tmp_path), ["a", "b"], pooling="pooler")     # the user's choice wins
    assert torch.equal(chosen.hf_model.bert.pooler.dense.weight, tiny.hf_model.bert.pooler.dense.weight)


def test_minilm_labels_and_tokenizer(minilm):
    assert minilm.hf_model.config.id2label == {0: "neg", 1: "pos"}
    assert minilm.preprocess.max_length == 32
    batch = text_batch(minilm)
    assert set(batch) >= {"input_ids", "attention_mask"}
    assert forward(minilm, batch).shape == (2, 2)


def test_minilm_head_dropout_goes_to_the_config():
    built = build_model("minilm_l6", ["a", "b"], head_dropout=0.25, pretrained=False)
    assert built.hf_model.config.classifier_dropout == 0.25
    assert built.hf_model.dropout.p == 0.25
