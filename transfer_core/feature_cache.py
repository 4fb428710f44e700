"""Frozen-backbone feature cache.

When only the head trains and the inputs are deterministic (no random
augmentation), every epoch would push the same samples through the same frozen
backbone. Instead each sample goes through it once (eval mode, no autograd,
batched) and the head trains on the stored features. Models split their
forward as `head_logits(features(batch))`, so the cached path computes exactly
what the uncached one does.

Features are kept in memory and in `<runs>/.feature_cache/<key>.safetensors`,
keyed by model, weights, preprocessing and data, so a new run on the same data
with other hyperparameters skips the backbone entirely.

Scope: the cut is always just below the head group, for every family with a
feature split (torchvision CNNs and ViTs, EfficientNet-Lite, Hugging Face text
encoders, the tiny test models). A cut further down (first k groups frozen, as
top_k or custom freezing give) is not cached: those runs run the whole network
every epoch, with images still decoded only once (batching.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import batching
from .config import RunConfig
from .devices import autocast
from .models.base import BuiltModel

CACHE_DIR = ".feature_cache"


def cache_applies(built: BuiltModel, trainable: tuple[str, ...], config: RunConfig) -> bool:
    """True when the frozen part's output is the same every epoch: only the head trains, no augmentation."""
    if not config.train.cache_features or not getattr(built.net, "supports_feature_split", False):
        return False
    if trainable != (built.groups[-1].name,):
        return False
    if config.freeze.train_bn:
        return False
    return not (built.modality == "image" and config.augment.enabled)


def cache_key(config: RunConfig, built: BuiltModel, data_fingerprint: str, split: str) -> str:
    identity = {"model": config.model.name, "pretrained": config.model.pretrained,
                "preprocess": {k: v for k, v in built.preprocess.to_dict().items()},
                "data": data_fingerprint, "split": split, "version": 1}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


@torch.inference_mode()
def compute_features(built: BuiltModel, samples, *, batch_size: int, device: torch.device,
                     amp_dtype: torch.dtype | None) -> torch.Tensor:
    """The frozen part's output for every sample, in sample order, as float32 on the CPU."""
    net = built.net
    was_training = net.training
    net.eval()
    chunks, order = [], []
    try:
        batches = batching.epoch_batches(len(samples), batch_size, shuffle=False, lengths=batching.sample_lengths(samples))
        for inputs, _, indices in batching.make_loader(built, samples, batches, pin_memory=device.type == "cuda"):
            inputs = batching.to_device(inputs, device, non_blocking=True)
            with autocast(device, amp_dtype):
                chunks.append(net.features(**inputs).float().cpu())
            order.append(indices)
    finally:
        net.train(was_training)
    if not chunks:
        return torch.empty(0)
    feats = torch.cat(chunks)
    out = torch.empty_like(feats)
    out[torch.cat(order)] = feats  # texts run longest first; back to sample order
    return out


def cached_features(built: BuiltModel, samples, *, key: str, cache_root: Path | None, batch_size: int,
                    device: torch.device, amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, bool]:
    """Features from the on-disk cache when present, else computed and stored. Returns (features, hit)."""
    path = cache_root / CACHE_DIR / f"{key}.safetensors" if cache_root is not None else None
    if path is not None and path.exists():
        try:
            feats = load_file(str(path))["features"]
            if feats.shape[0] == len(samples):
                return feats, True
        except Exception:  # a damaged cache file is recomputed, never trusted
            pass
    feats = compute_features(built, samples, batch_size=batch_size, device=device, amp_dtype=amp_dtype)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            save_file({"features": feats.contiguous()}, str(tmp))
            os.replace(tmp, path)
        except OSError:
            pass  # the cache is an optimisation: a full or read-only disk must not fail the run
    return feats, False


def backbone_digest(built: BuiltModel) -> str:
    """Hash of every weight and buffer outside the head: features are only reused for identical backbones."""
    head = set(built.groups[-1].param_names)
    h = hashlib.sha256()
    for name, tensor in built.net.state_dict().items():
        if name in head:
            continue
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
