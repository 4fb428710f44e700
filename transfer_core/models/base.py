"""What every model in the registry provides: a spec (what it is) and a built model (what trains)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import nn

Source = Literal["offline", "torchvision", "huggingface", "local", "run", "test"]


@dataclass(frozen=True)
class ImagePreprocess:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"kind": "image", "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class TextPreprocess:
    tokenizer: Any          # a transformers tokenizer (fast where available)
    max_length: int
    # How the token states become the one vector the head reads (see huggingface.POOLINGS). Part of
    # what a sample's features are: the feature cache's key and the export bundle carry it.
    pooling: str = "cls"

    def to_dict(self) -> dict:
        return {"kind": "text", "max_length": self.max_length, "tokenizer": type(self.tokenizer).__name__,
                "pooling": self.pooling}


@dataclass
class LayerGroup:
    """A named, ordered slice of the network that is frozen or trained as one."""
    name: str
    param_names: list[str]          # names as in net.named_parameters()
    module_names: list[str]         # names as in net.named_modules() (for BatchNorm handling)
    num_params: int = 0


@dataclass
class BuiltModel:
    """A network ready to fine-tune for `classes`.

    `net(**batch)` returns logits of shape (N, len(classes)). Image batches are
    {"pixel_values": float tensor (N, 3, H, W)}; text batches are
    {"input_ids": ..., "attention_mask": ...} (plus token_type_ids when the tokenizer gives them).
    `groups` run from the input to the head; the last group is always named "head".

    Where `net.supports_feature_split` is True (every catalogue family, and Hugging
    Face architectures whose head is known or provably a single Linear),
    `net.features(**batch)` is everything below the head group (e.g. the pooled
    (N, C) vector, or the first token (N, 1, H) of a text model) and
    `net.head_logits(features)` is the head group alone, its dropout included;
    `net(**batch)` is computed as `net.head_logits(net.features(**batch))`.
    """
    spec: "ModelSpec"
    net: nn.Module
    groups: list[LayerGroup]
    classes: list[str]
    preprocess: ImagePreprocess | TextPreprocess
    # How to save this model for export: "hf" (save_pretrained folder) or "torch" (TorchScript/ONNX).
    export_format: Literal["hf", "torch"] = "torch"
    # The underlying Hugging Face model when export_format == "hf" (net wraps it).
    hf_model: Any = None

    @property
    def modality(self) -> str:
        return self.spec.modality

    def group(self, name: str) -> LayerGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    modality: Literal["image", "text"]
    source: Source
    description: str
    offline: bool                     # True when the weights are installed locally
    default_image_size: int = 224
    default_max_length: int = 128
    num_params: int = 0               # approximate, for display before building
    # build(classes, pretrained, head_dropout, image_size, max_length) -> BuiltModel
    builder: Callable[..., BuiltModel] | None = field(default=None, compare=False, repr=False)
    extra: dict = field(default_factory=dict, compare=False)

    def build(self, classes: list[str], *, pretrained: bool = True, head_dropout: float = 0.0,
              image_size: int | None = None, max_length: int | None = None) -> BuiltModel:
        return self.builder(self, list(classes), pretrained=pretrained, head_dropout=head_dropout,
                            image_size=image_size or self.default_image_size,
                            max_length=max_length or self.default_max_length)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def logits_of(output) -> torch.Tensor:
    """Hugging Face models return an output object; others return the tensor."""
    return output.logits if hasattr(output, "logits") else output
