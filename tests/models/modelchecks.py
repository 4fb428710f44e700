"""Assertions and tiny batches shared by the model tests."""
from __future__ import annotations

import torch
from torch import nn

from transfer_core.models import BuiltModel, check_groups, count_params


def assert_well_formed(built: BuiltModel, num_classes: int) -> None:
    net = built.net
    check_groups(net, built.groups)
    names = [n for g in built.groups for n in g.param_names]
    assert sorted(names) == sorted(n for n, _ in net.named_parameters()), "each parameter in exactly one group"
    assert built.groups[-1].name == "head"
    assert 3 <= len(built.groups) <= 16
    assert sum(g.num_params for g in built.groups) == count_params(net)
    assert all(g.num_params > 0 for g in built.groups)
    modules = dict(net.named_modules())
    assert all(m in modules for g in built.groups for m in g.module_names)
    # Every BatchNorm must be reachable through some group, so a freezer can switch it to eval.
    covered = {sub for g in built.groups for m in g.module_names for sub in modules[m].modules()}
    for name, module in modules.items():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert module in covered, f"BatchNorm {name} is in no group"
    head_params = dict(net.named_parameters())
    assert any(head_params[n].shape[0] == num_classes for n in built.groups[-1].param_names)
    assert len(built.classes) == num_classes


def forward(built: BuiltModel, batch: dict) -> torch.Tensor:
    built.net.eval()
    with torch.no_grad():
        out = built.net(**batch)
    assert isinstance(out, torch.Tensor)
    return out


def image_batch(n: int = 2, size: int = 64) -> dict:
    return {"pixel_values": torch.randn(n, 3, size, size)}


def text_batch(built, texts=("a short text", "another, longer text here")) -> dict:
    return dict(built.preprocess.tokenizer(list(texts), padding=True, truncation=True,
                                           max_length=built.preprocess.max_length, return_tensors="pt"))


def state_of(module: torch.nn.Module, skip: str | None = None) -> dict:
    """A detached copy of a state dict, optionally without keys starting with `skip`."""
    return {k: v.detach().clone() for k, v in module.state_dict().items() if not (skip and k.startswith(skip))}


def assert_feature_split(built: BuiltModel, batch: dict, reference: torch.Tensor | None = None, atol: float = 1e-5) -> torch.Tensor:
    """forward == head_logits(features), features below the head only, head_logits on exactly the head group.

    `reference` is the logits of the wrapped model's own forward (eval mode), when there is one to compare.
    Returns the features.
    """
    net = built.net
    assert net.supports_feature_split is True
    net.eval()
    with torch.no_grad():
        feats = net.features(**batch)
        split = net.head_logits(feats)
        whole = net(**batch)
    n = next(iter(batch.values())).shape[0]
    assert isinstance(feats, torch.Tensor) and feats.shape[0] == n
    assert torch.equal(split, whole), "forward must be head_logits(features)"
    if reference is not None:
        assert torch.allclose(split, reference, atol=atol), (split - reference).abs().max()

    params = dict(net.named_parameters())
    head = set(built.groups[-1].param_names)
    # head_logits uses exactly the head group's parameters ...
    net.zero_grad(set_to_none=True)
    net.head_logits(net.features(**batch).detach()).sum().backward()
    assert {k for k, p in params.items() if p.grad is not None} == head
    # ... and features none of them.
    net.zero_grad(set_to_none=True)
    net.features(**batch).float().sum().backward()
    used = {k for k, p in params.items() if p.grad is not None}
    assert used and not (used & head), sorted(used & head)
    net.zero_grad(set_to_none=True)

    # Non-head modules in eval, head in train (as when only the head trains): features are deterministic,
    # and the head's own dropout (if any) acts inside head_logits, so cached == uncached for one RNG state.
    modules = dict(net.named_modules())
    for name in built.groups[-1].module_names:
        modules[name].train()
    with torch.no_grad():
        assert torch.equal(net.features(**batch), feats)
        torch.manual_seed(7)
        uncached = net(**batch)
        torch.manual_seed(7)
        cached = net.head_logits(feats)
    assert torch.equal(uncached, cached)
    net.eval()
    return feats
