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
