"""What every model in the registry provides: a spec (what it is) and a built model (what trains)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

Source = Literal["offline", "torchvision", "huggingface", "local", "run", "test"]
Modality = Literal["image", "text"]


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


class TransferNet(nn.Module):
    """What the engine asks of every network it trains (timm's forward_features / forward_head, for layer groups).

    `net(**batch)` gives the logits. Where `supports_feature_split` is True, `features(**batch)` is everything
    below the "head" group (e.g. the pooled (N, C) vector, or a text model's pooled token) and
    `head_logits(features)` is the head group alone, so that `net(**batch) == head_logits(features(**batch))`.
    Where `prefix_cuts` lists a group index `cut` (see prefix.py), `prefix(cut, **batch)` is the output of the
    groups below `cut` (the features at a chosen group) and `forward_from(cut, prefix(cut, **batch))` equals
    `net(**batch)`. The frozen-feature cache, BatchNorm statistics and evaluation use nothing else; the head
    is replaced through the spec (ModelSpec.replace_head).
    """
    supports_feature_split: bool = False
    prefix_cuts: dict[int, int]

    def __init__(self):
        super().__init__()
        self.prefix_cuts = {}

    def set_prefix_cuts(self, groups: list[LayerGroup]) -> None:
        """Find the cuts between `groups` this net can run from (none by default)."""

    def features(self, *args: Any, **batch: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no head/feature split")

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no head/feature split")

    def forward_with_features(self, *args: Any, **batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of one forward pass: what domain adaptation needs from a source batch."""
        features = self.features(*args, **batch)
        return features, self.head_logits(features)

    def token_layer(self) -> nn.Module | None:
        """A vision transformer's module whose output holds the image's tokens (N, tokens, width) as the last
        block's attention reads them: where Grad-CAM looks, since only the class token reaches the head after
        the last block (as pytorch-grad-cam's ViT recipe does). None for networks that are not one."""
        return None

    def prefix(self, cut: int, *args: Any, **batch: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot be cut between layer groups")

    def forward_from(self, cut: int, hidden: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot be cut between layer groups")

    # ---- the layer probe (probe.py): what a head reading each layer group would see --------------
    def can_probe(self, groups: list[LayerGroup]) -> bool:
        """Every group below the head ends at a cut, so each one's output can be read."""
        return self.supports_feature_split and set(self.prefix_cuts) == set(range(1, len(groups) - 1))

    def pool_hidden(self, hidden: Any) -> torch.Tensor:
        """One vector per sample from a prefix's output: global average pooling of a CNN's feature maps."""
        return global_pool(hidden)

    def group_features(self, *args: Any, **batch: Any) -> list[torch.Tensor]:
        """The pooled output of each group below the head, input first; the last is `features` itself.
        Families override it with one pass through the network; this reference runs one prefix per group."""
        return [self.pool_hidden(self.prefix(cut, *args, **batch)) for cut in sorted(self.prefix_cuts)] + \
            [self.features(*args, **batch)]


def global_pool(hidden: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) feature maps or (N, T, C) tokens -> (N, C), by their average."""
    if hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if hidden.ndim == 3:
        return hidden.mean(dim=1)
    return hidden.flatten(1)


@dataclass
class BuiltModel:
    """A network ready to fine-tune for `classes`.

    `net(**batch)` returns logits of shape (N, len(classes)). Image batches are
    {"pixel_values": float tensor (N, 3, H, W)}; text batches are
    {"input_ids": ..., "attention_mask": ...} (plus token_type_ids when the tokenizer gives them).
    `groups` run from the input to the head; the last group is always named "head".

    `net` answers TransferNet; its feature split exists for every catalogue family and for Hugging Face
    architectures whose head is known or provably a single Linear.
    """
    spec: "ModelSpec"
    net: TransferNet
    groups: list[LayerGroup]
    classes: list[str]
    preprocess: ImagePreprocess | TextPreprocess
    # How to save this model for export: "hf" (save_pretrained folder) or "torch" (TorchScript/ONNX).
    export_format: Literal["hf", "torch"] = "torch"
    # The underlying Hugging Face model when export_format == "hf" (net wraps it).
    hf_model: Any = None
    # model.feature_layer when the head reads that inner group (the groups above it are gone); "" otherwise.
    feature_layer: str = ""

    @property
    def modality(self) -> str:
        return self.spec.modality

    def group(self, name: str) -> LayerGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


HeadReplacer = Callable[["BuiltModel", list[str], float, int], "BuiltModel"]   # (built, classes, head_dropout, head_hidden)


@dataclass(frozen=True)
class RunOrigin:
    """Where a model made from a finished run (`run:<id>`, models/runs.py) comes from."""
    base: str                   # the model the run fine-tuned: a registry name or another run
    run_dir: str
    labels: tuple[str, ...]     # the run's classes, in its head's order
    runs_dir: str | None        # the runs directory the base is looked up in
    pooling: str                # the pooling the run trained with ("auto" for images)
    head_hidden: int = 0        # the run's model.head_hidden: the shape of the head its weights hold
    feature_layer: str = ""     # the run's model.feature_layer: the group its head reads


@dataclass(frozen=True)
class ModelSpec:
    name: str
    modality: Modality
    source: Source
    description: str
    offline: bool                     # True when the weights are installed locally
    default_image_size: int = 224
    default_max_length: int = 128
    num_params: int = 0               # approximate, for display before building
    # build(spec, classes, pretrained=, head_dropout=, head_hidden=, image_size=, max_length=) -> BuiltModel
    builder: Callable[..., BuiltModel] | None = field(default=None, compare=False, repr=False)
    # A new final layer for other classes; every family has one (heads.replace_head_torch, huggingface.replace_head_hf).
    replace_head: HeadReplacer | None = field(default=None, compare=False, repr=False)
    head_path: str = ""               # torch families: the module path of the final Linear inside the net
    # torch families: the net's layer groups, from the input to the head (read again after the head is replaced)
    groups_of: Callable[[nn.Module], list[LayerGroup]] | None = field(default=None, compare=False, repr=False)
    hub_path: str = ""                # Hugging Face families: the hub id or the local folder the files come from
    # an installed Hugging Face model: finds its folder when it is needed (not at import)
    locate: Callable[[], Path] | None = field(default=None, compare=False, repr=False)
    aliases: tuple[str, ...] = ()     # other names it is found by (case-insensitive)
    from_run: RunOrigin | None = None   # set for `run:<id>` models

    @property
    def base_name(self) -> str:
        """The model the weights started from: the spec's own name, or a run's base model."""
        return self.from_run.base if self.from_run else self.name

    def build(self, classes: list[str], *, pretrained: bool = True, head_dropout: float = 0.0, head_hidden: int = 0,
              image_size: int | None = None, max_length: int | None = None) -> BuiltModel:
        if self.builder is None:
            raise TypeError(f"model {self.name} has no builder")
        return self.builder(self, list(classes), pretrained=pretrained, head_dropout=head_dropout, head_hidden=head_hidden,
                            image_size=image_size or self.default_image_size,
                            max_length=max_length or self.default_max_length)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def logits_of(output) -> torch.Tensor:
    """Hugging Face models return an output object; others return the tensor."""
    return output.logits if hasattr(output, "logits") else output
