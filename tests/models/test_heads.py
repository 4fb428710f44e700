"""replace_head: a new random head for new classes; everything below it untouched."""
from __future__ import annotations

import torch

from transfer_core.models import build_model, replace_head

from modelchecks import assert_well_formed, forward, image_batch, state_of, text_batch


def _backbone_kept(before: dict, after: dict, head_prefix: str) -> None:
    for key, value in before.items():
        if not key.startswith(head_prefix):
            assert torch.equal(after[key], value), key


def test_replace_head_lite0(lite0):
    built = build_model("efficientnet_lite0", ["a", "b", "c"], image_size=32)
    before = state_of(built.net)
    new = replace_head(built, ["x", "y", "z", "w", "v"], head_dropout=0.2)
    assert new.classes == ["x", "y", "z", "w", "v"]
    assert_well_formed(new, 5)
    _backbone_kept(before, new.net.state_dict(), "model._fc.")
    assert new.net.model._fc.dropout == 0.2
    assert forward(new, image_batch(2, 32)).shape == (2, 5)


def test_replace_head_same_size_is_fresh():
    built = build_model("tiny_cnn", ["a", "b"], image_size=32)
    old = built.net.head.weight.detach().clone()
    new = replace_head(built, ["c", "d"])
    assert not torch.equal(new.net.head.weight, old)


def test_replace_head_hf_updates_config_and_keeps_encoder():
    built = build_model("tiny_bert", ["a", "b"])
    before = state_of(built.net)
    new = replace_head(built, ["p", "q", "r"], head_dropout=0.1)
    assert_well_formed(new, 3)
    assert new.hf_model.config.id2label == {0: "p", 1: "q", 2: "r"}
    assert new.hf_model.config.label2id == {"p": 0, "q": 1, "r": 2}
    assert new.hf_model.num_labels == 3 and new.hf_model.dropout.p == 0.1
    _backbone_kept(before, new.net.state_dict(), "model.classifier.")
    assert forward(new, text_batch(new)).shape == (2, 3)


def test_replace_head_torchvision():
    built = build_model("mobilenet_v3_small", ["a", "b"], pretrained=False, image_size=32)
    before = state_of(built.net)
    new = replace_head(built, ["a", "b", "c"])
    _backbone_kept(before, new.net.state_dict(), "model.classifier.3.")
    assert new.net.model.classifier[3].out_features == 3
    assert forward(new, image_batch(1, 32)).shape == (1, 3)
