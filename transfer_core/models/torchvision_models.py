"""The torchvision catalogue: ImageNet backbones whose weights download on first use."""
from __future__ import annotations

import os
from urllib.parse import urlparse

import torch

from ..errors import ModelError
from .base import BuiltModel, ImagePreprocess, ModelSpec
from .grouping import block_stages, chunk, groups_from_prefixes
from .heads import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PixelClassifier,
    module_step,
    replace_head_torch,
    replace_linear,
    silence_dropout,
)
from .network import OFFLINE_HINT, reachable

VIT_PATCH = 16


def _resnet_groups(net):
    spec = [("stem", ["model.conv1", "model.bn1"])]
    spec += [(f"layer{i}", [f"model.layer{i}"]) for i in range(1, 5)]
    return groups_from_prefixes(net, spec + [("head", ["model.fc"])])


def _mobilenet_groups(net, max_block_groups: int = 6):
    """mobilenet: stem = features[0], blocks in chunks, head_conv = features[-1], head = classifier."""
    n = len(net.model.features)
    blocks = block_stages([f"model.features.{i}" for i in range(1, n - 1)], max_block_groups, "block")
    spec = [("stem", ["model.features.0"])] + blocks
    return groups_from_prefixes(net, spec + [("head_conv", [f"model.features.{n - 1}"]), ("head", ["model.classifier"])])


def _efficientnet_groups(net):
    """stem, the 7 MBConv stages (features[1..7]), head_conv, head."""
    n = len(net.model.features)
    spec = [("stem", ["model.features.0"])] + [(f"stage{i}", [f"model.features.{i}"]) for i in range(1, n - 1)]
    return groups_from_prefixes(net, spec + [("head_conv", [f"model.features.{n - 1}"]), ("head", ["model.classifier"])])


def _convnext_groups(net):
    # features: stem, stage1, (downsample, stage) x 3; a downsample joins the stage it feeds.
    spec = [("stem", ["model.features.0"]), ("stage1", ["model.features.1"])]
    spec += [(f"stage{k}", [f"model.features.{2 * k - 2}", f"model.features.{2 * k - 1}"]) for k in range(2, 5)]
    return groups_from_prefixes(net, spec + [("head", ["model.classifier"])])


def _vit_groups(net):
    spec = [("embeddings", ["model.conv_proj", "model.class_token", "model.encoder.pos_embedding"])]
    for part in chunk(list(range(len(net.model.encoder.layers))), 6):
        name = f"layer{part[0]}" if len(part) == 1 else f"layers{part[0]}-{part[-1]}"
        spec.append((name, [f"model.encoder.layers.encoder_layer_{i}" for i in part]))
    return groups_from_prefixes(net, spec + [("final_norm", ["model.encoder.ln"]), ("head", ["model.heads"])])


# ---- head/feature splits: (features(model, x), head(model, features)), mirroring each family's forward.
# `features` stops where the "head" group starts; `head` is that group's computation.

def _resnet_features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def _pooled_features(m, x):
    """mobilenet_v3, efficientnet, convnext: features -> avgpool -> (N, C)."""
    return torch.flatten(m.avgpool(m.features(x)), 1)


def _vit_features(m, x):
    x = m._process_input(x)
    x = torch.cat([m.class_token.expand(x.shape[0], -1, -1), x], dim=1)
    return m.encoder(x)[:, 0]       # the class token after the final LayerNorm (encoder.ln)


def _fc_head(m, f):
    return m.fc(f)


def _classifier_head(m, f):
    return m.classifier(f)


def _convnext_head(m, f):
    # The classifier starts with a LayerNorm2d over (N, C, 1, 1); the pooled map is cached flat as (N, C).
    return m.classifier(f[:, :, None, None])


def _vit_head(m, f):
    return m.heads(f)


# ---- finer cuts (frozen-prefix cache): the forward below the head as a sequence of module steps,
# then the pooling; `features` is exactly pool(steps applied in order). ViT has none (class token, no plain sequence).

