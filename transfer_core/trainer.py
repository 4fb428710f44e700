"""fit(): one synchronous training loop serving the CLI, the app's background thread, tests and benchmarks.

The loop (Trainer) sets a run up, then trains each epoch's steps and ends each epoch with a validation.
Everything else is a component in loop/ that answers the hooks of loop/component.py: divergence checks,
the best epoch and early stopping, exact BatchNorm statistics, the frozen-feature cache, checkpoints.
Out of memory, an epoch is retried with half the batch size (loop/memory_retry.py). The loop emits typed
events (events.py) to the run store and any observers, honours stop/pause at batch boundaries
(control.py), and turns every exception into a failed run with advice (loop/failures.py). What the user
asked for stays in the RunConfig; what happened on the way is the RunState (loop/state.py).
"""
from __future__ import annotations

import logging
import math
import time
import traceback
import warnings
from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np
import torch
from safetensors.torch import save_file

from .atomic import atomic_path
from .checkpoint import load_checkpoint
from .config import RunConfig
from .control import RunControl
from .devices import (
    CompiledForward,
    amp_dtype,
    autocast,
    configure_backends,
    eval_batch_size,
    needs_grad_scaler,
    pick_device,
    use_channels_last,
)
from .errors import DataError, RunError, TransferError
from .evaluate import compute_metrics, save_predictions
from .events import BatchEnded, EpochEnded, RunEnded, RunFailed, RunStarted, RunStatus
from .freezing import (
    Segment,
    apply_trainable,
    count_trainable,
    frozen_gap,
    head_lr,
    optimizer_param_groups,
    plan_segments,
    set_train_mode,
)
from .loop.adaptation import adaptation_components
from .loop.best_epoch import BestEpoch
from .loop.checkpointing import Checkpointing, restore_weights
from .loop.component import EpochOutcome, LoopComponent
from .loop.distributed import DistributedTraining, World, join_world, launched_at
from .loop.divergence import DivergenceGuard
from .loop.failures import NOT_RESUMABLE, describe_failure, is_environment_failure
from .loop.final_metrics import final_metrics
from .loop.inputs import StepInputs
from .loop.memory_retry import MemoryRetry
from .loop.norm_statistics import NormStatistics
from .loop.output import Observer, RunOutput
from .loop.plateau import PlateauSchedule
from .loop.randomness import seed_everything, set_rng_state
from .loop.startup import ResumeRefused, check_resumable, check_startable, max_epochs
from .loop.state import EpochTotals, RunState
from .models import BuiltModel, TextPreprocess, build_model
from .models.registry import replace_head
from .optim import build_optimizer, build_scheduler, load_optimizer_state
from .preparation import PreparedData, prepare_data
from .run_files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CONTROL_FILE,
    DECISION_FILE,
    LABELS_FILE,
    REPORT_FILE,
    WEIGHTS_FILE,
)
from .store import RunStore

# The engine's entry points, for the CLI, the job manager and the pages.
__all__ = ["FitResult", "Observer", "ResumeRefused", "check_resumable", "check_startable", "fit", "max_epochs"]

log = logging.getLogger(__name__)


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
    world_size: int = 1   # processes that trained it (torchrun)

    def summary(self) -> dict:
        """The CLI's JSON: the numbers of the model the run gives you (see summary.py), then its best epoch."""
        m = self.metrics
        return {"run_id": self.run_id, "status": self.status, "epochs": self.epochs_done,
                "train_seconds": round(self.train_seconds, 2), "model_epoch": m.get("model_epoch"),
                "val_accuracy": m.get("val_accuracy"), "val_macro_f1": m.get("val_macro_f1"),
                "val_loss": m.get("val_loss"), "test_accuracy": m.get("test_accuracy"),
                "best_epoch": self.best_epoch, "best_metric": m.get("best_metric"), "best_value": m.get("best_value"),
                "best_val_accuracy": m.get("best_val_accuracy"), "message": self.message,
                "world_size": self.world_size, **{k: m[k] for k in ("target_accuracy", "target_macro_f1") if k in m}}


class _Stopped(Exception):
    """Raised inside the loop when a stop was requested; caught by Trainer.run()."""


