"""The learning-rate range test, as fastai's lr_find (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017): a short training whose rate grows exponentially at every step from a tiny to a huge value,
recording the loss. The loss first stays flat (the rate is too small to move anything), then falls, then
blows up; a good rate lies on the falling part.

It trains exactly what a run with the same settings trains in its first stage (the freeze preset's groups,
discriminative rates as shares of the head's, the same optimizer, data order, augmentation and frozen-feature
cache), in a throwaway run folder: nothing is added to the runs list and no model is kept. The suggestion is
fastai's default, "valley": the rate a third of the way down (and a sixth further) along the longest stretch
over which the smoothed loss keeps falling.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import RunConfig
from .control import RunControl
from .errors import RunError
from .events import RunStatus
from .freezing import head_lr
from .loop.component import EpochOutcome, LoopComponent
from .loop.startup import check_startable
from .store import RunStore
from .trainer import FitResult, Trainer, _Stopped

START_LR, END_LR, STEPS = 1e-7, 10.0, 100
SMOOTHING = 0.98        # exponential moving average of the loss, bias-corrected (fastai's)
DIVERGED = 4.0          # the test stops once the smoothed loss is this many times its lowest


@dataclass
class RangeTest:
    model: str
    lrs: list[float]         # the head's rate at each step
    losses: list[float]      # each step's training loss
    smoothed: list[float]
    suggested_lr: float | None
    steepest_lr: float | None   # where the smoothed loss falls fastest (a second opinion)
    stopped_by_divergence: bool

    def to_dict(self) -> dict:
        return asdict(self)


class LRRangeTest(LoopComponent):
    """Sets every group's rate before each step (the same shares of the head's as the run would use) and stops
    the loop after `steps` steps or once the loss has blown up."""

    def __init__(self, start_lr: float = START_LR, end_lr: float = END_LR, steps: int = STEPS):
        if not (0 < start_lr < end_lr) or steps < 2:
            raise RunError(f"the range test needs 0 < start rate < end rate and 2 steps or more, not {start_lr:g}, "
                           f"{end_lr:g}, {steps}; e.g. --start-lr 1e-7 --end-lr 10 --steps 100")
        self.start_lr, self.end_lr, self.steps = start_lr, end_lr, steps
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.factors: list[float] = []
        self.average, self.lowest, self.diverged = 0.0, math.inf, False

    def rate(self, step: int) -> float:
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.steps - 1))

    def segment_started(self, loop) -> None:
        head = head_lr(loop.optimizer)
        self.factors = [group["lr"] / head for group in loop.optimizer.param_groups]
        self._set(loop, len(self.lrs))

    def _set(self, loop, step: int) -> None:
        for group, factor in zip(loop.optimizer.param_groups, self.factors):
            group["lr"] = factor * self.rate(step)

    def step_ended(self, loop, *, epoch, step_in_epoch, loss) -> None:
        step = len(self.lrs)
        self.lrs.append(self.rate(step))
        self.losses.append(loss)
        if math.isfinite(loss):
            self.average = SMOOTHING * self.average + (1 - SMOOTHING) * loss
        smoothed = self.average / (1 - SMOOTHING ** (step + 1)) if math.isfinite(loss) else math.inf
        self.smoothed.append(smoothed)
        self.lowest = min(self.lowest, smoothed)
        self.diverged = not math.isfinite(smoothed) or smoothed > DIVERGED * self.lowest
        if self.diverged or step + 1 >= self.steps:
            loop.control.request_stop()
        else:
            self._set(loop, step + 1)


class _RangeTestLoop(Trainer):
    """The training loop with only its inputs and the range test: no validation, checkpoint or saved model."""

    def __init__(self, config: RunConfig, *, store: RunStore, run_id: str, runs_dir: Path, test: LRRangeTest,
                 allowed_roots: list | None):
        super().__init__(config, store=store, run_id=run_id, control=RunControl(), observers=[],
                         allowed_roots=allowed_roots)
        self.runs_root = runs_dir   # its run:<id> models, and frozen features shared with its runs both ways
        self.components = [self.inputs, test]
        self.needs_features = False

    def _epoch(self, epoch, first_step, totals) -> EpochOutcome:
        # No retry with smaller batches (it needs a checkpoint to go back to): out of memory fails the test,
        # with the failure's advice to lower the batch size.
        self._train_epoch(epoch, first_step, totals)
        return self._end_epoch(epoch, totals)

    def _end_epoch(self, epoch, totals) -> EpochOutcome:
        return EpochOutcome()

    def _check_control(self, epoch, step_in_epoch, totals) -> None:
        if self.control.stop_requested:
            raise _Stopped()

    def _finish(self, status: RunStatus) -> FitResult:
        return FitResult(self.run_id, status, 0, -1, {}, self.state.train_seconds)


def range_test_config(cfg: RunConfig) -> RunConfig:
    """The run's settings as the range test trains them: its first stage only, at a rate the test sets."""
    test = cfg.copy()
    test.optim.scheduler = "constant"
    test.train.epochs = 1000               # (the test stops itself)
    test.train.early_stopping_patience = 0
    if test.freeze.preset in ("staged", "gradual"):
        test.freeze.preset = "feature_extraction"   # their first stage trains the head alone
    test.adapt.method, test.adapt.target, test.adapt.target_val = "none", "", ""
    return test.check()


