"""Classification heads and the wrapper that gives plain PyTorch image models the `net(**batch)` contract."""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .base import TransferNet, global_pool

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class HeadLinear(nn.Linear):
    """A Linear layer with its own input dropout.

    Its state dict keys are those of nn.Linear (weight, bias) whatever the
    dropout, so a run saved with one head_dropout loads into a net built with
    another, and no family needs a Sequential that renames its head.
    """

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0):
        super().__init__(in_features, out_features)
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.linear rather than super().forward(): TorchScript cannot script super() calls.
        return F.linear(F.dropout(x, self.dropout, self.training), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.dropout}"


class HeadMLP(nn.Module):
    """A head with one hidden layer: dropout, Linear(in, hidden), ReLU, dropout, Linear(hidden, out).

    For frozen features that are not linearly separable (e.g. feature extraction on data far from the
    pretraining data). It answers what code asks of a HeadLinear: in_features, out_features and the
    input `dropout`; `hidden_dropout` acts on the hidden layer (a Hugging Face family whose own dropout
    sits before the head keeps `dropout` at 0, see huggingface.set_head_dropout).
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, dropout: float = 0.0,
                 hidden_dropout: float | None = None):
        super().__init__()
        self.in_features, self.hidden_features, self.out_features = in_features, hidden_features, out_features
        self.dropout = float(dropout)
        self.hidden_dropout = float(dropout if hidden_dropout is None else hidden_dropout)
        self.hidden = nn.Linear(in_features, hidden_features)
        self.output = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.hidden(F.dropout(x, self.dropout, self.training)))
        return self.output(F.dropout(x, self.hidden_dropout, self.training))

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, hidden_dropout={self.hidden_dropout}"


Head = HeadLinear | HeadMLP


def is_hidden_units(value) -> bool:
    """Whether `value` can be model.head_hidden: a whole number, 0 or more (bool is no number here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def make_head(in_features: int, num_classes: int, dropout: float, hidden: int = 0) -> Head:
    """model.head_hidden 0: a HeadLinear (its state dict keys are those of earlier runs); N: a HeadMLP of N units."""
    if hidden:
        return HeadMLP(in_features, hidden, num_classes, dropout)
    return HeadLinear(in_features, num_classes, dropout)


# features_fn(model, pixel_values) -> what the head reads; head_fn(model, features) -> logits.
FeaturesFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
HeadFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
# step_fn(model, x) -> x: one step of a forward that is a plain sequence (see PixelClassifier.prefix).
StepFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _call_submodule(path: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.get_submodule(path)(x)


def module_step(path: str) -> tuple[str, StepFn]:
    """A step that calls the submodule at `path` of the wrapped model."""
    return path, functools.partial(_call_submodule, path)


class PixelClassifier(TransferNet):
    """forward(pixel_values) -> logits, around any image model taking a tensor.

    Given the family's split, `features(pixel_values)` runs everything below the
    "head" group (e.g. the pooled (N, C) vector) and `head_logits(features)` runs
    the head group alone (its dropout included); forward is exactly
    `head_logits(features(...))`, so a trainer may cache the features of a frozen
    backbone and train the head on them with the same result. The functions look
    the modules up at call time, so a head swapped by replace_head is used at once.
    """

    def __init__(self, model: nn.Module, features_fn: FeaturesFn | None = None, head_fn: HeadFn | None = None,
                 steps: list[tuple[str, StepFn]] | None = None, pool_fn: StepFn | None = None,
                 token_path: str | None = None):
        super().__init__()
        self.model = model
        self._features_fn = features_fn
        self._head_fn = head_fn
        self.supports_feature_split = features_fn is not None and head_fn is not None
        # With `steps` (module path inside `model`, step function) such that
        # features == pool_fn(steps applied in order), the forward can also be cut between
        # layer groups: prefix(cut, x) / forward_from(cut, h). set_prefix_cuts finds the clean cuts.
        self._steps = steps if self.supports_feature_split else None
        self._pool_fn = pool_fn
        self._token_path = token_path   # inside `model`: see TransferNet.token_layer
        self.prefix_cuts: dict[int, int] = {}

    def token_layer(self) -> nn.Module | None:
        return self.model.get_submodule(self._token_path) if self._token_path else None

    def set_prefix_cuts(self, groups) -> None:
        from .prefix import step_cuts
        self.prefix_cuts = step_cuts(groups, [f"model.{path}" for path, _ in self._steps]) if self._steps else {}

    def prefix(self, cut: int, pixel_values: torch.Tensor) -> torch.Tensor:
        """The output of the layer groups below `cut` (a key of prefix_cuts)."""
        x = pixel_values
        for _, fn in (self._steps or [])[:self.prefix_cuts[cut]]:
            x = fn(self.model, x)
        return x

    def forward_from(self, cut: int, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from prefix(cut, ...): the groups from `cut` on, then the head."""
        x = hidden
        for _, fn in (self._steps or [])[self.prefix_cuts[cut]:]:
            x = fn(self.model, x)
        assert self._pool_fn is not None   # prefix_cuts is empty without steps and their pooling
        return self.head_logits(self._pool_fn(self.model, x))

    def group_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """One pass through the steps, pooling the output at each cut (see TransferNet.group_features)."""
        assert self._steps is not None and self._pool_fn is not None
        ends = set(self.prefix_cuts.values())   # steps done at the end of each group below the last one
        out, x = [], pixel_values
        for done, (_, fn) in enumerate(self._steps, start=1):
            x = fn(self.model, x)
            if done in ends:
                out.append(global_pool(x))
        return [*out, self._pool_fn(self.model, x)]

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self._features_fn is None:
            raise NotImplementedError(f"{type(self.model).__name__} has no head/feature split")
        return self._features_fn(self.model, pixel_values)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        if self._head_fn is None:
            raise NotImplementedError(f"{type(self.model).__name__} has no head/feature split")
        return self._head_fn(self.model, features)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if not self.supports_feature_split:
            return self.model(pixel_values)
        return self.head_logits(self.features(pixel_values))


def new_head(old: nn.Linear | HeadMLP, num_classes: int, dropout: float, hidden: int = 0) -> Head:
    """A freshly initialised head with the input width of `old` (a Linear or a HeadMLP; same dtype and device)."""
    weight = next(old.parameters())
    head = make_head(old.in_features, num_classes, dropout, hidden)
    return head.to(device=weight.device, dtype=weight.dtype)


def swap_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    if isinstance(parent, nn.Sequential) and attr.isdigit():
        parent[int(attr)] = module
    else:
        setattr(parent, attr, module)


def replace_linear(root: nn.Module, path: str, num_classes: int, dropout: float, hidden: int = 0) -> None:
    old = root.get_submodule(path)
    if not isinstance(old, (nn.Linear, HeadMLP)):   # a HeadMLP: a run:<id> model trained with a hidden head
        raise TypeError(f"{path} is {type(old).__name__}, not a Linear head")
    swap_module(root, path, new_head(old, num_classes, dropout, hidden))


def silence_dropout(root: nn.Module, paths: list[str]) -> None:
    """Zero a family's own pre-head dropout: the new head applies head_dropout once, as configured."""
    for path in paths:
        module = root.get_submodule(path)
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def replace_head_torch(built, classes: list[str], head_dropout: float = 0.0, head_hidden: int = 0):
    """New head for a plain PyTorch family: the spec names the head's path and how to group."""
    replace_linear(built.net, built.spec.head_path, len(classes), head_dropout, head_hidden)
    return dataclasses.replace(built, classes=list(classes), groups=built.spec.groups_of(built.net))
