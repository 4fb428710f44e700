"""net.features / net.head_logits on every wrapper: forward is head_logits(features), exactly.

A trainer caches `features` of a frozen backbone and trains `head_logits` on
them; these tests pin that the two paths agree, that the split follows the
"head" group, and that Hugging Face models still give their own logits (so a
save_pretrained export predicts the same).
"""
from __future__ import annotations

import pytest
import torch

from transfer_core.models import build_model, list_specs, replace_head

from modelchecks import assert_feature_split, assert_well_formed, image_batch, text_batch

TORCHVISION = [s.name for s in list_specs() if s.source == "torchvision"]


def _hf_logits(built, batch: dict) -> torch.Tensor:
    """The transformers model's own logits for the batch (inputs it does not take dropped)."""
    net = built.net
    kwargs = {k: v for k, v in batch.items() if k in net.accepted}
    if net.interpolate_pos_encoding:
        kwargs["interpolate_pos_encoding"] = True
    built.hf_model.eval()
    with torch.no_grad():
        return built.hf_model(**kwargs).logits


# ---- plain PyTorch image models -------------------------------------------

@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_split(name):
    torch.manual_seed(0)
    built = build_model(name, ["a", "b", "c"], pretrained=False, image_size=64, head_dropout=0.3)
    batch = image_batch(2, 64)
    built.net.eval()
    with torch.no_grad():
        reference = built.net.model(batch["pixel_values"])     # torchvision's own forward
    feats = assert_feature_split(built, batch, reference)
    assert feats.dim() == 2     # the pooled vector (or ViT's class token), never a feature map


def test_lite0_split(lite0):
    batch = image_batch(2, 64)
    lite0.net.eval()
    with torch.no_grad():
        reference = lite0.net.model(batch["pixel_values"])      # the package's own forward
    feats = assert_feature_split(lite0, batch, reference)
    assert feats.shape == (2, 1280)


def test_tiny_cnn_split():
    built = build_model("tiny_cnn", ["a", "b", "c"], image_size=32, head_dropout=0.5)
    assert assert_feature_split(built, image_batch(4, 32)).shape == (4, 32)


def test_split_follows_replace_head():
    for name, head in [("tiny_cnn", "head"), ("mobilenet_v3_small", "model.classifier.3")]:
        built = build_model(name, ["a", "b"], pretrained=False, image_size=32)
        new = replace_head(built, ["x", "y", "z"], head_dropout=0.2)
        batch = image_batch(2, 32)
        new.net.eval()
        with torch.no_grad():
            assert new.net.head_logits(new.net.features(**batch)).shape == (2, 3)
        assert_feature_split(new, batch)
        assert new.net.get_submodule(head).out_features == 3


# ---- Hugging Face text models ----------------------------------------------

def test_minilm_split_reads_the_mean_of_its_tokens(minilm):
    # all-MiniLM-L6-v2 was trained through mean pooling (its 1_Pooling/config.json): auto means mean.
    assert minilm.net.pooling == "mean" and minilm.preprocess.pooling == "mean"
    batch = text_batch(minilm)
    model = minilm.hf_model.eval()
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        reference = model.classifier(model.dropout(model.bert.pooler(mean.unsqueeze(1))))
    feats = assert_feature_split(minilm, batch, reference)
    assert feats.shape == (2, 1, 384)       # one pooled vector per text, not the whole sequence


