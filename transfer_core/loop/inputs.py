"""Where a step's inputs come from: the frozen layers' cached outputs when some groups never train
(feature_cache.py), else the samples through the data loader (batching.py). Both visit the samples in
the same (seed, epoch) order, so a run gives the same model either way."""
from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

import torch

from .. import batching, batchnorm, feature_cache
from ..balance import balance_inputs
from ..devices import autocast, loader_workers
from ..evaluate import predict_dataset, predict_features
from ..feature_cache import backbone_digest, cache_key, cached_features, cached_prefix, prefix_digest, segments_cut
from .component import LoopComponent


class StepInputs(LoopComponent):
    def __init__(self):
        self.features: dict | None = None   # per split: head inputs (a tensor) or a PrefixCache
        self.cut: int | None = None         # the first group that runs each epoch; None: nothing is cached
        self.pending = False                # the cache is computed at first use, after RunStarted is out
        self.eval_samples: dict = {}
        self.loss_weight: torch.Tensor | None = None      # set in setup from train.class_balance
        self.sample_weights: torch.Tensor | None = None

    def setup(self, loop) -> None:
        cfg = loop.config
        self.train_samples = batching.sample_set(loop.built, loop.data.splits.train, augment=cfg.augment,
                                                 decoded=cfg.train.cache_images, cache_root=loop.runs_root)
        self.train_targets = torch.tensor(self.train_samples.targets, device=loop.device)
        # train.class_balance: the loss's class weights or the epochs' drawing weights (balance.py)
        self.loss_weight, self.sample_weights = balance_inputs(cfg.train.class_balance, self.train_targets,
                                                               len(loop.built.classes))

    def segment_started(self, loop) -> None:
        # Cache only groups that never trained, so their outputs are those of the start weights.
        self.cut = None if loop.needs_features else segments_cut(loop.built, loop.state.segments[:loop.seg_index + 1],
                                                                   loop.config)
        self.features = None
        self.pending = self.cut is not None

    def eval_samples_of(self, loop, split: str):
        """The split's samples without augmentation, kept for the run (images decoded once)."""
        if split not in self.eval_samples:
            self.eval_samples[split] = batching.sample_set(loop.built, getattr(loop.data.splits, split),
                                                           decoded=loop.config.train.cache_images,
                                                           cache_root=loop.runs_root)
        return self.eval_samples[split]

    def sample_lengths(self):
        return batching.sample_lengths(self.train_samples)

    def free_memory(self) -> None:
        """After running out of memory: drop the cache (rebuilt at the stage's start) and samples kept on the device."""
        self.features = None
        for samples in (self.train_samples, *self.eval_samples.values()):
            if hasattr(samples, "drop_device_copies"):
                samples.drop_device_copies()   # the memory goes to the model; pixels load from the host

    # ---- training steps ---------------------------------------------------
    def train_batches(self, loop, epoch: int, first_step: int) -> Iterator[tuple[Callable, torch.Tensor]]:
        """(forward, targets) per step of the epoch from `first_step` on: this process's share of each batch."""
        cfg, device = loop.config, loop.device
        net = loop.train_net or loop.built.net
        forward = loop.train_net or loop.forward
        self._ensure(loop)
        batches = batching.epoch_batches(len(self.train_samples), loop.state.batch_size, shuffle=True,
                                         seed=cfg.train.seed, epoch=epoch, lengths=self.sample_lengths(),
                                         weights=self.sample_weights)[first_step:]
        batches = [loop.world.share(idx) for idx in batches]
        feats, targets = (self.features or {}).get("train"), self.train_targets
        if isinstance(feats, feature_cache.PrefixCache):
            for idx in batches:
                yield (lambda s=feats.batch(idx, device): net.forward_from(self.cut, s)), targets[torch.tensor(idx, device=device)]
            return
        if feats is not None:
            for idx in batches:
                index = torch.tensor(idx, device=device)
                yield (lambda f=feats[index]: net.head_logits(f)), targets[index]
            return
        # Images always cost work per item (decoding or augmenting, or at least gathering and collating
        # pixels); on a GPU, workers do it while the previous step computes. Texts are tokenized already.
        workers = loader_workers(cfg.train.num_workers, device, per_item_work=loop.built.modality == "image")
        for inputs, batch_targets, _ in batching.device_batches(loop.built, self.train_samples, batches, device,
                                                                num_workers=workers,
                                                                seed=cfg.train.seed * 100_003 + epoch + 7919 * loop.world.rank,
                                                                channels_last=loop.channels_last, keep_on_device=True):
            if loop.needs_features:   # (features, logits), of the batch and what components add to it
                yield ((lambda i=inputs: net.forward_with_features(**extended(loop, i, loop.state.global_step))),
                       batch_targets.to(device, non_blocking=True))
            else:
                yield (lambda i=inputs: forward(**i)), batch_targets.to(device, non_blocking=True)

    def norm_statistics_forwards(self, loop) -> Iterator[Callable]:
        """One forward per batch of training samples, as evaluation sees them (no augmentation),
        from the frozen layers' cached outputs where there are some."""
        cfg, net, device, amp = loop.config, loop.built.net, loop.device, loop.amp
        self._ensure(loop)
        batches = batchnorm.recompute_batches(len(self.train_samples), loop.state.batch_size, seed=cfg.train.seed)
        feats = (self.features or {}).get("train")
        if isinstance(feats, feature_cache.PrefixCache):
            for idx in batches:
                yield partial(_autocast_call, device, amp, net.forward_from, self.cut, feats.batch(idx, device))
        elif feats is not None:
            for idx in batches:
                yield partial(_autocast_call, device, amp, net.head_logits, feats[torch.tensor(idx, device=device)])
        else:
            samples = self.eval_samples_of(loop, "train") if cfg.augment.enabled else self.train_samples
            for index, (inputs, _, _) in enumerate(batching.device_batches(loop.built, samples, batches, device,
                                                                           channels_last=loop.channels_last,
                                                                           keep_on_device=True)):
                yield partial(_autocast_call, device, amp, net, **extended(loop, inputs, index))

    # ---- evaluation ---------------------------------------------------------
    def predictions(self, loop, split: str):
        """The model's predictions on a split (train, val or test), from the cache where it holds the split."""
        self._ensure(loop)
        dataset = getattr(loop.data.splits, split)
        if self.features is not None and split in self.features:
            prefix = {} if self._whole_backbone(loop) else {"cut": self.cut, "batch_size": loop.state.eval_batch_size}
            return predict_features(loop.built, self.features[split], dataset, device=loop.device, **prefix)
        return predict_dataset(loop.built, dataset, batch_size=loop.state.eval_batch_size, device=loop.device,
                               amp=loop.amp is not None, samples=self.eval_samples_of(loop, split), keep_on_device=True)

    # ---- the cache ------------------------------------------------------------
    def _ensure(self, loop) -> None:
        if self.pending and self.cut is not None:
            self.pending = False
            self.features = (self._backbone_features(loop) if self._whole_backbone(loop)
                             else self._prefix_features(loop, self.cut))

    def _whole_backbone(self, loop) -> bool:
        """The cut is at the head: the cache holds the head's inputs, not a layer group's output."""
        return self.cut == len(loop.built.groups) - 1

    def _backbone_features(self, loop) -> dict:
        """Frozen-backbone outputs per split (computed once, or read from the runs directory's cache)."""
        digest = backbone_digest(loop.built)
        features, hits = {}, []
        for split in ("train", "val"):
            dataset = getattr(loop.data.splits, split)
            samples = self.train_samples if split == "train" else self.eval_samples_of(loop, split)
            key = cache_key(loop.config, loop.built, f"{dataset.fingerprint()}:{digest}", split)
            feats, hit = cached_features(loop.built, samples, key=key, cache_root=loop.runs_root,
                                         batch_size=loop.state.eval_batch_size, device=loop.device, amp_dtype=loop.amp,
                                         world=loop.world)
            features[split] = feats.to(loop.device)
            hits.append(hit)
        loop.notify("frozen backbone: features reused from an earlier run" if all(hits) else
                    "frozen backbone: each sample went through it once; epochs now train only the head")
        return features

    def _prefix_features(self, loop, cut: int) -> dict | None:
        """Outputs of the frozen groups below `cut` per split, or None when they would take too much memory."""
        budget = feature_cache.MAX_PREFIX_CACHE_BYTES
        digest = prefix_digest(loop.built, cut)
        caches: dict[str, feature_cache.PrefixCache] = {}
        hits = []
        for split in ("train", "val"):
            dataset = getattr(loop.data.splits, split)
            samples = self.train_samples if split == "train" else self.eval_samples_of(loop, split)
            key = cache_key(loop.config, loop.built, f"{dataset.fingerprint()}:{digest}", split, cut=cut)
            cache, hit = cached_prefix(loop.built, samples, cut, key=key, cache_root=loop.runs_root,
                                       batch_size=loop.state.eval_batch_size, device=loop.device, amp_dtype=loop.amp,
                                       max_bytes=budget - sum(c.nbytes for c in caches.values()))
            if cache is None:
                loop.notify(f"frozen layers not cached: their outputs would take more than {budget / 2 ** 20:,.0f} MiB "
                            f"of memory, so every epoch runs them")
                return None
            caches[split] = cache
            hits.append(hit)
        frozen = ", ".join(g.name for g in loop.built.groups[:cut])
        loop.notify(f"frozen layers ({frozen}): outputs reused from an earlier run" if all(hits) else
                    f"frozen layers ({frozen}): each sample went through them once; epochs now run from "
                    f"{loop.built.groups[cut].name} on")
        return caches


def extended(loop, inputs: dict, index: int) -> dict:
    """`inputs` with what the components add (LoopComponent.extend_batch)."""
    for component in loop.components:
        inputs = component.extend_batch(loop, inputs, index)
    return inputs


def _autocast_call(device: torch.device, amp, fn: Callable, *args, **kwargs):
    with autocast(device, amp):
        return fn(*args, **kwargs)
