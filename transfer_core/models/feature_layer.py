"""model.feature_layer: a head that reads an inner layer group's output instead of the last one's.

The layer probe (probe.py) often finds that a middle group transfers better than the last one, on data
far from the pretraining data. Training "from layer X" keeps the groups up to X, pools X's output as the
probe did (global average of feature maps; the token pooling of model.pooling for a transformer) and puts
the head on it. The groups above X are removed: they cost no time or memory and are not exported.

Two forms, so that every export keeps working:
- a BERT-family text model keeps its own form with fewer encoder layers (config.num_hidden_layers = n):
  its pooling and head stay as they were and it still saves as a Hugging Face folder;
- any other net that can be probed becomes an InnerLayerNet: the kept body, read through its prefix, and a
  new head (HeadLinear or HeadMLP), exported through TorchScript and ONNX like every image model.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import ModelError
from .base import BuiltModel, ImagePreprocess, LayerGroup, TransferNet
from .grouping import groups_from_params
from .heads import Head, make_head, new_head, swap_module


class InnerLayerNet(TransferNet):
    """`body`'s groups below `cut`, pooled (body.pool_hidden), then `head`: forward = head_logits(features)."""
    supports_feature_split = True

    def __init__(self, body: TransferNet, cut: int, head: Head):
        super().__init__()
        self.body, self.cut, self.head = body, cut, head

    def features(self, *args, **batch) -> torch.Tensor:
        return self.body.pool_hidden(self.body.prefix(self.cut, *args, **batch))

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, *args, **batch) -> torch.Tensor:
        return self.head_logits(self.features(*args, **batch))


def read_from_layer(built: BuiltModel, name: str, head_dropout: float, head_hidden: int) -> BuiltModel:
    """`built` with its head on layer group `name` (the last group below the head, or "": unchanged)."""
    below = [g.name for g in built.groups[:-1]]
    if not name or name == below[-1]:
        return built
    if name not in below:
        raise ModelError(f"model.feature_layer '{name}' is not a layer group of {built.spec.name}; "
                         f"choose one of {', '.join(below)} (or leave it empty for the last)")
    if not built.net.can_probe(built.groups):
        raise ModelError(f"{built.spec.name} cannot put its head on an inner layer group; leave model.feature_layer empty")
    cut = below.index(name) + 1
    from .huggingface import HFClassifier, keep_encoder_layers
    if isinstance(built.net, HFClassifier):
        return dataclasses.replace(keep_encoder_layers(built, cut), feature_layer=name)
    return _wrap_inner(built, cut, name, head_dropout, head_hidden)


def _wrap_inner(built: BuiltModel, cut: int, name: str, head_dropout: float, head_hidden: int) -> BuiltModel:
    if not isinstance(built.preprocess, ImagePreprocess):
        raise ModelError(f"{built.spec.name} cannot put its head on an inner layer group; leave model.feature_layer empty")
    body = built.net
    width = _pooled_width(body, cut, built.preprocess.image_size)
    weight = next(body.parameters())
    head = make_head(width, len(built.classes), head_dropout, head_hidden).to(device=weight.device, dtype=weight.dtype)
    _prune(body, {n for g in built.groups[cut:] for n in g.param_names})
    net = InnerLayerNet(body, cut, head)
    below = [LayerGroup(g.name, [f"body.{n}" for n in g.param_names], []) for g in built.groups[:cut]]
    return dataclasses.replace(built, net=net, groups=groups_with_head(net, below, ["head"]), feature_layer=name)


@torch.no_grad()
def _pooled_width(body: TransferNet, cut: int, image_size: int) -> int:
    """The width of group cut-1's pooled output, from one blank image (eval mode: BatchNorm needs no batch)."""
    was_training = body.training
    param = next(body.parameters())
    body.eval()
    try:
        blank = torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype)
        return int(body.pool_hidden(body.prefix(cut, pixel_values=blank)).shape[-1])
    finally:
        body.train(was_training)


def _prune(root: nn.Module, dropped: set[str]) -> None:
    """Replace each topmost module whose parameters are all in `dropped` by nn.Identity: their weights are
    freed and leave the state dict. A dropped parameter that shares a module with a kept one cannot go."""
    chosen: list[str] = []
    for path, module in root.named_modules():
        if not path or any(path.startswith(c + ".") for c in chosen):
            continue
        names = {f"{path}.{n}" for n, _ in module.named_parameters()}
        if names and names <= dropped:
            chosen.append(path)
    for path in chosen:
        swap_module(root, path, nn.Identity())
    left = dropped & {n for n, _ in root.named_parameters()}
    if left:
        raise ModelError(f"the layers above the chosen model.feature_layer cannot be removed ({sorted(left)[0]}); "
                         "leave model.feature_layer empty")


def groups_with_head(net: nn.Module, below: list[LayerGroup], head_prefixes: list[str]) -> list[LayerGroup]:
    """`below` (their parameter names) kept as they are, every other parameter in "head"; module names are
    worked out again (parameter-free modules under `head_prefixes`, such as the head's dropout, join the head)."""
    taken = {n for g in below for n in g.param_names}
    head = [n for n, _ in net.named_parameters() if n not in taken]
    return groups_from_params(net, [(g.name, list(g.param_names)) for g in below] + [("head", head)],
                              explicit_modules={"head": head_prefixes})


def replace_inner_head(built: BuiltModel, classes: list[str], head_dropout: float, head_hidden: int) -> BuiltModel:
    """A new head for an InnerLayerNet (a run trained from an inner layer, used for other classes)."""
    net = built.net
    assert isinstance(net, InnerLayerNet)
    net.head = new_head(net.head, len(classes), head_dropout, head_hidden)
    below = [dataclasses.replace(g, module_names=[]) for g in built.groups[:-1]]
    return dataclasses.replace(built, classes=list(classes), groups=groups_with_head(net, below, ["head"]))
