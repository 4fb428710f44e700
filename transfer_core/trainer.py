"""fit(): one synchronous training loop serving the CLI, the app's background thread, tests and benchmarks.

It emits typed events (events.py) to the run store and any observers, honours
stop/pause at batch boundaries (control.py), writes a checkpoint at an epoch end
once a minute (train.checkpoint_every_s), after the last epoch, and on stop, pause
and failure, retries an epoch with half the batch size
when the device runs out of memory, and turns every exception into a failed run
with advice.
"""
from __future__ import annotations

import dataclasses
import errno
import gc
import json
import logging
import math
import random
import time
import traceback
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import batching, batchnorm, feature_cache
from .atomic import atomic_path, write_json
from .checkpoint import CheckpointWriter, load_checkpoint
from .config import ConfigError, RunConfig, TrainConfig
from .control import RunControl
from .devices import (
    CompiledForward,
    amp_dtype,
    autocast,
    configure_backends,
    describe_device,
    eval_batch_size,
    is_out_of_memory,
    loader_workers,
    needs_grad_scaler,
    pick_device,
    precision_name,
    use_channels_last,
)
from .errors import DataError, RunError, RunFilesMissing, TrainingDiverged, TransferError
from .evaluate import compute_metrics, predict_dataset, predict_features, save_predictions
from .events import BatchEnded, EpochEnded, Event, Notice, RunEnded, RunFailed, RunStarted, RunStatus
from .feature_cache import backbone_digest, cache_key, cached_features, cached_prefix, prefix_digest, segments_cut
from .freezing import (
    Segment,
    apply_trainable,
    count_trainable,
    frozen_gap,
    head_lr,
    optimizer_param_groups,
    plan_segments,
    segment_for_epoch,
    set_train_mode,
)
from .models import build_model, get_spec
from .optim import build_optimizer, build_scheduler, load_optimizer_state
from .paths import check_config_paths
from .preparation import guess_modality, prepare_data
from .run_files import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LABELS_FILE,
    LOG_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    TEST_PREDICTIONS_FILE,
    WEIGHTS_FILE,
)
from .store import RunRecord, RunStore
from .summary import best_fields, best_row

log = logging.getLogger(__name__)

Observer = Callable[[Event], None]

# Cross-entropy of a uniform guess is ln(classes). An epoch whose mean training loss is this many times
# that has blown its weights up (a learning rate far too high): no run that learns gets there.
DIVERGED_LOSS_FACTOR = 10.0


@dataclass
class FitResult:
    run_id: str
    status: RunStatus
    epochs_done: int = 0
    best_epoch: int = -1
    metrics: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    message: str = ""
    advice: str = ""

    def summary(self) -> dict:
        """The CLI's JSON: the numbers of the model the run gives you (see summary.py), then its best epoch."""
        m = self.metrics
        return {"run_id": self.run_id, "status": self.status, "epochs": self.epochs_done,
                "train_seconds": round(self.train_seconds, 2), "model_epoch": m.get("model_epoch"),
                "val_accuracy": m.get("val_accuracy"), "val_macro_f1": m.get("val_macro_f1"),
                "val_loss": m.get("val_loss"), "test_accuracy": m.get("test_accuracy"),
                "best_epoch": self.best_epoch, "best_metric": m.get("best_metric"), "best_value": m.get("best_value"),
                "best_val_accuracy": m.get("best_val_accuracy"), "message": self.message}


class _Stopped(Exception):
    """Raised inside the loop when a stop was requested; caught by fit()."""


def check_startable(config: RunConfig, *, runs_dir=None, allowed_roots: list | None = None) -> RunConfig:
    """Reject a run before anything is written: invalid settings, unknown model, missing data, and (with
    `allowed_roots`, the web app's folders) data or a local model folder outside those folders."""
    if allowed_roots is not None:
        check_config_paths(config, allowed_roots)
    config.check()
    spec = get_spec(config.model.name, runs_dir=runs_dir)
    for field_name, path in (("data.path", config.data.path), ("data.val_path", config.data.val_path)):
        if path and not path.startswith("demo:") and not Path(path).exists():
            raise DataError(f"{field_name}: nothing at {path}; give an existing folder, .zip or CSV/TSV/JSONL file")
    modality = guess_modality(config.data.path, allowed_roots=allowed_roots)
    if spec.modality != modality:
        raise ConfigError(f"model.name {spec.name} is a {spec.modality} model but {config.data.path} holds {modality}s; "
                          f"pick a {modality} model (see `python -m transfer_core models`)")
    from .models.network import check_downloadable
    check_downloadable(spec, config.model.pretrained)   # offline with nothing cached: refuse now, not inside the run
    return config


class ResumeRefused(RunError):
    """A resume or an extension refused before the run changed: the run keeps its status and files."""


def max_epochs() -> int:
    """train.epochs' upper limit, which an extension's total must respect too."""
    return next(f for f in dataclasses.fields(TrainConfig) if f.name == "epochs").metadata["max"]


def check_resumable(store: RunStore, run_id: str, extra_epochs: int = 0) -> RunRecord:
    """Refuse a resume or an extension that cannot work, before anything about the run is written:
    a mistaken command must leave a finished run as it was."""
    record = store.get_run(run_id)
    refusal = store.resume_refusal(record.id)
    if refusal:
        raise ResumeRefused(refusal)
    folder = store.run_dir(record.id, resolve=False)
    if not folder.is_dir():
        raise RunFilesMissing(record.id, folder)
    if extra_epochs < 0:
        raise ResumeRefused(f"extra epochs must be 0 or more, not {extra_epochs}; give the number of epochs to add")
    if record.status == RunStatus.COMPLETED and extra_epochs == 0:
        raise ResumeRefused(f"run {record.id} already finished all its epochs; extend it by giving a number of extra epochs")
    limit = max_epochs()
    epochs = RunConfig.of_saved_run(record.config).train.epochs
    if epochs + extra_epochs > limit:
        fix = (f"add at most {limit - epochs}" if epochs < limit
               else f"start a new run from its weights instead (model run:{record.id})")
        raise ResumeRefused(f"run {record.id} has {epochs} epochs and {extra_epochs} more would pass the limit of "
                            f"{limit}; {fix}")
    return record