def _resnet_steps(m):
    return [module_step(p) for p in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")]


def _features_steps(m):
    """mobilenet_v3, efficientnet, convnext: the entries of `features` in order."""
    return [module_step(f"features.{i}") for i in range(len(m.features))]


def _pool(m, x):
    return torch.flatten(m.avgpool(x), 1)


STEPS = {"resnet18": _resnet_steps, "resnet50": _resnet_steps, "mobilenet_v3_small": _features_steps,
         "mobilenet_v3_large": _features_steps, "efficientnet_b0": _features_steps, "convnext_tiny": _features_steps}


# name: (description, parameters, head path inside the torchvision model, pre-head dropouts, groups, split)
FAMILIES = {
    "resnet18": ("ResNet-18 (ImageNet-1k).", 11_689_512, "fc", [], _resnet_groups, (_resnet_features, _fc_head)),
    "resnet50": ("ResNet-50 (ImageNet-1k).", 25_557_032, "fc", [], _resnet_groups, (_resnet_features, _fc_head)),
    "mobilenet_v3_small": ("MobileNetV3-Small (ImageNet-1k, very fast).", 2_542_856, "classifier.3", ["classifier.2"],
                           _mobilenet_groups, (_pooled_features, _classifier_head)),
    "mobilenet_v3_large": ("MobileNetV3-Large (ImageNet-1k, fast).", 5_483_032, "classifier.3", ["classifier.2"],
                           _mobilenet_groups, (_pooled_features, _classifier_head)),
    "efficientnet_b0": ("EfficientNet-B0 (ImageNet-1k).", 5_288_548, "classifier.1", ["classifier.0"],
                        _efficientnet_groups, (_pooled_features, _classifier_head)),
    "convnext_tiny": ("ConvNeXt-Tiny (ImageNet-1k, accurate).", 28_589_128, "classifier.2", [],
                      _convnext_groups, (_pooled_features, _convnext_head)),
    "vit_b_16": ("ViT-B/16 (ImageNet-1k; image size a multiple of 16, 224 native).", 86_567_656, "heads.head", [],
                 _vit_groups, (_vit_features, _vit_head)),
}


def _weights(name: str):
    import torchvision
    return torchvision.models.get_model_weights(name).DEFAULT


def _download_state(name: str) -> dict:
    """The DEFAULT weights from the torch hub cache, downloading them when missing."""
    weights = _weights(name)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
    failed = ModelError(f"could not download weights for {name} (no network?); {OFFLINE_HINT}")
    # urllib waits forever on a silent network; one quick probe turns that into the error above.
    if not os.path.exists(cached) and not reachable(urlparse(weights.url).hostname or ""):
        raise failed
    try:
        # weights_only: the file is unpickled with torch's safe loader (tensors only, never code).
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as exc:    # any download or cache failure (URLError, hash mismatch, truncated file)
        raise failed from exc


def _check_vit_size(name: str, image_size: int) -> None:
    if image_size % VIT_PATCH:
        raise ModelError(f"model.image_size {image_size} must be a multiple of {VIT_PATCH} for {name}; "
                         f"set model.image_size to 224 (or e.g. 160, 384)")


def build_torchvision(spec: ModelSpec, classes: list[str], *, pretrained: bool, head_dropout: float, head_hidden: int,
                      image_size: int, max_length: int) -> BuiltModel:
    import torchvision
    name = spec.name
    _, _, head_path, dropouts, groups, (features_fn, head_fn) = FAMILIES[name]
    kwargs = {}
    if name.startswith("vit"):
        _check_vit_size(name, image_size)
        kwargs["image_size"] = image_size
    state = _download_state(name) if pretrained else None
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if state is not None:
        if name.startswith("vit") and image_size != 224:
            state = vit_resize_state(state, image_size)
        model.load_state_dict(state)
    silence_dropout(model, dropouts)
    replace_linear(model, head_path, len(classes), head_dropout, head_hidden)
    steps = STEPS[name](model) if name in STEPS else None
    # A ViT's last encoder block reads its tokens through ln_1 (TransferNet.token_layer).
    token_path = f"encoder.layers.encoder_layer_{len(model.encoder.layers) - 1}.ln_1" if name.startswith("vit") else None
    net = PixelClassifier(model, features_fn, head_fn, steps=steps, pool_fn=_pool, token_path=token_path)
    built = BuiltModel(spec=spec, net=net, groups=groups(net), classes=list(classes),
                       preprocess=ImagePreprocess(image_size, IMAGENET_MEAN, IMAGENET_STD), export_format="torch")
    net.set_prefix_cuts(built.groups)
    return built


def specs() -> list[ModelSpec]:
    out = []
    for name, (desc, n_params, head_path, _, groups, _) in FAMILIES.items():
        out.append(ModelSpec(
            name=name, modality="image", source="torchvision", offline=False,
            description=f"{desc} {n_params / 1e6:.1f} M parameters; weights download from pytorch.org on first use.",
            num_params=n_params, builder=build_torchvision,
            replace_head=replace_head_torch, head_path=f"model.{head_path}", groups_of=groups))
    return out


def vit_resize_state(state: dict, image_size: int) -> dict:
    """Position embeddings of a 224 px ViT state dict interpolated to `image_size`."""
    from torchvision.models.vision_transformer import interpolate_embeddings
    return interpolate_embeddings(image_size, VIT_PATCH, state)