def lr_find(cfg: RunConfig, *, runs_dir: str | Path, start_lr: float = START_LR, end_lr: float = END_LR,
            steps: int = STEPS, allowed_roots: list | None = None) -> RangeTest:
    """Run the range test for the settings of `cfg` as a run in `runs_dir` would train them (with `allowed_roots`,
    the web app's folders, held to them as a run is); raises RunError when it cannot train at all."""
    test = LRRangeTest(start_lr, end_lr, steps)
    settings = check_startable(range_test_config(cfg), runs_dir=runs_dir, allowed_roots=allowed_roots)
    with tempfile.TemporaryDirectory(prefix="lr-find-") as scratch, RunStore(scratch) as store:
        run_id = store.create_run(settings.to_dict(), name="lr-find", modality="", model=settings.model.name,
                                  dataset=settings.data.path)
        loop = _RangeTestLoop(settings, store=store, run_id=run_id, runs_dir=Path(runs_dir), test=test,
                              allowed_roots=allowed_roots)
        result = loop.run(resume=False, extra_epochs=0)
    if result.status == RunStatus.FAILED:
        raise RunError(f"the range test could not train: {result.message}" + (f"; {result.advice}" if result.advice else ""))
    if len(test.lrs) < 2:
        raise RunError("the range test took fewer than 2 steps; give it more training data or more --steps")
    lrs, smoothed = judged(test.lrs, test.smoothed)
    return RangeTest(model=cfg.model.name, lrs=test.lrs, losses=test.losses, smoothed=test.smoothed,
                     suggested_lr=valley(lrs, smoothed), steepest_lr=steepest(lrs, smoothed),
                     stopped_by_divergence=test.diverged)


def judged(lrs: list[float], smoothed: list[float]) -> tuple[list[float], list[float]]:
    """The points the suggestions read, as fastai's: without the first tenth (the average is still settling)
    and the last five (the blow-up), when that leaves enough."""
    start, end = len(lrs) // 10, len(lrs) - 5
    return (lrs[start:end], smoothed[start:end]) if end - start >= 10 else (lrs, smoothed)


def _usable(smoothed: list[float]) -> int:
    """How many points count: up to the last finite one before the blow-up."""
    n = len(smoothed)
    while n and not math.isfinite(smoothed[n - 1]):
        n -= 1
    return n


def valley(lrs: list[float], smoothed: list[float]) -> float | None:
    """fastai's suggestion: along the longest stretch of steps over which the loss keeps falling (a longest
    decreasing subsequence), the rate a third plus a sixth of the way in."""
    n = _usable(smoothed)
    if n < 2 or min(smoothed[:n]) >= smoothed[0]:
        return None   # the loss never fell below where it started: no rate to suggest
    length = [1] * n
    best_start, best_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
            if length[best_end] < length[i]:
                best_end, best_start = i, max(0, i - length[i])
    sections = (best_end - best_start) / 3
    return float(lrs[best_start + int(sections) + int(sections / 2)])


def steepest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest against log(rate)."""
    n = _usable(smoothed)
    if n < 3:
        return None
    slopes = [(smoothed[i + 1] - smoothed[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(n - 1)]
    return float(lrs[min(range(len(slopes)), key=slopes.__getitem__)])
