"""Frozen-prefix feature cache.

When the first layer groups are frozen and their inputs are deterministic (no
random augmentation), every epoch would push the same samples through the same
frozen layers. Instead each sample goes through them once (eval mode, no
autograd, batched, on the run's device) and the remaining groups train on the
stored outputs. The frozen groups run in eval mode in the uncached path too
(freezing.set_train_mode: no dropout, BatchNorm on its running statistics), so
the cached path computes what the uncached one does and, with the same seed,
gives the same metrics. In fp32 the pass runs a copy of the net with each
BatchNorm folded into the convolution before it (folding.py): the same outputs
up to rounding (relative differences of about 1e-6), one pass over the
activations fewer.

The cut is the first trainable group (`cache_cut`); it must stay frozen in
every segment so far (the staged preset caches its head-only segment only):

* head cut (feature extraction, top_k=1): models split their forward as
  `head_logits(features(batch))` and the cache holds `features`, the pooled
  vector, for every family with a feature split (torchvision CNNs and ViTs,
  EfficientNet-Lite, Hugging Face text encoders, the tiny test models).
* a cut further down (top_k >= 2, custom freezing of the first k groups):
  nets with `prefix_cuts` (models/prefix.py) split it as
  `forward_from(cut, prefix(cut, batch))`: the tiny test models, the
  torchvision CNNs (ResNet, MobileNetV3, EfficientNet, ConvNeXt), EfficientNet-Lite0,
  and BERT-family text encoders (MiniLM included) where the prefix is the
  embeddings plus the first encoder layers. Text prefixes are stored unpadded
  per sample (hidden states of the real tokens) and padded per batch as the
  loader pads, with the attention mask rebuilt from the lengths. ViT, other
  Hugging Face families and models without a split keep running the whole
  network every epoch at such cuts (images still decoded only once, batching.py).
  Train_bn (BatchNorm statistics training in frozen groups) turns the cache off.

Outputs are kept in memory (head-cut features on the run's device, prefix
outputs on the CPU, moved per batch) and in
`<runs>/.feature_cache/<key>.safetensors`, keyed by model, weights of the
frozen part, cut point, preprocessing and data, so a new run on the same data
with other hyperparameters skips the frozen part entirely and any change
computes afresh. A prefix cache larger than MAX_PREFIX_CACHE_BYTES (train and
validation together) is skipped with a notice, and training runs uncached.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import batching
from .atomic import atomic_path
from .config import RunConfig
from .devices import autocast
from .folding import first_samples, folded_for_inference
from .loop.distributed import World
from .models.base import BuiltModel, TextPreprocess

CACHE_DIR = ".feature_cache"


# Above this many bytes of cached prefix outputs (train and validation together) the run goes uncached.
MAX_PREFIX_CACHE_BYTES = 2 * 1024 ** 3


def inputs_change_each_epoch(config: RunConfig, modality: str) -> bool:
    """Frozen groups see different inputs, or change, from epoch to epoch: image augmentation, or BatchNorm
    statistics that keep training in frozen groups. Their outputs then cannot be computed once."""
    return config.freeze.train_bn or (modality == "image" and config.augment.enabled)


def augmentation_blocks_cache(config: RunConfig, modality: str) -> bool:
    """True when image augmentation is what turns the cache off: it is wanted, some low groups are frozen
    (every preset but full fine-tuning), and nothing else changes their outputs from epoch to epoch."""
    frozen_below = config.freeze.preset != "full"
    return (modality == "image" and config.augment.enabled and config.train.cache_features and frozen_below
            and not config.freeze.train_bn)


def cache_cut(built: BuiltModel, trainable: tuple[str, ...], config: RunConfig) -> int | None:
    """Index of the first trainable group when the groups below it can be cached, else None.

    They can when their output is the same every epoch (no augmentation, no BatchNorm training in
    frozen groups) and the net can be cut there: at the head (features/head_logits) or at one of its
    `prefix_cuts`.
    """
    if not config.train.cache_features or not built.net.supports_feature_split or not trainable:
        return None
    if config.adapt.method != "none":
        return None     # target samples run through the whole network at every step, and change it

    if inputs_change_each_epoch(config, built.modality):
        return None
    names = [g.name for g in built.groups]
    cut = min(names.index(n) for n in trainable)
    if cut == len(names) - 1:
        return cut
    if cut not in built.net.prefix_cuts:
        return None
    if isinstance(built.preprocess, TextPreprocess) and getattr(built.preprocess.tokenizer, "padding_side", "right") != "right":
        return None     # cached texts are re-padded on the right, as the loader pads them
    return cut


def segments_cut(built: BuiltModel, segments, config: RunConfig) -> int | None:
    """The cut for a run so far: groups below it stayed frozen in every segment (None: no cache)."""
    cuts = [cache_cut(built, s.trainable, config) for s in segments]
    known = [c for c in cuts if c is not None]
    return min(known) if known and len(known) == len(cuts) else None


def cache_key(config: RunConfig, built: BuiltModel, data_fingerprint: str, split: str, cut: int | None = None) -> str:
    """The cache file's name; `cut` below the head adds the cut point (the head cut keeps its old keys)."""
    identity = {"model": config.model.name, "pretrained": config.model.pretrained,
                "preprocess": {k: v for k, v in built.preprocess.to_dict().items()},
                "data": data_fingerprint, "split": split, "version": 1}
    if cut is not None and cut != len(built.groups) - 1:
        identity.update(cut=[cut, built.groups[cut].name], version=2)
    if built.feature_layer:   # the same model read at an inner group: other features
        identity["feature_layer"] = built.feature_layer
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


