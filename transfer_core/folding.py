"""BatchNorm folded into the convolution before it, for inference passes in fp32.

In eval mode a BatchNorm that follows a convolution is an affine map per channel, so it can be
folded into the convolution's weights and bias: one pass over the activations instead of two.
The frozen-layer pass of the feature cache (feature_cache.py) and evaluation and predictions
(evaluate.predict_dataset) run this way, on a copy of the net; the net that trains and is saved
keeps its BatchNorm layers.

Which BatchNorm follows which convolution is read off one forward pass on a few samples: hooks
see the tensor a convolution returns arrive at a BatchNorm. The folded copy is then checked
against the original on those samples, and used only when they agree: what the hooks cannot
see (a convolution's output also used elsewhere, or changed in place on its way) shows up as a
mismatch, and the original net runs instead.
"""
from __future__ import annotations

import copy
from typing import Callable, TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Largest relative difference (norm of the difference over the norm of the output) the folded copy
# may show against the original in fp32: folding only reorders roundings (about 1e-6 here).
FOLD_TOLERANCE = 1e-4

# Samples the check runs on: BatchNorm in eval mode treats every sample alike, so a few suffice.
CHECK_SAMPLES = 2


NetT = TypeVar("NetT", bound=nn.Module)


def folded_for_inference(net: NetT, run: Callable[[NetT], object], *, mixed_precision: bool = False) -> NetT:
    """`net` in eval mode, or a folded copy of it (in the same memory layout) that gives the same
    outputs as `net` on `run`.

    `run(module)` computes the pass the caller is about to make, on a few samples (see
    `first_samples`). The caller runs it under no_grad or inference_mode. Folding is checked in fp32
    only: a pass under mixed precision runs `net` itself.
    """
    if mixed_precision or not any(_is_foldable_norm(m) for m in net.modules()):
        return net
    pairs, reference = _conv_bn_pairs(net, run)
    if not pairs:
        return net
    folded = copy.deepcopy(net).eval()
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)   # what _conv_bn_pairs pairs
        _replace(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(folded, bn_name, nn.Identity())
    return folded if _agree(run(folded), reference) else net


def first_samples(inputs: dict, n: int = CHECK_SAMPLES) -> dict:
    """The first `n` samples of a batch of model inputs."""
    return {k: v[:n] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _is_foldable_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm2d) and not module.training and module.running_mean is not None


def _conv_bn_pairs(net: nn.Module, run) -> tuple[list[tuple[str, str]], object]:
    """(conv name, BatchNorm name) for each BatchNorm whose input is a convolution's output, and run(net)."""
    conv_outputs: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    found: list[tuple[str, str]] = []

    def after_conv(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            conv_outputs[id(output)] = (name, output)   # the tensor stays referenced, so its id is not reused
        return hook

    def before_norm(name):
        def hook(module, args):
            calls[name] = calls.get(name, 0) + 1
            source = conv_outputs.get(id(args[0])) if args else None
            if source is not None and source[1] is args[0]:
                found.append((source[0], name))
        return hook

    handles = []
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv(name)))
        elif _is_foldable_norm(module):
            handles.append(module.register_forward_pre_hook(before_norm(name)))
    try:
        reference = run(net)
    finally:
        for handle in handles:
            handle.remove()
    # A module that runs twice in one pass (shared) cannot be folded for one use and not the other.
    pairs = [(c, b) for c, b in found if calls[c] == 1 and calls[b] == 1
             and net.get_submodule(b).num_features == net.get_submodule(c).out_channels]
    return pairs, reference


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    if isinstance(out, (list, tuple)):
        return [v for v in out if isinstance(v, torch.Tensor)]
    return []


def _agree(out, reference) -> bool:
    got, want = _tensors(out), _tensors(reference)
    if not want or len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point():
            a, b = a.float(), b.float()
            if not torch.isfinite(a).all() or float(torch.linalg.vector_norm(a - b)) > FOLD_TOLERANCE * max(
                    float(torch.linalg.vector_norm(b)), 1e-12):
                return False
        elif not torch.equal(a, b):
            return False
    return True