def test_minilm_mean_features_are_sentence_transformers_embeddings():
    # The independent reference: sentence-transformers' own encoder for the same folder.
    from sentence_transformers import SentenceTransformer
    from transfer_core.models.offline import minilm_dir
    texts = ["The striker scored twice in the second half as the home side won the league title on Saturday.",
             "Shares fell after the bank cut its outlook.", "ok"]
    # Its pipeline ends in a Normalize module: embeddings have unit length.
    reference = torch.tensor(SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts))
    built = build_model("minilm_l6", ["a", "b"], max_length=128)
    built.net.eval()
    with torch.no_grad():
        feats = built.net.features(**text_batch(built, texts))[:, 0]
    torch.testing.assert_close(torch.nn.functional.normalize(feats, dim=-1), reference, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pooling", ["cls", "pooler"])
def test_minilm_first_token_poolings_are_the_transformers_classifier(pooling):
    # cls and pooler read the first token through BERT's pooler, exactly as BertForSequenceClassification;
    # cls starts that pooler at the identity, pooler keeps the checkpoint's.
    torch.manual_seed(0)
    built = build_model("minilm_l6", ["neg", "pos"], max_length=32, pooling=pooling)
    batch = text_batch(built)
    assert_feature_split(built, batch, _hf_logits(built, batch))
    dense = built.hf_model.bert.pooler.dense.weight
    assert torch.equal(dense, torch.eye(384)) == (pooling == "cls")


def test_tiny_bert_split_and_replace_head():
    built = build_model("tiny_bert", ["a", "b"], head_dropout=0.3, max_length=16)
    batch = text_batch(built)
    assert_feature_split(built, batch, _hf_logits(built, batch))
    new = replace_head(built, ["p", "q", "r"], head_dropout=0.1)
    assert_feature_split(new, batch, _hf_logits(new, batch))


def _tokenizer():
    from transformers import AutoTokenizer
    from transfer_core.models.offline import minilm_dir
    return AutoTokenizer.from_pretrained(minilm_dir())


def _text_model(kind: str, vocab: int):
    import transformers as tf
    small = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 num_labels=2)
    if kind == "distilbert":
        return tf.DistilBertForSequenceClassification(tf.DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2,
                                                                          hidden_dim=64, num_labels=2))
    configs = {
        "bert": (tf.BertConfig, tf.BertForSequenceClassification),
        "roberta": (tf.RobertaConfig, tf.RobertaForSequenceClassification),
        "xlm-roberta": (tf.XLMRobertaConfig, tf.XLMRobertaForSequenceClassification),
        "camembert": (tf.CamembertConfig, tf.CamembertForSequenceClassification),
        "roberta-prelayernorm": (tf.RobertaPreLayerNormConfig, tf.RobertaPreLayerNormForSequenceClassification),
        "data2vec-text": (tf.Data2VecTextConfig, tf.Data2VecTextForSequenceClassification),
        "xlm-roberta-xl": (tf.XLMRobertaXLConfig, tf.XLMRobertaXLForSequenceClassification),
    }
    config_cls, model_cls = configs[kind]
    return model_cls(config_cls(**small))


TEXT_FAMILIES = ["bert", "distilbert", "roberta", "xlm-roberta", "camembert", "roberta-prelayernorm",
                 "data2vec-text", "xlm-roberta-xl"]


@pytest.mark.parametrize("kind", TEXT_FAMILIES)
@pytest.mark.parametrize("head_dropout", [0.0, 0.3])
def test_hf_text_family_split(kind, head_dropout, tmp_path):
    """Each family's head, re-done by hand, gives the transformers forward's logits; exports agree too."""
    from transformers import AutoModelForSequenceClassification
    torch.manual_seed(0)
    tok = _tokenizer()
    _text_model(kind, tok.vocab_size).save_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "src")
    built = build_model(str(tmp_path / "src"), ["a", "b", "c"], head_dropout=head_dropout, max_length=16)
    assert built.net.split == type(built.hf_model).__name__
    batch = text_batch(built)
    feats = assert_feature_split(built, batch, _hf_logits(built, batch))
    assert feats.shape == (2, 1, 32)
    # A save_pretrained export, loaded by transformers alone, predicts what the net predicts.
    built.hf_model.save_pretrained(tmp_path / "export")
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "export").eval()
    kwargs = {k: v for k, v in batch.items() if k in built.net.accepted}
    with torch.no_grad():
        assert torch.allclose(exported(**kwargs).logits, built.net(**batch), atol=1e-5)


# ---- Hugging Face image models ---------------------------------------------