@torch.inference_mode()
def compute_features(built: BuiltModel, samples, *, batch_size: int, device: torch.device,
                     amp_dtype: torch.dtype | None) -> torch.Tensor:
    """The frozen part's output for every sample, in sample order, as float32 on the CPU."""
    order, feats = compute_feature_rows(built, samples, None, batch_size=batch_size, device=device, amp_dtype=amp_dtype)
    return _in_sample_order(len(samples), [(order, feats)])


def compute_feature_rows(built: BuiltModel, samples, only: list[int] | None, *, batch_size: int, device: torch.device,
                         amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, features) of the samples in `only` (None: all), in the order they ran (texts longest first)."""
    net = built.net
    was_training = net.training
    net.eval()
    chunks, order = [], []
    frozen = None
    try:
        batches = batching.epoch_batches(len(samples), batch_size, shuffle=False, lengths=batching.sample_lengths(samples))
        if only is not None:
            keep = set(only)
            batches = [b for b in ([i for i in batch if i in keep] for batch in batches) if b]
        for inputs, _, indices in batching.device_batches(built, samples, batches, device):
            if frozen is None:
                few = first_samples(inputs)
                # (the lambda runs inside folded_for_inference only, before `few` changes)
                frozen = folded_for_inference(net, lambda m: m.features(**few),  # noqa: B023
                                              mixed_precision=amp_dtype is not None)
            with autocast(device, amp_dtype):
                chunks.append(frozen.features(**inputs).float().cpu())
            order.append(indices)
    finally:
        net.train(was_training)
    if not chunks:
        return torch.empty(0, dtype=torch.long), torch.empty(0)
    return torch.cat(order), torch.cat(chunks)


def _in_sample_order(count: int, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Rows computed in pieces (batches sorted by length, or processes' shards) put back in sample order."""
    parts = [(order, feats) for order, feats in parts if len(order)]
    if not parts:
        return torch.empty(0)
    out = parts[0][1].new_empty((count, *parts[0][1].shape[1:]))
    for order, feats in parts:
        out[order] = feats
    return out


def cached_features(built: BuiltModel, samples, *, key: str, cache_root: Path | None, batch_size: int,
                    device: torch.device, amp_dtype: torch.dtype | None, world: World | None = None
                    ) -> tuple[torch.Tensor, bool]:
    """Features from the on-disk cache when present, else computed and stored. Returns (features, hit).
    In a distributed run rank 0 reads the cache and shares it; else each process computes its shard of the
    samples and the shards are gathered (loop/distributed.py)."""
    world = world or World()
    path = cache_root / CACHE_DIR / f"{key}.safetensors" if cache_root is not None else None
    stored = world.broadcast(_load_features(path, len(samples)) if world.is_main else None)
    if stored is not None:
        return stored, True
    shard = world.share(list(range(len(samples))))
    rows = compute_feature_rows(built, samples, shard if world.size > 1 else None, batch_size=batch_size, device=device,
                                amp_dtype=amp_dtype)
    feats = _in_sample_order(len(samples), world.gather(rows))
    if path is not None and world.is_main:
        try:
            with atomic_path(path) as tmp:
                save_file({"features": feats.contiguous()}, str(tmp))
        except OSError:
            pass  # the cache is an optimisation: a full or read-only disk must not fail the run
    return feats, False


def _load_features(path: Path | None, count: int) -> torch.Tensor | None:
    if path is None or not path.exists():
        return None
    try:
        feats = load_file(str(path))["features"]
        return feats if feats.shape[0] == count else None
    except Exception:  # a damaged cache file is recomputed, never trusted
        return None


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


