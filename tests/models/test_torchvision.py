"""The torchvision catalogue offline: a clear error instead of a download, ViT size handling, heads."""
from __future__ import annotations

import time

import pytest
import torch

from transfer_core.errors import ModelError
from transfer_core.models import build_model
from transfer_core.models.torchvision_models import vit_resize_state

from modelchecks import forward, image_batch


def test_pretrained_without_network_names_the_offline_models():
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        build_model("resnet18", ["a", "b"], pretrained=True)
    msg = str(err.value)
    assert msg.startswith("could not download weights for resnet18")
    assert "efficientnet_lite0" in msg and "minilm_l6" in msg and "\n" not in msg
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("size", [100, 225])
def test_vit_image_size_must_fit_its_patches(size):
    with pytest.raises(ModelError, match="model.image_size"):
        build_model("vit_b_16", ["a", "b"], pretrained=False, image_size=size)


def test_vit_weights_move_to_another_size():
    """Pretrained 224 px ViT weights are resized by interpolating the position embeddings (small ViT, same code)."""
    from torchvision.models.vision_transformer import VisionTransformer
    small = dict(patch_size=16, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=2)
    at_224 = VisionTransformer(image_size=224, **small)
    at_112 = VisionTransformer(image_size=112, **small)
    at_112.load_state_dict(vit_resize_state(at_224.state_dict(), 112))
    assert at_112.encoder.pos_embedding.shape == (1, 1 + 7 * 7, 32)
    assert at_112(torch.randn(1, 3, 112, 112)).shape == (1, 2)


def test_family_dropout_is_replaced_by_head_dropout():
    built = build_model("mobilenet_v3_small", ["a", "b"], pretrained=False, head_dropout=0.3, image_size=32)
    assert built.net.model.classifier[2].p == 0.0
    assert built.net.model.classifier[3].dropout == 0.3
    assert set(built.net.model.classifier[3].state_dict()) == {"weight", "bias"}


def test_resnet_groups():
    built = build_model("resnet18", ["a", "b", "c", "d"], pretrained=False, image_size=32)
    assert [g.name for g in built.groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert built.groups[-1].param_names == ["model.fc.weight", "model.fc.bias"]
    assert built.net.model.fc.weight.shape == (4, 512)
    assert "model.bn1" in built.groups[0].module_names
    assert torch.isfinite(forward(built, image_batch(2, 32))).all()
