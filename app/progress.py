"""What the live view says about a run: where it is, how fast it goes, and whether it overfits.

Everything is computed from what the run store holds (record, events, metrics), so a reloaded
page, a second tab and a run started from the CLI all show the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from transfer_core.events import RunStatus

RATE_WINDOW = 20   # recent steps used for the speed and time-left estimates


@dataclass
class Progress:
    epochs: int = 0
    epoch: int = 0               # 1-based epoch being trained (or last one trained)
    steps_per_epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0                # global step
    fraction: float = 0.0
    samples_per_second: float | None = None
    seconds_left: float | None = None
    phase: str = ""
    started: bool = False

    def text(self) -> str:
        from .ui import fmt_duration
        if not self.started:
            return self.phase or "Waiting to start..."
        parts = [f"Epoch {self.epoch}/{self.epochs}", f"step {self.step_in_epoch}/{self.steps_per_epoch}"]
        if self.samples_per_second:
            parts.append(f"{self.samples_per_second:,.0f} samples/s")
        if self.seconds_left is not None:
            parts.append(f"about {fmt_duration(self.seconds_left)} left")
        if self.phase:
            parts.append(self.phase)
        return " · ".join(parts)


def last_started(events: list[dict]) -> dict | None:
    started = [e for e in events if e.get("kind") == "RunStarted"]
    return started[-1] if started else None


def progress(record, events: list[dict], steps: pd.DataFrame, epochs: pd.DataFrame) -> Progress:
    start = last_started(events)
    if start is None:
        phase = "Queued: waiting for the run before it to finish." if record.status == RunStatus.QUEUED else \
            "Loading the data and the model..."
        return Progress(phase=phase)
    total_epochs = int(start["epochs"])
    spe = max(1, int(start["steps_per_epoch"]))
    done_epochs = int(epochs["epoch"].max()) + 1 if len(epochs) else int(start.get("start_epoch", 0))
    p = Progress(epochs=total_epochs, steps_per_epoch=spe, started=True)
    if len(steps):
        last = steps.iloc[-1]
        p.step = int(last["step"])
        p.epoch = int(last["epoch"]) + 1
        p.step_in_epoch = p.step - int(last["epoch"]) * spe
        if p.step_in_epoch <= 0 or p.step_in_epoch > spe:   # resumed runs with another segment layout
            p.step_in_epoch = min(spe, max(1, p.step % spe or spe))
        recent = steps.tail(RATE_WINDOW)
        rate = recent["samples_per_second"].dropna()
        p.samples_per_second = float(rate.median()) if len(rate) else None
    else:
        p.epoch = done_epochs + 1 if done_epochs < total_epochs else total_epochs
        frozen = int(start.get("trainable_params") or 0) < int(start.get("total_params") or 0)
        p.phase = ("First pass through the frozen layers (computed once, then every epoch is fast)..." if frozen
                   else "Running the first training steps...")
    if done_epochs >= p.epoch:       # the epoch's steps are done and it has been validated
        p.step_in_epoch = spe
    total_steps = total_epochs * spe
    p.fraction = min(1.0, max(0.0, ((p.epoch - 1) * spe + p.step_in_epoch) / total_steps)) if p.epoch else 0.0
    if record.status in (RunStatus.COMPLETED,):
        p.fraction = 1.0
    p.seconds_left = seconds_left(steps, total_steps, spe) if record.status == RunStatus.RUNNING else None
    if record.status == RunStatus.PAUSED:
        p.phase = "paused"
    return p


def live_snapshot(store, run_id: str, max_step_points: int):
    """What the live view reads from the run store on every refresh, and the progress made of it:
    (record, events, steps, epochs, progress)."""
    record = store.get_run(run_id)
    events = store.events(run_id)
    steps = store.metrics(run_id, "step", max_points=max_step_points)
    epochs = store.metrics(run_id, "epoch")
    return record, events, steps, epochs, progress(record, events, steps, epochs)


def seconds_left(steps: pd.DataFrame, total_steps: int, steps_per_epoch: int) -> float | None:
    """Remaining steps at the recent pace (wall-clock time between recent steps)."""
    if len(steps) < 3:
        return None
    recent = steps.tail(RATE_WINDOW)
    span = float(recent["time"].iloc[-1] - recent["time"].iloc[0])
    count = int(recent["step"].iloc[-1] - recent["step"].iloc[0])
    if span <= 0 or count <= 0:
        return None
    remaining = max(0, total_steps - int(steps["step"].iloc[-1]))
    return remaining * span / count


def overfitting(epochs: pd.DataFrame) -> bool:
    """Validation loss went up in the last epoch, above its best earlier value, while training loss went down."""
    frame = epochs.dropna(subset=["train_loss", "val_loss"])
    if len(frame) < 3:
        return False
    val, train = frame["val_loss"].tolist(), frame["train_loss"].tolist()
    return val[-1] > val[-2] and val[-1] > min(val[:-1]) * 1.01 and train[-1] < train[-2]


OVERFITTING_TEXT = (
    "**The model may be starting to overfit.** Validation loss is rising while training loss keeps falling: "
    "the model is memorising the training examples instead of learning what generalises. "
    "Stop here (the best epoch's numbers are kept in the run's summary), or next time use fewer epochs, "
    "a lower learning rate, more data, augmentation, or early stopping (Advanced settings)."
)