def prefix_digest(built: BuiltModel, cut: int) -> str:
    """Hash of every weight and buffer below the cut (groups[:cut] and what belongs to no group)."""
    after = built.groups[cut:]
    skip = {n for g in after for n in g.param_names}
    modules = tuple(m + "." for g in after for m in g.module_names)
    h = hashlib.sha256()
    for name, tensor in built.net.state_dict().items():
        if name in skip or name.startswith(modules):
            continue
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class PrefixCache:
    """One split's frozen-prefix outputs in sample order, on the CPU.

    Images: one dense tensor (N, ...). Texts: the real tokens' hidden states of all samples
    concatenated (T, H) with per-sample lengths; `batch` pads them to the batch's longest
    sample, as the loader pads token ids, and rebuilds the attention mask.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        if "lengths" in tensors:
            lengths = tensors["lengths"].long()
            self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
            self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths) if "lengths" in self.tensors else self.tensors["dense"].shape[0]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def batch(self, indices, device: torch.device):
        """What `net.forward_from(cut, ...)` reads for these samples, on `device`."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if "dense" in self.tensors:
            return self.tensors["dense"][indices].to(device, non_blocking=True)
        hidden = self.tensors["hidden"]
        lengths = self.lengths[indices]
        longest = int(lengths.max()) if len(lengths) else 0
        out = hidden.new_zeros(len(indices), longest, hidden.shape[-1])
        mask = torch.zeros(len(indices), longest, dtype=torch.long)
        for row, i in enumerate(indices.tolist()):
            n = int(self.lengths[i])
            out[row, :n] = hidden[self.offsets[i]:self.offsets[i] + n]
            mask[row, :n] = 1
        return {"hidden_states": out.to(device, non_blocking=True), "attention_mask": mask.to(device, non_blocking=True)}


class _TooLarge(Exception):
    pass


@torch.no_grad()
def compute_prefix(built: BuiltModel, samples, cut: int, *, batch_size: int, device: torch.device,
                   amp_dtype: torch.dtype | None, max_bytes: float = float("inf")) -> PrefixCache | None:
    """`net.prefix(cut, batch)` for every sample (eval mode, no autograd); None when it would exceed max_bytes."""
    net = built.net
    n = len(samples)
    if n == 0:
        return PrefixCache({"dense": torch.empty(0)})
    # Per module: the trainer may have put frozen groups in eval mode already (freezing.set_train_mode).
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    dense: torch.Tensor | None = None
    pieces: list[torch.Tensor] = []   # texts: each sample's real tokens, in sample order
    lengths = batching.sample_lengths(samples)
    try:
        batches = batching.epoch_batches(n, batch_size, shuffle=False, lengths=lengths)
        frozen = None
        for inputs, _, indices in batching.device_batches(built, samples, batches, device):
            if frozen is None:
                few = first_samples(inputs)
                frozen = folded_for_inference(net, lambda m: m.prefix(cut, **few),  # noqa: B023  (as above)
                                              mixed_precision=amp_dtype is not None)
            with autocast(device, amp_dtype):
                out = frozen.prefix(cut, **inputs)
            if isinstance(out, dict):       # texts: keep the real tokens only
                hidden = out["hidden_states"].float().cpu()
                real = out["attention_mask"].sum(1).cpu()
                if sum(lengths or []) * hidden.shape[-1] * 4 > max_bytes:
                    raise _TooLarge
                if not pieces:
                    pieces = [torch.empty(0)] * n
                for row, i in enumerate(indices.tolist()):
                    pieces[i] = hidden[row, :int(real[row])].clone()
            else:
                out = out.float().cpu()
                if dense is None:
                    if n * out[0].numel() * 4 > max_bytes:
                        raise _TooLarge
                    dense = torch.empty((n, *out.shape[1:]), dtype=torch.float32)
                dense[indices] = out
    except _TooLarge:
        return None
    finally:
        for module, training in modes:
            module.training = training
    if dense is not None:
        return PrefixCache({"dense": dense})
    if lengths is not None and n:
        return PrefixCache({"hidden": torch.cat(pieces), "lengths": torch.tensor([len(p) for p in pieces])})
    return None


def cached_prefix(built: BuiltModel, samples, cut: int, *, key: str, cache_root: Path | None, batch_size: int,
                  device: torch.device, amp_dtype: torch.dtype | None,
                  max_bytes: float = float("inf")) -> tuple[PrefixCache | None, bool]:
    """Prefix outputs from the on-disk cache when present, else computed and stored.

    Returns (cache, hit); cache is None when the outputs would take more than max_bytes.
    """
    path = cache_root / CACHE_DIR / f"{key}.safetensors" if cache_root is not None else None
    if path is not None and path.exists():
        try:
            stored = PrefixCache(load_file(str(path)))
            if len(stored) == len(samples):
                return (stored, True) if stored.nbytes <= max_bytes else (None, False)
        except Exception:  # a damaged cache file is recomputed, never trusted
            pass
    cache = compute_prefix(built, samples, cut, batch_size=batch_size, device=device, amp_dtype=amp_dtype,
                           max_bytes=max_bytes)
    if cache is not None and path is not None:
        try:
            with atomic_path(path) as tmp:
                save_file({k: v.contiguous() for k, v in cache.tensors.items()}, str(tmp))
        except OSError:
            pass  # the cache is an optimisation: a full or read-only disk must not fail the run
    return cache, False
