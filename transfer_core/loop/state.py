"""What happened in a run so far, kept apart from what the user asked for (the RunConfig).

The config stays as given: config.json and the store hold it unchanged. What the run decided on the way
(a smaller batch after running out of memory, more epochs after an extension, the best epoch so far) lives
here; checkpoints hold it, and the store learns the planned epochs and the batch size from RunStarted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..freezing import Segment, segment_for_epoch


@dataclass
class EpochTotals:
    """Running sums over the steps of the epoch in progress (checkpointed, so a resume mid-epoch goes on)."""
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunState:
    segments: list[Segment]           # freezing stages; the last ends at the planned number of epochs
    batch_size: int                   # train.batch_size, halved by each out-of-memory retry
    eval_batch_size: int              # halved with it
    global_step: int = 0
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)   # one row per finished epoch
    best: dict = field(default_factory=lambda: {"epoch": -1, "value": None})
    bad_epochs: int = 0               # epochs since the best one (early stopping)
    model_epoch: int | None = None    # the epoch whose end the weights are at (None: part-way through one)

    @property
    def epochs(self) -> int:
        """The planned number of epochs: train.epochs, plus the epochs of any extension."""
        return self.segments[-1].end_epoch

    def segment_index(self, epoch: int) -> int:
        return segment_for_epoch(self.segments, epoch)

    def starts_segment(self, epoch: int, step_in_epoch: int) -> bool:
        """True at a segment's first step, and past the last segment (where an extension's segment will start).
        There a run builds a fresh optimizer and schedule, so a checkpoint there needs no optimizer state
        (and the one it might hold is the previous segment's)."""
        return step_in_epoch == 0 and (epoch >= self.segments[-1].end_epoch
                                       or any(seg.start_epoch == epoch for seg in self.segments))

    def extend(self, extra: int) -> None:
        """Append a stage of `extra` epochs that trains what the last stage trained; early stopping starts over."""
        last = self.segments[-1]
        self.segments.append(Segment(last.end_epoch, last.end_epoch + extra, last.trainable, last.lr_factor))
        self.best, self.bad_epochs = {"epoch": -1, "value": None}, 0

    def to_checkpoint(self) -> dict:
        # The keys of checkpoint format 1, so checkpoints of earlier versions resume.
        return {"segments": [s.to_dict() for s in self.segments], "global_step": self.global_step,
                "train_seconds": self.train_seconds, "history": list(self.history), "best": dict(self.best),
                "bad_epochs": self.bad_epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}

    @classmethod
    def from_checkpoint(cls, saved: dict, *, batch_size: int, eval_batch_size: int) -> "RunState":
        """`batch_size` and `eval_batch_size`: the run's own, for checkpoints written before a retry could change them."""
        epoch, step_in_epoch = saved["epoch"], saved["step_in_epoch"]
        return cls(segments=[Segment.from_dict(s) for s in saved["segments"]],
                   batch_size=saved.get("batch_size", batch_size),
                   eval_batch_size=saved.get("eval_batch_size", eval_batch_size),
                   global_step=saved["global_step"], train_seconds=saved["train_seconds"], history=saved["history"],
                   best=saved["best"], bad_epochs=saved["bad_epochs"],
                   model_epoch=epoch - 1 if step_in_epoch == 0 and epoch > 0 else None)
