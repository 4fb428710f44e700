"""What the live view says about a run: where it is, how fast it goes, and whether it overfits.

Everything is computed from what the run store holds (record, events, metrics), so a reloaded
page, a second tab and a run started from the CLI all show the same.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from transfer_core.events import Event, RunStarted, RunStatus

RATE_WINDOW = 20   # recent steps used for the pace and time-left estimates


@dataclass
class Progress:
    epochs: int = 0
    epoch: int = 0               # 1-based epoch being trained (or last one trained)
    steps_per_epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0                # global step
    fraction: float = 0.0
    seconds_per_epoch: float | None = None
    seconds_left: float | None = None
    phase: str = ""
    started: bool = False

    def text(self) -> str:
        from .ui import fmt_duration
        if not self.started:
            return self.phase or "Waiting to start..."
        parts = [f"Epoch {self.epoch}/{self.epochs}", f"step {self.step_in_epoch}/{self.steps_per_epoch}"]
        if self.seconds_per_epoch:
            parts.append(fmt_pace(self.seconds_per_epoch))
        if self.seconds_left is not None:
            parts.append(f"about {fmt_duration(self.seconds_left)} left")
        if self.phase:
            parts.append(self.phase)
        return " · ".join(parts)


def fmt_pace(seconds_per_epoch: float) -> str:
    """The pace in epochs, which a user can relate to the Epochs setting. Samples per second is not:
    with cached frozen features it reads as tens of thousands, counting only the head's work."""
    from .ui import fmt_duration
    if seconds_per_epoch >= 1:
        return f"{fmt_duration(seconds_per_epoch)} per epoch"
    return f"{1 / seconds_per_epoch:,.0f} epochs per second"


def last_started(events: list[Event]) -> RunStarted | None:
    started = [e for e in events if isinstance(e, RunStarted)]
    return started[-1] if started else None


def attempt_steps(steps: pd.DataFrame, events: list[Event]) -> pd.DataFrame:
    """The steps logged since the run last started. After a resume or an extension the steps of the
    earlier attempt stay in the store; a pace measured across the pause between them (minutes or
    days) would say nothing about the speed now."""
    start = last_started(events)
    if start is None or not len(steps) or "time" not in steps:
        return steps
    return steps[steps["time"] >= start.time]


def progress(record, events: list[Event], steps: pd.DataFrame, epochs: pd.DataFrame,
             runs_ahead: int | None = None) -> Progress:
    """runs_ahead: how many runs train or wait before this one (None where unknown)."""
    start = last_started(events)
    if record.status == RunStatus.QUEUED and runs_ahead:
        waiting = f"Queued: waiting for {runs_ahead} run{'s' if runs_ahead > 1 else ''} before it to finish."
    else:   # a run the worker has picked up stays queued in the store while it loads
        waiting = "Loading the data and the model..."
    if start is None:
        return Progress(phase=waiting)
    total_epochs = start.epochs
    spe = max(1, start.steps_per_epoch)
    done_epochs = int(epochs["epoch"].max()) + 1 if len(epochs) else start.start_epoch
    p = Progress(epochs=total_epochs, steps_per_epoch=spe, started=True)
    if len(steps):
        last = steps.iloc[-1]
        p.step = int(last["step"])
        p.epoch = int(last["epoch"]) + 1
        p.step_in_epoch = p.step - int(last["epoch"]) * spe
        if p.step_in_epoch <= 0 or p.step_in_epoch > spe:   # resumed runs with another segment layout
            p.step_in_epoch = min(spe, max(1, p.step % spe or spe))
    else:
        p.epoch = done_epochs + 1 if done_epochs < total_epochs else total_epochs
        frozen = start.trainable_params < start.total_params
        p.phase = ("First pass through the frozen layers (computed once, then every epoch is fast)..." if frozen
                   else "Running the first training steps...")
    if done_epochs >= p.epoch:       # the epoch's steps are done and it has been validated
        p.step_in_epoch = spe
    total_steps = total_epochs * spe
    p.fraction = min(1.0, max(0.0, ((p.epoch - 1) * spe + p.step_in_epoch) / total_steps)) if p.epoch else 0.0
    if record.status in (RunStatus.COMPLETED,):
        p.fraction = 1.0
    if record.status == RunStatus.RUNNING:
        current = attempt_steps(steps, events)
        pace = seconds_per_step(current)
        p.seconds_per_epoch = pace * spe if pace else None
        p.seconds_left = seconds_left(current, total_steps, spe) if len(steps) else None
    if record.status == RunStatus.PAUSED:
        p.phase = "paused"
    elif record.status == RunStatus.QUEUED:   # resumed or extended, not started again yet
        p.phase = waiting
    return p


def training_seconds(record, events: list[Event], epochs: pd.DataFrame, now: float | None = None) -> float | None:
    """Seconds spent training the run, which is what a user means by its time: not the wall clock since
    it was created, which counts its time in the queue and, after an extension, every minute (or day)
    between the first finish and the extra epochs. Ended runs report the trainer's own count; while one
    trains, the finished epochs' time plus the time since the current epoch began."""
    best = record.best_metrics or {}
    if not record.is_active and isinstance(best.get("train_seconds"), (int, float)):
        return float(best["train_seconds"])
    done = float(epochs["seconds"].fillna(0).sum()) if len(epochs) and "seconds" in epochs else 0.0
    start = last_started(events)
    if start is None or record.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
        return done if len(epochs) else None
    since = start.time
    if len(epochs) and "time" in epochs:
        since = max(since, float(epochs["time"].max()))
    end = record.updated if record.status == RunStatus.PAUSED else (time.time() if now is None else now)
    return done + max(0.0, end - since)


def live_snapshot(store, run_id: str, max_step_points: int, runs_ahead: int | None = None):
    """What the live view reads from the run store on every refresh, and the progress made of it:
    (record, events, steps, epochs, progress)."""
    record = store.get_run(run_id)
    events = store.events(run_id)
    steps = store.metrics(run_id, "step", max_points=max_step_points)
    epochs = store.metrics(run_id, "epoch")
    return record, events, steps, epochs, progress(record, events, steps, epochs, runs_ahead)


def seconds_per_step(steps: pd.DataFrame) -> float | None:
    """Wall-clock seconds per step over the recent steps (so validation between epochs counts too)."""
    if len(steps) < 3:
        return None
    recent = steps.tail(RATE_WINDOW)
    span = float(recent["time"].iloc[-1] - recent["time"].iloc[0])
    count = int(recent["step"].iloc[-1] - recent["step"].iloc[0])
    if span <= 0 or count <= 0:
        return None
    return span / count


def seconds_left(steps: pd.DataFrame, total_steps: int, steps_per_epoch: int) -> float | None:
    """Remaining steps at the recent pace; `steps` should be the current attempt's (attempt_steps)."""
    pace = seconds_per_step(steps)
    if pace is None:
        return None
    remaining = max(0, total_steps - int(steps["step"].iloc[-1]))
    return remaining * pace