def fit(config: RunConfig | None, *, store: RunStore, run_id: str | None = None, control: RunControl | None = None,
        observers: Iterable[Observer] = (), resume: bool = False, extra_epochs: int = 0, name: str | None = None,
        allowed_roots: list | None = None, components: Iterable[LoopComponent] = ()) -> FitResult:
    """Train (or resume) one run to its end. Never raises for problems inside the run: they end it as failed.
    A resume that cannot work raises (RunError) before the run changes. With `allowed_roots` (the web app),
    the data is read only under those folders (see load_dataset). `components` join the loop's own
    (loop/component.py), before the checkpoint. Under torchrun each process calls fit the same way; rank 0
    alone reads and writes the store (loop/distributed.py)."""
    world = join_world()
    try:
        # With a c10d rendezvous, rank 0 may be on a machine whose launcher did not create the run.
        run_id = next((given for given in world.gather(run_id) if given), None)
        if world.is_main:
            config, run_id = _run_to_train(config, store, run_id, resume, extra_epochs, name)
        config, run_id = world.broadcast((config, run_id))
        trainer = Trainer(config, store=store, run_id=run_id, control=control or RunControl(),
                          observers=list(observers) if world.is_main else [], allowed_roots=allowed_roots,
                          components=list(components), world=world)
        return trainer.run(resume=resume, extra_epochs=extra_epochs)
    finally:
        world.leave()


def _run_to_train(config: RunConfig | None, store: RunStore, run_id: str | None, resume: bool, extra_epochs: int,
                  name: str | None) -> tuple[RunConfig, str]:
    """The config and run id of a new run (created in the store) or of the run to resume."""
    if resume:
        if run_id is None:
            raise RunError("resume needs a run id; list runs with `python -m transfer_core runs`")
        config = RunConfig.of_saved_run(check_resumable(store, run_id, extra_epochs).config)
    elif config is None:
        raise RunError("a new run needs a config; give one, or resume=True with the id of a run")
    config.check()
    if run_id is None:
        run_id = store.create_run(config.to_dict(), name=name, modality="", model=config.model.name,
                                  dataset=config.data.path)
    return config, run_id