def fit(config: RunConfig | None, *, store: RunStore, run_id: str | None = None, control: RunControl | None = None,
        observers: Iterable[Observer] = (), resume: bool = False, extra_epochs: int = 0, name: str | None = None,
        allowed_roots: list | None = None) -> FitResult:
    """Train (or resume) one run to its end. Never raises for problems inside the run: they end it as failed.
    A resume that cannot work raises (RunError) before the run changes. With `allowed_roots` (the web app),
    the data is read only under those folders (see load_dataset)."""
    if resume:
        if run_id is None:
            raise RunError("resume needs a run id; list runs with `python -m transfer_core runs`")
        config = RunConfig.of_saved_run(check_resumable(store, run_id, extra_epochs).config)
    config.check()
    if run_id is None:
        run_id = store.create_run(config.to_dict(), name=name, modality="", model=config.model.name,
                                  dataset=config.data.path)
    trainer = Trainer(config, store=store, run_id=run_id, control=control or RunControl(), observers=list(observers),
                      allowed_roots=allowed_roots)
    return trainer.run(resume=resume, extra_epochs=extra_epochs)


class Trainer:
    def __init__(self, config: RunConfig, *, store: RunStore, run_id: str, control: RunControl, observers: list[Observer],
                 allowed_roots: list | None = None):
        self.config = config
        self.allowed_roots = allowed_roots
        self.store = store
        self.run_id = run_id
        self.control = control
        self.observers = observers
        self.run_dir = store.run_dir(run_id)
        self.device = pick_device(config.train.device)
        self.amp = amp_dtype(self.device, config.train.mixed_precision)
        self.train_seconds = 0.0
        self.history: list[dict] = []
        self.best = {"epoch": -1, "value": None}
        self.bad_epochs = 0
        self.eval_batch_size = eval_batch_size(config.train.batch_size, self.device)   # halved after out of memory
        self.checkpoints = CheckpointWriter()
        self.checkpointed_at = time.monotonic()   # when the checkpoint on disk was written (or training began)
        self.unwritten_epoch_end = False          # an epoch end held in memory only (see _checkpoint_epoch_end)
        self.features = None
        self.cache_pending = False
        self.model_epoch: int | None = None      # the epoch whose end the weights are at (None: part-way through one)
        self.eval_samples: dict = {}
        self.channels_last = False
        self.forward = None
        self.trained_norms: list = []   # BatchNorm layers that train in the current segment
        self.norms_version = 0          # weights_version at which their running statistics were last recomputed

    # ---- the whole run ------------------------------------------------
    def run(self, *, resume: bool, extra_epochs: int) -> FitResult:
        try:
            try:
                return self._run(resume=resume, extra_epochs=extra_epochs)
            except _Stopped:
                return self._finish(RunStatus.STOPPED)   # (a full disk while finishing a stop still fails the run)
        except Exception as exc:  # the loop must never take the process down
            return self._fail(exc)

    def _run(self, *, resume: bool, extra_epochs: int) -> FitResult:
        cfg = self.config
        self.data = prepare_data(cfg, allowed_roots=self.allowed_roots)
        state = None
        if resume and not (self.run_dir / CHECKPOINT_FILE).exists():
            resume = False  # no checkpoint was written before it ended: start it from the beginning
        if resume:
            state = load_checkpoint(self.run_dir / CHECKPOINT_FILE)
            if state["fingerprint"] != self.data.fingerprint:
                # A DataError, so the failure is recorded as not resumable: every resume would meet the same data.
                # Checked before any file of the run is rewritten (labels.json would no longer fit its weights).
                raise DataError("the data changed since this run started; start a new run on the new data")
        seed_everything(cfg.train.seed)  # the new head's initial weights depend on it
        self.built = build_model(cfg.model.name, self.data.classes, pretrained=cfg.model.pretrained,
                                 head_dropout=cfg.model.head_dropout, image_size=cfg.model.image_size,
                                 max_length=cfg.model.max_length, runs_dir=self.store.root, pooling=cfg.model.pooling)
        if self.built.modality != self.data.modality:
            raise TransferError(f"model {cfg.model.name} is for {self.built.modality}s but the data holds "
                                f"{self.data.modality}s; pick a {self.data.modality} model (see `python -m transfer_core models`)")
        if self.built.modality == "text":
            self.data.refresh_report(self.built.preprocess.tokenizer, cfg.model.max_length)
        self._write_json(REPORT_FILE, self.data.report.to_dict())
        self.built.net.to(self.device)
        self.channels_last = use_channels_last(self.built.net, self.device, self.built.modality)
        if self.channels_last:
            self.built.net.to(memory_format=torch.channels_last)
        configure_backends(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)   # metrics.json reports this run's peak
        self.forward = CompiledForward(self.built.net, enabled=cfg.train.compile, on_fallback=self._compile_failed)
        self.store.update_run(self.run_id, modality=self.data.modality, dataset_fingerprint=self.data.fingerprint)
        self._write_json(LABELS_FILE, self.data.classes)

        group_names = [g.name for g in self.built.groups]
        self.train_samples = batching.sample_set(self.built, self.data.splits.train, augment=cfg.augment,
                                                 decoded=cfg.train.cache_images, cache_root=self.store.root)
        self.eval_samples = {}
        self.weights_version = 0    # bumped whenever the weights change, so an unchanged model is not evaluated twice
        self.last_eval: dict[str, tuple] = {}
        self.train_targets = torch.tensor(self.train_samples.targets, device=self.device)
        start_epoch, step_in_epoch, self.global_step = 0, 0, 0
        self.segments = plan_segments(group_names, cfg.freeze, cfg.train.epochs)
        if resume:
            self.segments = [Segment.from_dict(s) for s in state["segments"]]
            start_epoch, step_in_epoch = state["epoch"], state["step_in_epoch"]
            self.global_step = state["global_step"]
            self.train_seconds, self.history = state["train_seconds"], state["history"]
            self.best, self.bad_epochs = state["best"], state["bad_epochs"]
            # An out-of-memory retry may have lowered the batch size; the checkpoint counts steps in it.
            cfg.train.batch_size = state.get("batch_size", cfg.train.batch_size)
            self.eval_batch_size = state.get("eval_batch_size", self.eval_batch_size)
            if extra_epochs > 0:
                start_epoch, step_in_epoch = self._extend(extra_epochs, start_epoch, step_in_epoch)
            # (all epochs trained but the run failed while finishing, e.g. on a full disk: it only finishes;
            # a finished run without extra epochs was refused by check_resumable)
            self._load_net_state(state)
        self.steps_per_epoch = math.ceil(len(self.data.splits.train) / cfg.train.batch_size)
        self._write_json(CONFIG_FILE, cfg.to_dict())
        self.store.update_run(self.run_id, config=cfg.to_dict())

        seg_index = segment_for_epoch(self.segments, start_epoch)
        if state is not None and not self._starts_segment(start_epoch, step_in_epoch):
            self._enter_segment(seg_index, optimizer_state=state.get("optimizer"), scheduler_state=state.get("scheduler"),
                                scaler_state=state.get("scaler"))
        else:   # a fresh start, or a new segment (an extension among them): as an uninterrupted run enters it
            self._enter_segment(seg_index)
        if state is not None:
            _set_rng_state(state["rng"])
            accum = state["accum"]
        else:
            accum = _new_accum()
        self._emit_started(start_epoch)
        for note in [*self.data.notices, *self._settings_notices()]:
            self._emit(Notice(self.run_id, time.time(), message=note))
        if state is None:
            # Something for an out-of-memory retry in the first epoch to go back to. In memory only:
            # writing it would cost a full save, and a run that dies before its first checkpoint
            # resumes from the beginning, which is this same state.
            self.checkpoints.keep(self._checkpoint_state(start_epoch, 0, accum))

        self.checkpointed_at = time.monotonic()
        for epoch in range(start_epoch, cfg.train.epochs):
            if segment_for_epoch(self.segments, epoch) != self.seg_index:
                self._enter_segment(segment_for_epoch(self.segments, epoch))
            self.epoch = epoch
            while True:
                try:
                    self._train_epoch(epoch, step_in_epoch, accum)
                    early_stop = self._end_epoch(epoch)
                    break
                except Exception as exc:
                    if not is_out_of_memory(exc) or cfg.train.batch_size <= 1:
                        raise
                    step_in_epoch, accum = self._retry_with_smaller_batches(epoch, exc)
            step_in_epoch, accum = 0, _new_accum()
            if early_stop:
                self._emit(Notice(self.run_id, time.time(), message=(
                    f"early stopping: {cfg.train.early_stopping_metric} did not improve for "
                    f"{cfg.train.early_stopping_patience} epochs; keeping the best epoch ({self.best['epoch'] + 1})")))
                break
        return self._finish(RunStatus.COMPLETED)

    def _settings_notices(self) -> list[str]:
        """Settings that run, but not as the user may expect. Told, not changed: config.json keeps what was asked."""
        notes = []
        n_train, batch = len(self.data.splits.train), self.config.train.batch_size
        if batch > n_train:
            notes.append(f"batch size {batch} is more than the {n_train} training samples, so each step uses all "
                         f"{n_train} (one step per epoch)")
        names = [g.name for g in self.built.groups]
        notes += list(dict.fromkeys(filter(None, (frozen_gap(names, seg.trainable) for seg in self.segments))))
        return notes

    def _emit_started(self, start_epoch: int) -> None:
        cfg = self.config
        trainable, total = count_trainable(self.built)
        self._emit(RunStarted(self.run_id, time.time(), epochs=cfg.train.epochs, steps_per_epoch=self.steps_per_epoch,
                              start_epoch=start_epoch, num_train=len(self.data.splits.train), num_val=len(self.data.splits.val),
                              classes=tuple(self.data.classes), device=str(self.device),
                              trainable_params=trainable, total_params=total))

    def _retry_with_smaller_batches(self, epoch: int, exc: BaseException) -> tuple[int, dict]:
        """After running out of memory: back to the last checkpoint (this epoch's start, or where a stop
        left it) with half the batch size. Nothing of the failed attempt survives, so the optimizer never
        keeps a step of a broken batch. Returns where the epoch goes on: (step_in_epoch, accum)."""
        cfg = self.config
        old = min(cfg.train.batch_size, len(self.data.splits.train))   # halving a batch larger than the data changes nothing
        state = self.checkpoints.latest(self.run_dir / CHECKPOINT_FILE)
        done = state["step_in_epoch"] * state.get("batch_size", old)   # samples of this epoch already trained
        if state["epoch"] != epoch or (done and batching.sample_lengths(self.train_samples) is not None):
            # No epoch start to go back to, and text batches grouped by length cannot be re-cut mid-epoch.
            raise exc
        # Free what the failed attempt holds before the state is loaded into the model.
        self.optimizer.zero_grad(set_to_none=True)
        self.features = None
        exc.__traceback__ = None   # its frames hold the failed batch's activations
        gc.collect()
        for samples in (self.train_samples, *self.eval_samples.values()):
            if hasattr(samples, "drop_device_copies"):
                samples.drop_device_copies()   # the memory goes to the model; pixels load from the host
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        new = old // 2
        if done % new:
            new = math.gcd(new, done)   # an odd batch size stopped mid-epoch: keep the sample position exact
        step_in_epoch = done // new
        cfg.train.batch_size = new
        self.eval_batch_size = max(1, self.eval_batch_size // 2)
        self.steps_per_epoch = math.ceil(len(self.data.splits.train) / new)

        self._load_net_state(state)
        self.global_step, self.train_seconds = state["global_step"], state["train_seconds"]
        self.history, self.best, self.bad_epochs = state["history"], state["best"], state["bad_epochs"]
        seg_index = segment_for_epoch(self.segments, epoch)
        seg_start = self.segments[seg_index].start_epoch
        fresh = self._starts_segment(epoch, step_in_epoch)
        self._enter_segment(seg_index, optimizer_state=None if fresh else state["optimizer"],
                            scaler_state=None if fresh else state.get("scaler"),
                            schedule_steps=(epoch - seg_start) * self.steps_per_epoch + step_in_epoch)
        _set_rng_state(state["rng"])
        accum = state["accum"]
        # The checkpoint first: a resume after a crash in between trusts the checkpoint's batch size.
        self._save_checkpoint(epoch, step_in_epoch, accum)
        self._write_json(CONFIG_FILE, cfg.to_dict())
        self.store.update_run(self.run_id, config=cfg.to_dict())
        self._emit(Notice(self.run_id, time.time(), message=(
            f"Out of memory at batch size {old}; retrying epoch {epoch + 1} with batch size {new}")))
        self._emit_started(epoch)
        return step_in_epoch, accum

    # ---- segments (freezing stages) -----------------------------------
    def _starts_segment(self, epoch: int, step_in_epoch: int) -> bool:
        """True at a segment's first step, and past the last segment (where an extension's segment will start).
        There a run builds a fresh optimizer and schedule, so a checkpoint there needs no optimizer state
        (and the one it might hold is the previous segment's)."""
        return step_in_epoch == 0 and (epoch >= self.segments[-1].end_epoch
                                       or any(seg.start_epoch == epoch for seg in self.segments))

    def _enter_segment(self, index: int, *, optimizer_state=None, scheduler_state=None, scaler_state=None,
                       schedule_steps: int | None = None) -> None:
        cfg = self.config
        seg = self.segments[index]
        self.seg_index = index
        apply_trainable(self.built, seg.trainable, train_bn=cfg.freeze.train_bn)
        groups = optimizer_param_groups(self.built, seg.trainable, lr=cfg.optim.lr * seg.lr_factor,
                                        lr_decay=cfg.freeze.lr_decay, weight_decay=cfg.optim.weight_decay,
                                        body_lr_factor=cfg.freeze.body_lr_factor)
        self.optimizer = build_optimizer(groups, cfg.optim, device=self.device)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim,
                                         total_steps=(seg.end_epoch - seg.start_epoch) * self.steps_per_epoch,
                                         steps_per_epoch=self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(self.amp))
        if optimizer_state is not None:
            load_optimizer_state(self.optimizer, optimizer_state)
            if scheduler_state is not None:
                self.scheduler.load_state_dict(scheduler_state)
        if scaler_state:
            self.scaler.load_state_dict(scaler_state)
        if schedule_steps:
            # A schedule rebuilt for another number of steps per epoch, moved to where the run is.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)   # "scheduler.step() before optimizer.step()"
                for _ in range(schedule_steps):
                    self.scheduler.step()
        self.trainable_params = [p for p in self.built.net.parameters() if p.requires_grad]
        self.trained_norms = batchnorm.trained_norms(self.built, seg.trainable, train_bn=cfg.freeze.train_bn)
        batchnorm.raise_momentum(self.trained_norms)
        # Cache only groups that never trained, so their outputs are those of the start weights.
        self.cache_cut = segments_cut(self.built, self.segments[:index + 1], cfg)
        self.features = None
        self.cache_pending = self.cache_cut is not None  # computed at first use, after RunStarted is out

    def _ensure_features(self) -> None:
        if self.cache_pending:
            self.cache_pending = False
            self.features = self._backbone_features()

    def _backbone_features(self) -> dict:
        """Frozen-backbone outputs per split (computed once, or read from the runs directory's cache)."""
        cfg = self.config
        if self.cache_cut != len(self.built.groups) - 1:
            return self._prefix_features()
        digest = backbone_digest(self.built)
        features, hits = {}, []
        for split in ("train", "val"):
            dataset = getattr(self.data.splits, split)
            samples = self.train_samples if split == "train" else self._eval_samples(split)
            key = cache_key(cfg, self.built, f"{dataset.fingerprint()}:{digest}", split)
            feats, hit = cached_features(self.built, samples, key=key, cache_root=self.store.root,
                                         batch_size=self.eval_batch_size, device=self.device, amp_dtype=self.amp)
            features[split] = feats.to(self.device)
            hits.append(hit)
        self._emit(Notice(self.run_id, time.time(), message=(
            "frozen backbone: features reused from an earlier run" if all(hits) else
            "frozen backbone: each sample went through it once; epochs now train only the head")))
        return features

    def _prefix_features(self) -> dict | None:
        """Outputs of the frozen groups below cache_cut per split, or None when they would take too much memory."""
        cfg, cut = self.config, self.cache_cut
        digest = prefix_digest(self.built, cut)
        budget = feature_cache.MAX_PREFIX_CACHE_BYTES
        caches, hits = {}, []
        for split in ("train", "val"):
            dataset = getattr(self.data.splits, split)
            samples = self.train_samples if split == "train" else self._eval_samples(split)
            key = cache_key(cfg, self.built, f"{dataset.fingerprint()}:{digest}", split, cut=cut)
            cache, hit = cached_prefix(self.built, samples, cut, key=key, cache_root=self.store.root,
                                       batch_size=self.eval_batch_size, device=self.device, amp_dtype=self.amp,
                                       max_bytes=budget - sum(c.nbytes for c in caches.values()))
            if cache is None:
                self._emit(Notice(self.run_id, time.time(), message=(
                    f"frozen layers not cached: their outputs would take more than "
                    f"{feature_cache.MAX_PREFIX_CACHE_BYTES / 2 ** 20:,.0f} MiB of memory, so every epoch runs them")))
                return None
            caches[split] = cache
            hits.append(hit)
        frozen = ", ".join(g.name for g in self.built.groups[:cut])
        self._emit(Notice(self.run_id, time.time(), message=(
            f"frozen layers ({frozen}): outputs reused from an earlier run" if all(hits) else
            f"frozen layers ({frozen}): each sample went through them once; epochs now run from "
            f"{self.built.groups[cut].name} on")))
        return caches

    def _extend(self, extra: int, start_epoch: int, step_in_epoch: int) -> tuple[int, int]:
        """Append a segment of `extra` epochs that trains what the last segment trained."""
        last = self.segments[-1]
        end = self.config.train.epochs
        self.segments.append(Segment(end, end + extra, last.trainable, last.lr_factor))
        self.config.train.epochs = end + extra
        self.best, self.bad_epochs = {"epoch": -1, "value": None}, 0
        return (end, 0) if start_epoch >= end else (start_epoch, step_in_epoch)

    # ---- one epoch ------------------------------------------------------
    def _train_epoch(self, epoch: int, first_step: int, accum: dict) -> None:
        cfg = self.config
        seg = self.segments[self.seg_index]
        set_train_mode(self.built, seg.trainable, train_bn=cfg.freeze.train_bn)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
        step_in_epoch = first_step
        tick = time.perf_counter()
        for forward, targets in self._batches(epoch, first_step):
            self._check_control(epoch, step_in_epoch, accum)
            with autocast(self.device, self.amp):
                logits = forward()
                loss = criterion(logits.float(), targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.optim.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.trainable_params, cfg.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            lr = head_lr(self.optimizer)
            self.scheduler.step()
            self.global_step += 1
            self.weights_version += 1
            step_in_epoch += 1
            n = len(targets)
            # Loss and hits come back to the host together: one wait for the GPU per step, not one per number.
            step_loss, hits = torch.stack([loss.detach().float(), (logits.argmax(1) == targets).sum().float()]).tolist()
            self.model_epoch = None
            if not math.isfinite(step_loss):
                # NaN weights never recover, and every later step and the saved model would be NaN too.
                raise self._diverged(f"training diverged in epoch {epoch + 1}, step {step_in_epoch}: "
                                     f"the loss became {step_loss}")
            accum["loss_sum"] += step_loss * n
            accum["correct"] += int(hits)
            accum["seen"] += n
            now = time.perf_counter()
            accum["seconds"] += now - tick
            self._emit(BatchEnded(self.run_id, time.time(), epoch=epoch, step=self.global_step, step_in_epoch=step_in_epoch,
                                  loss=step_loss, lr=float(lr), samples_per_second=n / max(now - tick, 1e-9)))
            tick = time.perf_counter()
        self.accum = accum

    def _batches(self, epoch: int, first_step: int):
        """(forward, targets) per step of the epoch, from the feature cache or the data loader.

        Both paths visit the samples in the same (seed, epoch) order.
        """
        cfg = self.config
        net = self.built.net
        self._ensure_features()
        batches = batching.epoch_batches(len(self.train_samples), cfg.train.batch_size, shuffle=True,
                                         seed=cfg.train.seed, epoch=epoch,
                                         lengths=batching.sample_lengths(self.train_samples))[first_step:]
        if self.features is not None:
            feats, targets = self.features["train"], self.train_targets
            cut = self.cache_cut
            for idx in batches:
                if isinstance(feats, feature_cache.PrefixCache):
                    yield (lambda s=feats.batch(idx, self.device): net.forward_from(cut, s)), targets[torch.tensor(idx, device=self.device)]
                    continue
                idx = torch.tensor(idx, device=self.device)
                yield (lambda f=feats[idx]: net.head_logits(f)), targets[idx]
            return
        # Images always cost work per item (decoding or augmenting, or at least gathering and collating
        # pixels); on a GPU, workers do it while the previous step computes. Texts are tokenized already.
        per_item_work = self.built.modality == "image"
        workers = loader_workers(cfg.train.num_workers, self.device, per_item_work=per_item_work)
        forward = self.forward
        for inputs, targets, _ in batching.device_batches(self.built, self.train_samples, batches, self.device,
                                                          num_workers=workers, seed=cfg.train.seed * 100_003 + epoch,
                                                          channels_last=self.channels_last, keep_on_device=True):
            yield (lambda i=inputs: forward(**i)), targets.to(self.device, non_blocking=True)

    def _compile_failed(self, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        self._emit(Notice(self.run_id, time.time(), message=(
            f"torch.compile failed ({type(exc).__name__}: {first}); training goes on with the plain model")))

    def _eval_samples(self, split: str):
        """The split's samples without augmentation, kept for the run (images decoded once)."""
        if split not in self.eval_samples:
            self.eval_samples[split] = batching.sample_set(self.built, getattr(self.data.splits, split),
                                                           decoded=self.config.train.cache_images,
                                                           cache_root=self.store.root)
        return self.eval_samples[split]

    def _end_epoch(self, epoch: int) -> bool:
        """Validate, checkpoint and report; True when early stopping ends the run."""
        cfg = self.config
        accum = self.accum
        self._check_exploding(epoch, accum["loss_sum"] / max(accum["seen"], 1))   # before any work on blown-up weights
        if self._norm_statistics_due(epoch):
            tick = time.perf_counter()
            self._recompute_norm_statistics()
            accum["seconds"] += time.perf_counter() - tick   # part of making the model: training time
        self.train_seconds += accum["seconds"]
        val = self._evaluate("val")
        row = {"epoch": epoch, "train_loss": accum["loss_sum"] / max(accum["seen"], 1),
               "train_accuracy": accum["correct"] / max(accum["seen"], 1), "val_loss": val["loss"],
               "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "seconds": round(accum["seconds"], 3)}
        self.history.append(row)
        self.model_epoch = epoch
        improved = self._track_best(epoch, row)
        patience = cfg.train.early_stopping_patience
        early_stop = patience > 0 and self.bad_epochs >= patience
        self._checkpoint_epoch_end(epoch, last=early_stop or epoch + 1 >= cfg.train.epochs)
        self._emit(EpochEnded(self.run_id, time.time(), epoch=epoch, step=self.global_step, train_loss=row["train_loss"],
                              train_accuracy=row["train_accuracy"], val_loss=row["val_loss"], val_accuracy=row["val_accuracy"],
                              val_macro_f1=row["val_macro_f1"], lr=head_lr(self.optimizer),
                              seconds=accum["seconds"], improved=improved))
        return early_stop

    def _check_exploding(self, epoch: int, train_loss: float) -> None:
        chance = math.log(max(2, len(self.data.classes)))
        if train_loss > DIVERGED_LOSS_FACTOR * chance:
            raise self._diverged(f"training diverged in epoch {epoch + 1}: the training loss rose to {train_loss:,.1f}, "
                                 f"where guessing at random scores {chance:.2f}")

    def _diverged(self, message: str) -> TrainingDiverged:
        # A failed run, not a completed one with a warning: its weights are useless (NaN or far worse than
        # chance), so nothing should offer them for evaluation, trying or export, and training on wastes time.
        lr = self.config.optim.lr
        advice = f"lower the learning rate (optim.lr is {lr:g}; try {lr / 10:g})"
        if self.config.optim.grad_clip <= 0:
            advice += " or limit each step with optim.grad_clip=1"
        return TrainingDiverged(message, advice + ", and start a new run")

    # ---- BatchNorm statistics (batchnorm.py) ---------------------------------
    def _norm_statistics_due(self, epoch: int) -> bool:
        """Exact statistics where a validation decides something: the end of a segment (its weights
        are what the next one starts from, or what the run keeps) and, with early stopping, every
        epoch (any of them may become the kept model)."""
        if not self.trained_norms:
            return False
        # The last segment ends at train.epochs (plan_segments, _extend), so its end is the run's.
        return epoch + 1 >= self.segments[self.seg_index].end_epoch or self.config.train.early_stopping_patience > 0

    def _recompute_norm_statistics(self) -> None:
        if batchnorm.recompute_statistics(self.built.net, self.trained_norms, self._norm_statistics_forwards()):
            self.weights_version += 1   # the eval-mode model changed
        self.norms_version = self.weights_version

    def _norm_statistics_forwards(self):
        """One forward per batch of training samples, as evaluation sees them (no augmentation),
        from the frozen layers' cached outputs where there are some."""
        cfg, net, device = self.config, self.built.net, self.device
        self._ensure_features()
        batches = batchnorm.recompute_batches(len(self.train_samples), cfg.train.batch_size, seed=cfg.train.seed)
        feats = self.features["train"] if self.features is not None else None
        if isinstance(feats, feature_cache.PrefixCache):
            for idx in batches:
                yield partial(_autocast_call, device, self.amp, net.forward_from, self.cache_cut, feats.batch(idx, device))
        elif feats is not None:
            for idx in batches:
                yield partial(_autocast_call, device, self.amp, net.head_logits, feats[torch.tensor(idx, device=device)])
        else:
            samples = self._eval_samples("train") if cfg.augment.enabled else self.train_samples
            for inputs, _, _ in batching.device_batches(self.built, samples, batches, device,
                                                        channels_last=self.channels_last, keep_on_device=True):
                yield partial(_autocast_call, device, self.amp, net, **inputs)

    def _track_best(self, epoch: int, row: dict) -> bool:
        metric = self.config.train.early_stopping_metric
        value = row[metric]
        better = self.best["value"] is None or (value < self.best["value"] if metric == "val_loss" else value > self.best["value"])
        if better:
            self.best = {"epoch": epoch, "value": value}
            self.bad_epochs = 0
            if self.config.train.early_stopping_patience > 0:
                self._save_weights(BEST_FILE)
        else:
            self.bad_epochs += 1
        return better

    def _evaluate(self, split: str, predictions_file: str | None = None) -> dict:
        dataset = getattr(self.data.splits, split)
        reuse = self.last_eval.get(split)
        if reuse is not None and reuse[0] == self.weights_version:
            # The weights have not changed since this split was last evaluated (the last epoch's validation).
            metrics, preds = reuse[1], reuse[2]
            if predictions_file:
                save_predictions(preds, self.run_dir / predictions_file)
            return dict(metrics)
        self._ensure_features()
        if self.features is not None and split in self.features:
            prefix = self.cache_cut != len(self.built.groups) - 1
            preds = predict_features(self.built, self.features[split], dataset, device=self.device,
                                     **({"cut": self.cache_cut, "batch_size": self.eval_batch_size} if prefix else {}))
        else:
            preds = predict_dataset(self.built, dataset, batch_size=self.eval_batch_size,
                                    device=self.device, amp=self.amp is not None, samples=self._eval_samples(split),
                                    keep_on_device=True)
        metrics = compute_metrics(preds.true, preds.pred, self.built.classes)
        losses = preds.losses
        metrics["loss"] = float(np.nanmean(losses)) if len(losses) else float("nan")
        if predictions_file:
            save_predictions(preds, self.run_dir / predictions_file)
        self.last_eval[split] = (self.weights_version, dict(metrics), preds)
        return metrics

    # ---- control, checkpoints, ending --------------------------------------
    def _check_control(self, epoch: int, step_in_epoch: int, accum: dict) -> None:
        if self.control.paused and not self.control.stop_requested:
            self.store.set_status(self.run_id, RunStatus.PAUSED)
            self._write_unwritten_epoch_end()   # a pause may last until the app is closed
            paused_at = time.perf_counter()
            while not self.control.wait_while_paused(0.5):
                pass
            accum["seconds"] -= time.perf_counter() - paused_at  # pauses do not count as training time
            if not self.control.stop_requested:
                self.store.set_status(self.run_id, RunStatus.RUNNING)
        if self.control.stop_requested:
            self.train_seconds += accum["seconds"]
            accum = dict(accum, seconds=0.0)
            self._save_checkpoint(epoch, step_in_epoch, accum)
            raise _Stopped()

    def _checkpoint_epoch_end(self, epoch: int, *, last: bool) -> None:
        """Write the state at an epoch's end when the checkpoint on disk is train.checkpoint_every_s old, and
        always after the last epoch (`extend` and a failed finish resume from it). Writing a large model
        at every short epoch would cost more than the epoch it saves: in between, the state is kept in
        memory, where an out-of-memory retry finds it and a pause or a failure writes it."""
        due = time.monotonic() - self.checkpointed_at >= self.config.train.checkpoint_every_s
        if last or due:
            self._save_checkpoint(epoch + 1, 0, _new_accum())
        else:
            self.checkpoints.keep(self._checkpoint_state(epoch + 1, 0, _new_accum()))
            self.unwritten_epoch_end = True

    def _write_unwritten_epoch_end(self) -> None:
        if self.unwritten_epoch_end:
            self.checkpoints.write_kept(self.run_dir / CHECKPOINT_FILE)
            self.checkpointed_at, self.unwritten_epoch_end = time.monotonic(), False

    def _save_checkpoint(self, epoch: int, step_in_epoch: int, accum: dict) -> None:
        self.checkpoints.save(self.run_dir / CHECKPOINT_FILE, self._checkpoint_state(epoch, step_in_epoch, accum))
        self.checkpointed_at, self.unwritten_epoch_end = time.monotonic(), False

    def _checkpoint_state(self, epoch: int, step_in_epoch: int, accum: dict) -> dict:
        # At a segment's start (the run's end among them) a resume builds a fresh optimizer: leaving its
        # state out makes the last checkpoint of an AdamW run a third of the size.
        fresh = self._starts_segment(epoch, step_in_epoch)
        return {
            "format": 1, "net": self._changeable_state(), "optimizer": None if fresh else self.optimizer.state_dict(),
            "scheduler": None if fresh else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() and not fresh else {},
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": self.global_step,
            "segments": [s.to_dict() for s in self.segments], "accum": dict(accum), "best": dict(self.best),
            "bad_epochs": self.bad_epochs, "history": list(self.history), "train_seconds": self.train_seconds,
            "fingerprint": self.data.fingerprint, "rng": _get_rng_state(),
            "batch_size": self.config.train.batch_size, "eval_batch_size": self.eval_batch_size}

    def _always_frozen(self, segments: list[Segment]) -> set[str]:
        trains = {name for seg in segments for name in seg.trainable}
        return {p for g in self.built.groups if g.name not in trains for p in g.param_names}

    def _changeable_state(self) -> dict:
        """Parameters of every group that trains in some stage, and all buffers. Groups frozen throughout
        never change, and a resumed run rebuilds them from the same source, so checkpoints skip them:
        a head-only run checkpoints kilobytes instead of the whole backbone at every epoch."""
        frozen = self._always_frozen(self.segments)
        return {k: v for k, v in self.built.net.state_dict().items() if k not in frozen}

    def _load_net_state(self, state: dict) -> None:
        missing, unexpected = self.built.net.load_state_dict(state["net"], strict=False)
        self.weights_version += 1
        self.model_epoch = state["epoch"] - 1 if state["step_in_epoch"] == 0 and state["epoch"] > 0 else None
        skipped = self._always_frozen([Segment.from_dict(s) for s in state["segments"]])
        if unexpected or set(missing) - skipped:
            raise RunError("the checkpoint does not match this model; start the run again")

    def _save_weights(self, filename: str) -> None:
        # A full disk must not leave a torn file in place of the last good one.
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.built.net.state_dict().items()}
        with atomic_path(self.run_dir / filename) as tmp:
            save_file(state, str(tmp))

    def _finish(self, status: RunStatus) -> FitResult:
        """Final weights, evaluation and predictions; also used when the user stops a run."""
        if not hasattr(self, "built") or not hasattr(self, "optimizer"):
            return self._fail(RunError("the run stopped before training began; start it again"))
        if self.config.train.early_stopping_patience > 0 and (self.run_dir / BEST_FILE).exists():
            self.built.net.load_state_dict(load_file(str(self.run_dir / BEST_FILE), device=str(self.device)))
            self.weights_version += 1
            self.model_epoch = self.best["epoch"]
            self.norms_version = self.weights_version   # saved right after its epoch's exact statistics
        if self.trained_norms and self.norms_version != self.weights_version:
            self._recompute_norm_statistics()   # stopped inside a segment: the model kept must evaluate right
        self._save_weights(WEIGHTS_FILE)
        metrics = self._final_metrics()
        epochs_done = len(self.history)
        best_epoch = metrics["best_epoch"] if metrics["best_epoch"] is not None else -1
        # The last checkpoint was written while the weights and predictions were: it is on disk
        # (or its error raised) before the run ends.
        self.checkpoints.wait()
        self._emit(RunEnded(self.run_id, time.time(), status=status, epochs_done=epochs_done, best_epoch=best_epoch,
                            metrics=metrics, train_seconds=self.train_seconds))
        return FitResult(self.run_id, status, epochs_done, best_epoch, metrics, self.train_seconds)

    def _final_metrics(self) -> dict:
        val = self._evaluate("val", PREDICTIONS_FILE)
        # The numbers of the model the run gives you, and the best epoch over the whole history (an extension's
        # early stopping looks at its own epochs only, but the run's best is the best of all of them).
        metric = self.config.train.early_stopping_metric
        metrics = {"val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "val_loss": val["loss"],
                   "epochs": len(self.history), "model_epoch": self.model_epoch,
                   **best_fields(best_row(self.history, metric), metric)}
        full = {"val": val}
        if self.data.splits.test is not None and len(self.data.splits.test):
            test = self._evaluate("test", TEST_PREDICTIONS_FILE)
            metrics.update(test_accuracy=test["accuracy"], test_macro_f1=test["macro_f1"], test_loss=test["loss"])
            full["test"] = test
        full["summary"] = metrics
        full["history"] = self.history
        full["hardware"] = self._hardware()
        self._write_json(METRICS_FILE, full)
        return metrics

    def _hardware(self) -> dict:
        """How the run used the machine: what a user compares runs by, and the speed benchmarks read."""
        info = {"device": describe_device(self.device), "precision": precision_name(self.amp),
                "channels_last": self.channels_last, "compiled": bool(self.forward and self.forward.active),
                "batch_size": min(self.config.train.batch_size, len(self.data.splits.train)),   # what a step took
                "train_seconds": round(self.train_seconds, 2)}
        if self.device.type == "cuda":
            info["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return info

    def _fail(self, exc: Exception) -> FitResult:
        try:
            self._write_unwritten_epoch_end()   # a resume goes on from the last finished epoch
            self.checkpoints.wait()   # nothing is left writing once the run is marked failed
        except Exception as write_error:
            log.warning("run %s: the last checkpoint was not written (%s)", self.run_id, write_error)
        message, advice = describe_failure(exc, self.config)
        if not isinstance(exc, TransferError):
            if _is_environment_failure(exc):
                # Message and advice say it all; the traceback goes to log.txt only.
                log.debug("run %s failed", self.run_id, exc_info=exc)
            else:
                log.exception("run %s failed", self.run_id)
            try:
                self._log("".join(traceback.format_exception(exc)))
            except OSError:
                pass
        try:
            self._emit(RunFailed(self.run_id, time.time(), message=message, advice=advice, error_type=type(exc).__name__,
                                 resumable=not isinstance(exc, NOT_RESUMABLE)))
        except Exception:  # the store itself may be what failed (disk full): try the smallest write, then give up
            try:
                self.store.set_status(self.run_id, RunStatus.FAILED, message=message, advice=advice)
            except Exception:   # nothing more can be written; the terminal still learns of the failure
                log.warning("could not record the failure of run %s: %s", self.run_id, message)
        return FitResult(self.run_id, RunStatus.FAILED, len(self.history), self.best["epoch"], {}, self.train_seconds,
                         message=message, advice=advice)

    # ---- plumbing ---------------------------------------------------------
    def _emit(self, event: Event) -> None:
        self.store.record_event(event)
        if not isinstance(event, BatchEnded):
            self._log(json.dumps(event.to_dict(), default=str))
        for observer in self.observers:
            observer(event)

    def _log(self, line: str) -> None:
        with open(self.run_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def _write_json(self, filename: str, obj) -> None:
        write_json(self.run_dir / filename, obj)


def describe_failure(exc: Exception, config: RunConfig) -> tuple[str, str]:
    """One plain message and one piece of advice for any failure."""
    if is_out_of_memory(exc):
        if config.train.batch_size <= 1:
            return ("the device ran out of memory even at batch size 1",
                    "turn on mixed precision, use a smaller image size or max length, freeze more layer groups, "
                    "or pick a smaller model")
        return (f"the device ran out of memory with batch size {config.train.batch_size}",
                "lower train.batch_size, turn on mixed precision, use a smaller image size or freeze more layer groups")
    if isinstance(exc, TransferError):
        return str(exc), getattr(exc, "advice", "")
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return (f"the disk is full{where}",
                "free some disk space and resume the run (its last checkpoint is kept), or choose another runs directory")
    if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
        where = f" {exc.filename}" if exc.filename else " to the runs directory"
        return (f"cannot write{where} ({exc.strerror or exc})",
                "make the runs directory writable and resume the run, or choose another runs directory")
    return f"{type(exc).__name__}: {exc}", "see log.txt in the run folder; if the data is at fault, check the data report"


# Failures of the data or the settings: a resume would run into the same wall, so none is offered.
NOT_RESUMABLE = (DataError, ConfigError, TrainingDiverged)

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


def _is_environment_failure(exc: BaseException) -> bool:
    """Failures of the machine, not of the code: out of memory, a full disk, an unwritable folder."""
    return is_out_of_memory(exc) or (isinstance(exc, OSError) and exc.errno in _DISK_FULL | _UNWRITABLE)


def _autocast_call(device: torch.device, amp, fn: Callable, *args, **kwargs):
    with autocast(device, amp):
        return fn(*args, **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _new_accum() -> dict:
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


def _get_rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