def _vit_folder(folder, cls_name: str):
    import transformers as tf
    config_cls = {"ViTForImageClassification": tf.ViTConfig, "DeiTForImageClassification": tf.DeiTConfig}[cls_name]
    config = config_cls(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    getattr(tf, cls_name)(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("cls_name", ["ViTForImageClassification", "DeiTForImageClassification"])
@pytest.mark.parametrize("size", [32, 48])
def test_hf_vit_split(cls_name, size, tmp_path):
    torch.manual_seed(0)
    folder = _vit_folder(tmp_path, cls_name)
    built = build_model(str(folder), ["a", "b"], image_size=size, head_dropout=0.2)
    assert built.net.split == cls_name and built.net.interpolate_pos_encoding == (size != 32)
    batch = image_batch(2, size)
    feats = assert_feature_split(built, batch, _hf_logits(built, batch))
    assert feats.shape == (2, 32)       # the class token after the final LayerNorm


def test_other_hf_image_model_gets_the_generic_split(tmp_path):
    """A single Linear on a pooled vector (ConvNeXt): features = that Linear's input, checked by a probe."""
    from transformers import ConvNextConfig, ConvNextForImageClassification
    from transfer_core.models.huggingface import LINEAR_INPUT
    torch.manual_seed(0)
    config = ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32, num_labels=2)
    ConvNextForImageClassification(config).save_pretrained(tmp_path)
    built = build_model(str(tmp_path), ["a", "b", "c"], image_size=32, head_dropout=0.25)
    assert built.net.split == LINEAR_INPUT
    batch = image_batch(2, 32)
    feats = assert_feature_split(built, batch, _hf_logits(built, batch))
    assert feats.shape == (2, 16)


def test_unsplittable_hf_model_keeps_its_own_forward(tmp_path):
    """GPT-2 pools its logits after the Linear (last token): no safe split, so the flag is off."""
    from transformers import GPT2Config, GPT2ForSequenceClassification
    torch.manual_seed(0)
    tok = _tokenizer()
    config = GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=64, num_labels=2,
                        pad_token_id=tok.pad_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    built = build_model(str(tmp_path), ["a", "b"], max_length=16)
    assert built.net.supports_feature_split is False
    batch = text_batch(built)
    built.net.eval()
    with torch.no_grad():
        assert torch.equal(built.net(**batch), _hf_logits(built, batch))
    with pytest.raises(NotImplementedError):
        built.net.features(**batch)


# ---- runs ------------------------------------------------------------------

@pytest.mark.parametrize("name,batch_of", [("tiny_cnn", lambda b: image_batch(2, 32)), ("tiny_bert", text_batch)])
def test_run_models_split(name, batch_of, tmp_path):
    from test_runs import save_run
    trained = build_model(name, ["a", "b"], image_size=32, max_length=16)
    save_run(tmp_path, "r1", trained, base_name=name)
    same = build_model("run:r1", ["a", "b"], runs_dir=tmp_path)
    batch = batch_of(same)
    trained.net.eval()
    with torch.no_grad():
        reference = trained.net(**batch)
    assert_feature_split(same, batch, reference)
    new = build_model("run:r1", ["x", "y", "z"], runs_dir=tmp_path)
    assert_feature_split(new, batch_of(new))


def test_every_catalogue_model_answers_the_typed_interface():
    from transfer_core.models.base import TransferNet
    for spec in list_specs():
        assert spec.replace_head is not None, spec.name
        if spec.modality == "image" and spec.source != "huggingface":
            assert spec.head_path and spec.groups_of is not None, spec.name   # what replace_head_torch reads
    for name in ("tiny_cnn", "tiny_bert", "efficientnet_lite0", "minilm_l6"):
        built = build_model(name, ["a", "b"], pretrained=False)
        assert isinstance(built.net, TransferNet) and built.net.supports_feature_split, name
        assert built.groups[-1].name == "head", name
        again = replace_head(built, ["x", "y", "z"])
        assert isinstance(again.net, TransferNet) and again.classes == ["x", "y", "z"], name


# ---- heads with a hidden layer (model.head_hidden) --------------------------

def _hidden_head_source(family: str, folder) -> tuple[str, dict]:
    """(model name, build keywords) of a small model of `family`; Hugging Face ones saved to `folder`."""
    if family in ("distilbert", "roberta"):
        tok = _tokenizer()
        _text_model(family, tok.vocab_size).save_pretrained(folder)
        tok.save_pretrained(folder)
        return str(folder), {"max_length": 16}
    if family == "vit":
        return str(_vit_folder(folder, "ViTForImageClassification")), {"image_size": 32}
    if family == "tiny_bert":
        return family, {"max_length": 16}
    return family, {"image_size": 64 if family in TORCHVISION else 32}


@pytest.mark.parametrize("family", [*TORCHVISION, "efficientnet_lite0", "tiny_cnn", "tiny_bert", "distilbert",
                                    "roberta", "vit"])
def test_a_hidden_head_is_the_head_group_and_keeps_the_split(family, tmp_path):
    from transfer_core.models.heads import HeadLinear, HeadMLP
    from transfer_core.models.huggingface import HIDDEN_HEAD
    torch.manual_seed(0)
    name, kwargs = _hidden_head_source(family, tmp_path)
    built = build_model(name, ["a", "b", "c"], pretrained=False, head_hidden=8, head_dropout=0.3, **kwargs)
    assert_well_formed(built, 3)
    (path, head), = [(n, m) for n, m in built.net.named_modules() if isinstance(m, HeadMLP)]
    assert (head.hidden_features, head.out_features) == (8, 3)
    assert {f"{path}.{n}" for n, _ in head.named_parameters()} <= set(built.groups[-1].param_names)
    batch = image_batch(2, kwargs["image_size"]) if "image_size" in kwargs else text_batch(built)
    assert_feature_split(built, batch)
    # Back to a linear head (a run:<id> start with model.head_hidden 0).
    linear = replace_head(built, ["x", "y"], head_dropout=0.1)
    assert not any(isinstance(m, HeadMLP) for m in linear.net.modules())
    assert any(isinstance(m, HeadLinear) and m.in_features == head.in_features for m in linear.net.modules())
    assert linear.hf_model is None or not hasattr(linear.hf_model.config, HIDDEN_HEAD)
    assert_feature_split(linear, batch)