class Trainer:
    """One run: set it up, then train each epoch's steps and end each epoch with a validation; the
    components (loop/component.py) do the rest at the hooks."""

    # Set while the run sets up (_set_up, _start, enter_segment); `started` says the loop can run.
    data: PreparedData
    built: BuiltModel
    seg_index: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    trainable_params: list[torch.nn.Parameter]

    def __init__(self, config: RunConfig, *, store: RunStore, run_id: str, control: RunControl, observers: list[Observer],
                 allowed_roots: list | None = None, components: Iterable[LoopComponent] = (), world: World | None = None):
        self.config = config            # as the user gave it; never changed by the run
        self.world = world or World()   # the processes training this run together (loop/distributed.py)
        self.device = self.world.device_for(pick_device(config.train.device))
        # What happened so far: the plan and the state of the run, fresh or restored, once _start has the model.
        self.state = RunState([Segment(0, config.train.epochs, ())], batch_size=config.train.batch_size,
                              eval_batch_size=eval_batch_size(config.train.batch_size, self.device))
        self.started = False
        self.allowed_roots = allowed_roots
        self.store = store
        self.run_id = run_id
        self.control = control
        # (other processes may run where the store is not: the folder's path is enough for them)
        self.run_dir = store.run_dir(run_id, resolve=self.world.is_main)
        if self.world.size > 1 and self.world.is_main:   # a distributed run is stopped and paused from outside
            control.watch(self.run_dir / CONTROL_FILE, since=launched_at())
        # The runs folder: run:<id> models are found there, and frozen features and decoded images are kept
        # there between runs.
        self.runs_root = store.root
        self.output = RunOutput(store, run_id, self.run_dir, observers, quiet=not self.world.is_main)
        self.emit, self.notify = self.output.emit, self.output.notify
        self.amp = amp_dtype(self.device, config.train.mixed_precision)
        self.channels_last = False
        self.forward: CompiledForward | None = None
        self.train_net = None   # the net as training steps call it when not built.net itself (DDP: distributed.py)
        self.start_epoch = 0
        self.weights_version = 0   # bumped whenever the weights change, so an unchanged model is not evaluated twice
        self.norms_version = 0     # weights_version at which BatchNorm statistics were last made exact
        self.last_eval: dict[str, tuple] = {}
        self.inputs = StepInputs()
        self.checkpointing = Checkpointing()
        self.memory_retry = MemoryRetry()
        # Their hooks run in this order: the loss is checked before anything works on the weights, the best
        # epoch is restored before the statistics are made exact for the final save, and the checkpoint
        # comes last, so that it records what every other component decided (an early stop among them).
        schedule = [PlateauSchedule()] if config.optim.scheduler == "plateau" else []
        distributed = [DistributedTraining()] if self.world.size > 1 else []
        self.components: list[LoopComponent] = [*distributed, DivergenceGuard(), BestEpoch(), *schedule, NormStatistics(),
                                                 self.inputs,
                                                 *adaptation_components(config), *components, self.checkpointing]
        self.needs_features = any(c.needs_features for c in self.components)
        self.step_features: torch.Tensor | None = None   # this step's head input, when a component needs it
        self.extra_metrics: dict = {}                    # components' numbers for the final metrics

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
        start_epoch, step_in_epoch, totals = self._start(self._set_up(resume), extra_epochs)
        for epoch in range(start_epoch, self.state.epochs):
            if self.state.segment_index(epoch) != self.seg_index:
                self.enter_segment(self.state.segment_index(epoch))
            outcome = self._epoch(epoch, step_in_epoch, totals)
            step_in_epoch, totals = 0, EpochTotals()
            if outcome.stop:
                self.notify(outcome.stop)
                break
        return self._finish(RunStatus.COMPLETED)

    def _epoch(self, epoch: int, first_step: int, totals: EpochTotals) -> EpochOutcome:
        while True:
            try:
                self._train_epoch(epoch, first_step, totals)
                return self._end_epoch(epoch, totals)
            except Exception as exc:   # out of memory: again from the last checkpoint with smaller batches
                first_step, totals = self.memory_retry.recover(self, epoch, exc)

    # ---- setting up ---------------------------------------------------
    def _set_up(self, resume: bool) -> dict | None:
        """Data, model and device; returns the checkpoint a resume goes on from (None: from the start)."""
        cfg = self.config
        self.data = prepare_data(cfg, allowed_roots=self.allowed_roots)
        saved = None
        if resume and self.world.is_main and (self.run_dir / CHECKPOINT_FILE).exists():
            saved = load_checkpoint(self.run_dir / CHECKPOINT_FILE)   # (none written before it ended: from the start)
        saved = self.world.broadcast(saved)
        if saved is not None and saved["fingerprint"] != self.data.fingerprint:
            # A DataError, so the failure is recorded as not resumable: every resume would meet the same data.
            # Checked before any file of the run is rewritten (labels.json would no longer fit its weights).
            raise DataError("the data changed since this run started; start a new run on the new data")
        seed_everything(cfg.train.seed)  # the new head's initial weights depend on it
        self.built = build_model(cfg.model.name, self.data.classes, pretrained=cfg.model.pretrained,
                                 head_dropout=cfg.model.head_dropout, head_hidden=cfg.model.head_hidden,
                                 image_size=cfg.model.image_size, max_length=cfg.model.max_length,
                                 runs_dir=self.runs_root, pooling=cfg.model.pooling,
                                 feature_layer=cfg.model.feature_layer)
        if cfg.model.new_head and self.built.spec.from_run is not None:   # the run's head, though it fits: not wanted
            self.built = replace_head(self.built, self.data.classes, cfg.model.head_dropout, cfg.model.head_hidden)
        if self.built.modality != self.data.modality:
            raise TransferError(f"model {cfg.model.name} is for {self.built.modality}s but the data holds "
                                f"{self.data.modality}s; pick a {self.data.modality} model (see `python -m transfer_core models`)")
        if isinstance(self.built.preprocess, TextPreprocess):
            self.data.refresh_report(self.built.preprocess.tokenizer, cfg.model.max_length)
        self.output.write_json(REPORT_FILE, self.data.report.to_dict())
        self._place_model()
        self.output.update_run(modality=self.data.modality, dataset_fingerprint=self.data.fingerprint)
        self.output.write_json(LABELS_FILE, self.data.classes)
        return saved

    def _place_model(self) -> None:
        net = self.built.net.to(self.device)
        self.channels_last = use_channels_last(net, self.device, self.built.modality)
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        configure_backends(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)   # metrics.json reports this run's peak
        self.forward = CompiledForward(net, enabled=self.config.train.compile, on_fallback=self._compile_failed)

    def _start(self, saved: dict | None, extra_epochs: int) -> tuple[int, int, EpochTotals]:
        """The run's state, fresh or from the checkpoint; returns where training starts (epoch, step, totals)."""
        cfg = self.config
        self.inputs.setup(self)
        eval_batch = eval_batch_size(cfg.train.batch_size, self.device)
        if saved is None:
            segments = plan_segments([g.name for g in self.built.groups], cfg.freeze, cfg.train.epochs)
            self.state = RunState(segments, batch_size=cfg.train.batch_size, eval_batch_size=eval_batch)
            start_epoch, step_in_epoch, totals = 0, 0, EpochTotals()
        else:
            self.state = RunState.from_checkpoint(saved, batch_size=cfg.train.batch_size, eval_batch_size=eval_batch)
            start_epoch, step_in_epoch, totals = saved["epoch"], saved["step_in_epoch"], EpochTotals(**saved["accum"])
            if extra_epochs > 0:
                planned = self.state.epochs
                self.state.extend(extra_epochs)
                if start_epoch >= planned:
                    start_epoch, step_in_epoch = planned, 0
            # (all epochs trained but the run failed while finishing, e.g. on a full disk: it only finishes;
            # a finished run without extra epochs was refused by check_resumable)
            restore_weights(self, saved)
        self.output.write_json(CONFIG_FILE, cfg.to_dict())   # as given (a saved run's older layout, upgraded)
        self.output.update_run(config=cfg.to_dict())

        seg_index = self.state.segment_index(start_epoch)
        if saved is not None and not self.state.starts_segment(start_epoch, step_in_epoch):
            self.enter_segment(seg_index, optimizer_state=saved.get("optimizer"),
                               scheduler_state=saved.get("scheduler"), scaler_state=saved.get("scaler"))
        else:   # a fresh start, or a new segment (an extension among them): as an uninterrupted run enters it
            self.enter_segment(seg_index)
        if saved is not None:
            set_rng_state(saved["rng"])
        self.start_epoch = start_epoch
        self.announce_start(start_epoch)
        for note in [*self.data.notices, *self._settings_notices(), *self._drop_decision()]:
            self.notify(note)
        self.started = True
        for component in self.components:
            component.run_started(self, resumed=saved is not None)
        return start_epoch, step_in_epoch, totals

    def _settings_notices(self) -> list[str]:
        """Settings that run, but not as the user may expect. Told, not changed: config.json keeps what was asked."""
        notes = []
        n_train, batch = len(self.data.splits.train), self.state.batch_size
        if batch > n_train:
            notes.append(f"batch size {batch} is more than the {n_train} training samples, so each step uses all "
                         f"{n_train} (one step per epoch)")
        names = [g.name for g in self.built.groups]
        if self.config.freeze.preset == "gradual" and self.state.epochs < len(names):
            notes.append(f"gradual unfreezing reaches only the top {self.state.epochs} of the {len(names)} layer groups in "
                         f"{self.state.epochs} epochs ({', '.join(names[:len(names) - self.state.epochs])} stay frozen); "
                         f"give {len(names)} epochs or more to train every group")
        notes += list(dict.fromkeys(filter(None, (frozen_gap(names, seg.trainable) for seg in self.state.segments))))
        return notes

    def _drop_decision(self) -> list[str]:
        """A decision threshold (decision.py) was chosen for the weights the run had; training changes them."""
        path = self.run_dir / DECISION_FILE
        if not self.world.is_main or not path.exists():
            return []
        path.unlink()
        return ["the decision threshold chosen for the earlier model no longer applies and was removed; "
                "choose it again once the run has finished (Results page, or `threshold`)"]

    def announce_start(self, start_epoch: int) -> None:
        """RunStarted: at the start, at a resume, and after an out-of-memory retry changed the steps per epoch."""
        trainable, total = count_trainable(self.built)
        self.emit(RunStarted(self.run_id, time.time(), epochs=self.state.epochs, steps_per_epoch=self.steps_per_epoch,
                             start_epoch=start_epoch, num_train=len(self.data.splits.train),
                             num_val=len(self.data.splits.val), classes=tuple(self.data.classes), device=str(self.device),
                             trainable_params=trainable, total_params=total, batch_size=self.state.batch_size))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.splits.train) / self.state.batch_size)

    # ---- segments (freezing stages) -----------------------------------
    @property
    def segment(self):
        return self.state.segments[self.seg_index]

    def enter_segment(self, index: int, *, optimizer_state=None, scheduler_state=None, scaler_state=None,
                      schedule_steps: int | None = None) -> None:
        """Make a freezing stage's groups trainable, with a new optimizer and schedule (or the checkpoint's)."""
        cfg = self.config
        self.seg_index = index
        seg = self.segment
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
        for component in self.components:
            component.segment_started(self)

    # ---- one epoch ------------------------------------------------------
    def _train_epoch(self, epoch: int, first_step: int, totals: EpochTotals) -> None:
        cfg = self.config
        set_train_mode(self.built, self.segment.trainable, train_bn=cfg.freeze.train_bn)
        criterion = torch.nn.CrossEntropyLoss(weight=self.inputs.loss_weight, label_smoothing=cfg.optim.label_smoothing)
        step_in_epoch = first_step
        tick = time.perf_counter()
        for forward, targets in self.inputs.train_batches(self, epoch, first_step):
            self._check_control(epoch, step_in_epoch, totals)
            with autocast(self.device, self.amp):
                if self.needs_features:
                    self.step_features, logits = forward()
                    logits = logits[:len(targets)]   # rows a component added (extend_batch) have no label
                else:
                    logits = forward()
                loss = criterion(logits.float(), targets)
                for component in self.components:
                    extra = component.extra_loss(self, logits, targets)
                    if extra is not None:
                        loss = loss + extra
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.optim.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.trainable_params, cfg.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            lr = head_lr(self.optimizer)
            self.scheduler.step()
            self.state.global_step += 1
            self.weights_changed()
            step_in_epoch += 1
            # Loss and hits come back to the host together: one wait for the GPU per step, not one per number.
            step_loss, hits = torch.stack([loss.detach().float(), (logits.argmax(1) == targets).sum().float()]).tolist()
            step_loss, hits, n = self.world.step_numbers(step_loss, hits, len(targets))   # over all the processes
            self.state.model_epoch = None
            for component in self.components:
                component.step_ended(self, epoch=epoch, step_in_epoch=step_in_epoch, loss=step_loss)
            totals.loss_sum += step_loss * n
            totals.correct += int(hits)
            totals.seen += n
            now = time.perf_counter()
            totals.seconds += now - tick
            self.emit(BatchEnded(self.run_id, time.time(), epoch=epoch, step=self.state.global_step,
                                 step_in_epoch=step_in_epoch, loss=step_loss, lr=float(lr),
                                 samples_per_second=n / max(now - tick, 1e-9)))
            tick = time.perf_counter()

    def _end_epoch(self, epoch: int, totals: EpochTotals) -> EpochOutcome:
        """Validate, let the components judge the epoch (best, early stopping, checkpoint), report it."""
        for component in self.components:
            component.epoch_trained(self, epoch, totals)
        self.state.train_seconds += totals.seconds
        # Rank 0's numbers for every process: BatchNorm running statistics (and GPU kernels) may differ a
        # little between processes, and each epoch must be judged the same everywhere.
        val = self.world.broadcast(self.evaluate("val"))
        row = {"epoch": epoch, "train_loss": totals.mean_loss, "train_accuracy": totals.accuracy,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
               "seconds": round(totals.seconds, 3)}
        self.state.history.append(row)
        self.state.model_epoch = epoch
        outcome = EpochOutcome()
        for component in self.components:
            component.epoch_ended(self, row, outcome)
        self.emit(EpochEnded(self.run_id, time.time(), epoch=epoch, step=self.state.global_step,
                             train_loss=row["train_loss"], train_accuracy=row["train_accuracy"], val_loss=row["val_loss"],
                             val_accuracy=row["val_accuracy"], val_macro_f1=row["val_macro_f1"],
                             lr=head_lr(self.optimizer), seconds=totals.seconds, improved=outcome.improved,
                             target_accuracy=row.get("target_accuracy")))
        return outcome

    def _requests(self) -> tuple[bool, bool]:
        """(stop, pause) as asked of any of the run's processes, so that all of them act at the same step."""
        return self.world.agree(self.control.stop_requested, self.control.paused)

    def _check_control(self, epoch: int, step_in_epoch: int, totals: EpochTotals) -> None:
        stop, pause = self._requests()
        if pause and not stop:
            self.output.set_status(RunStatus.PAUSED)
            for component in self.components:
                component.paused(self)
            paused_at = time.perf_counter()
            while pause and not stop:
                self.control.wait_while_paused(0.5)
                stop, pause = self._requests()
            totals.seconds -= time.perf_counter() - paused_at  # pauses do not count as training time
            if not stop:
                self.output.set_status(RunStatus.RUNNING)
        if stop:
            self.state.train_seconds += totals.seconds
            self.checkpointing.save(self, epoch, step_in_epoch, replace(totals, seconds=0.0))
            raise _Stopped()

    # ---- the weights ----------------------------------------------------
    def weights_changed(self) -> None:
        self.weights_version += 1

    def mark_norms_exact(self) -> None:
        """The BatchNorm statistics fit the weights as they are now."""
        self.norms_version = self.weights_version

    @property
    def norms_exact(self) -> bool:
        return self.norms_version == self.weights_version

    def load_weights(self, weights: dict) -> None:
        self.built.net.load_state_dict(weights)
        self.weights_changed()

    def restore(self, state: RunState, saved: dict) -> None:
        """Go back to a checkpoint: its state and its weights."""
        self.state = state
        restore_weights(self, saved)

    def save_weights(self, filename: str) -> None:
        if not self.world.is_main:   # (every process holds the same weights)
            return
        # A full disk must not leave a torn file in place of the last good one.
        weights = {k: v.detach().to("cpu").contiguous() for k, v in self.built.net.state_dict().items()}
        with atomic_path(self.run_dir / filename) as tmp:
            save_file(weights, str(tmp))

    def evaluate(self, split: str, predictions_file: str | None = None) -> dict:
        reuse = self.last_eval.get(split)
        if reuse is not None and reuse[0] == self.weights_version:
            # The weights have not changed since this split was last evaluated (the last epoch's validation).
            metrics, preds = reuse[1], reuse[2]
        else:
            preds = self.inputs.predictions(self, split)
            metrics = compute_metrics(preds.true, preds.pred, self.built.classes)
            metrics["loss"] = float(np.nanmean(preds.losses)) if len(preds.losses) else float("nan")
            self.last_eval[split] = (self.weights_version, dict(metrics), preds)
        if predictions_file and self.world.is_main:
            save_predictions(preds, self.run_dir / predictions_file)
        return dict(metrics)

    # ---- ending -----------------------------------------------------------
    def _finish(self, status: RunStatus) -> FitResult:
        """Final weights, evaluation and predictions; also used when the user stops a run."""
        if not self.started:
            return self._fail(RunError("the run stopped before training began; start it again"))
        for component in self.components:
            component.finishing(self)
        self.save_weights(WEIGHTS_FILE)
        metrics = final_metrics(self)
        for component in self.components:
            component.finished(self)
        state = self.state
        best_epoch = metrics["best_epoch"] if metrics["best_epoch"] is not None else -1
        self.emit(RunEnded(self.run_id, time.time(), status=status, epochs_done=len(state.history), best_epoch=best_epoch,
                           metrics=metrics, train_seconds=state.train_seconds))
        return FitResult(self.run_id, status, len(state.history), best_epoch, metrics, state.train_seconds,
                         world_size=self.world.size)

    def _fail(self, exc: Exception) -> FitResult:
        for component in self.components:
            component.failed(self, exc)
        state = self.state
        message, advice = describe_failure(exc, state.batch_size)
        if not isinstance(exc, TransferError):
            if is_environment_failure(exc):
                # Message and advice say it all; the traceback goes to log.txt only.
                log.debug("run %s failed", self.run_id, exc_info=exc)
            else:
                log.exception("run %s failed", self.run_id)
            try:
                self.output.log("".join(traceback.format_exception(exc)))
            except OSError:
                pass
        try:
            self.emit(RunFailed(self.run_id, time.time(), message=message, advice=advice, error_type=type(exc).__name__,
                                resumable=not isinstance(exc, NOT_RESUMABLE)))
        except Exception:  # the store itself may be what failed (disk full): try the smallest write, then give up
            try:
                self.output.set_status(RunStatus.FAILED, message=message, advice=advice)
            except Exception:   # nothing more can be written; the terminal still learns of the failure
                log.warning("could not record the failure of run %s: %s", self.run_id, message)
        return FitResult(self.run_id, RunStatus.FAILED, len(state.history), state.best["epoch"], {}, state.train_seconds,
                         message=message, advice=advice, world_size=self.world.size)

    # ---- plumbing ---------------------------------------------------------
    def _compile_failed(self, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        self.notify(f"torch.compile failed ({type(exc).__name__}: {first}); training goes on with the plain model")
