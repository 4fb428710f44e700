"""Typed, frozen, JSON-serialisable records of what a run does, and its statuses.

Observers receive these from `fit()`; the run store persists them, so the UI,
the CLI and a second browser tab all see the same history.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum


class RunStatus(str, Enum):
    """Where a run is. A str too, so it is stored, compared and shown as its name ("running")."""
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"          # stopped by the user; resumable
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process died while it ran; resumable

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__   # type: ignore[assignment]  # f"{status}" is its name on every Python version

    ACTIVE: tuple[RunStatus, ...]
    RESUMABLE: tuple[RunStatus, ...]
    TERMINAL: tuple[RunStatus, ...]


# Groups of statuses (class attributes set after the class: inside it they would become members).
RunStatus.ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED)
RunStatus.RESUMABLE = (RunStatus.STOPPED, RunStatus.FAILED, RunStatus.INTERRUPTED)
RunStatus.TERMINAL = (RunStatus.STOPPED, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.INTERRUPTED)


@dataclass(frozen=True)
class Event:
    run_id: str
    time: float

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class RunStarted(Event):
    epochs: int
    steps_per_epoch: int
    start_epoch: int            # > 0 when resuming
    num_train: int
    num_val: int
    classes: tuple
    device: str
    trainable_params: int
    total_params: int
    batch_size: int = 0         # what a step trains on (smaller after running out of memory); 0 in older logs


@dataclass(frozen=True)
class BatchEnded(Event):
    epoch: int                  # 0-based
    step: int                   # global optimizer step, 1-based
    step_in_epoch: int          # 1-based
    loss: float
    lr: float
    samples_per_second: float


@dataclass(frozen=True)
class EpochEnded(Event):
    epoch: int                  # 0-based
    step: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    lr: float
    seconds: float
    improved: bool = False
    target_accuracy: float | None = None   # on labelled data of the new domain (adapt.target_val), when given


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should know that is not a failure (a retry, a fallback)."""
    message: str


@dataclass(frozen=True)
class RunEnded(Event):
    status: RunStatus           # completed or stopped
    epochs_done: int
    best_epoch: int
    metrics: dict = field(default_factory=dict)
    train_seconds: float = 0.0


@dataclass(frozen=True)
class RunFailed(Event):
    message: str
    advice: str
    error_type: str
    resumable: bool = True      # False when the data or the settings caused it: a resume would fail the same way


EVENT_TYPES = {cls.__name__: cls for cls in (RunStarted, BatchEnded, EpochEnded, Notice, RunEnded, RunFailed)}


def event_from_dict(data: dict) -> Event:
    """The event a to_dict() gave. Keys it does not know (a store's "seq", fields of a newer version) are
    left out; an unknown kind raises KeyError, a missing field TypeError."""
    cls = EVENT_TYPES[data["kind"]]
    names = {f.name for f in dataclasses.fields(cls)}
    data = {k: v for k, v in data.items() if k in names}
    if "classes" in data:
        data["classes"] = tuple(data["classes"])
    if "status" in data:
        data["status"] = RunStatus(data["status"])
    return cls(**data)
