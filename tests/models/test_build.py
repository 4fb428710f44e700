"""Every catalogue model builds, runs a tiny batch to (N, K) logits, and has well-formed layer groups."""
from __future__ import annotations

import pytest
import torch

from transfer_core.models import build_model, list_specs

from modelchecks import assert_well_formed, forward, image_batch, text_batch

CLASSES = ["ant", "bee", "cat"]
TORCHVISION = [s.name for s in list_specs() if s.source == "torchvision"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models_build_random(name):
    size = 64     # a ViT takes any multiple of its patch size (its position embeddings are built for it)
    built = build_model(name, CLASSES, pretrained=False, image_size=size)
    assert_well_formed(built, len(CLASSES))
    assert built.export_format == "torch" and built.modality == "image"
    assert built.preprocess.image_size == size and built.preprocess.mean == (0.485, 0.456, 0.406)
    assert forward(built, image_batch(1, size)).shape == (1, 3)


def test_lite0_builds(lite0):
    assert_well_formed(lite0, 3)
    assert lite0.preprocess.mean == (0.5, 0.5, 0.5) and lite0.preprocess.std == (0.5, 0.5, 0.5)
    assert forward(lite0, image_batch(2, 64)).shape == (2, 3)


def test_lite0_groups_follow_its_stages(lite0):
    names = [g.name for g in lite0.groups]
    assert names == ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head_conv", "head"]
    blocks = [sum(1 for m in g.module_names if m.count(".") == 2 and m.startswith("model._blocks.")) for g in lite0.groups[1:8]]
    assert blocks == [1, 2, 2, 3, 3, 4, 1]


def test_minilm_builds(minilm):
    assert_well_formed(minilm, 2)
    assert minilm.export_format == "hf" and minilm.hf_model is minilm.net.model
    assert [g.name for g in minilm.groups] == ["embeddings"] + [f"layer{i}" for i in range(6)] + ["head"]
    assert forward(minilm, text_batch(minilm)).shape == (2, 2)


def test_tiny_models_build():
    cnn = build_model("tiny_cnn", CLASSES, image_size=32)
    assert_well_formed(cnn, 3)
    assert forward(cnn, image_batch(4, 32)).shape == (4, 3)
    bert = build_model("tiny_bert", CLASSES, max_length=16)
    assert_well_formed(bert, 3)
    assert bert.export_format == "hf" and bert.hf_model.config.id2label == {0: "ant", 1: "bee", 2: "cat"}
    assert forward(bert, text_batch(bert)).shape == (2, 3)


def test_net_output_is_a_tensor_in_train_mode_too():
    built = build_model("tiny_bert", CLASSES)
    built.net.train()
    out = built.net(**text_batch(built))
    assert isinstance(out, torch.Tensor) and out.requires_grad


def test_head_dropout_applies_only_in_training():
    built = build_model("tiny_cnn", CLASSES, head_dropout=0.5, image_size=32)
    batch = image_batch(8, 32)
    built.net.eval()
    with torch.no_grad():
        assert torch.equal(built.net(**batch), built.net(**batch))
    built.net.train()
    torch.manual_seed(0)
    with torch.no_grad():
        a = built.net(**batch)
        b = built.net(**batch)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("bad", [[], ["a", "a"]])
def test_bad_class_lists(bad):
    from transfer_core.errors import ModelError
    with pytest.raises(ModelError):
        build_model("tiny_cnn", bad)
