"""The reduce-on-plateau schedule: the learning rates drop by optim.gamma when the metric that ranks the
epochs (train.early_stopping_metric) has not improved for optim.plateau_patience epochs.

torch's ReduceLROnPlateau does the bookkeeping; it steps at epoch ends, after validation, so it is a loop
component rather than the per-step schedule (which is a no-op for this choice, see optim.build_scheduler).
Like every schedule it covers one stage of the run: a new stage starts at its full rate.
"""
from __future__ import annotations

from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..freezing import head_lr
from .component import LoopComponent


class PlateauSchedule(LoopComponent):
    def __init__(self):
        self.scheduler: ReduceLROnPlateau | None = None
        self.segment = -1
        self.restored: dict | None = None   # a checkpoint's state, applied when its stage is entered again

    def segment_started(self, loop) -> None:
        cfg = loop.config
        metric = cfg.train.early_stopping_metric
        self.segment = loop.seg_index
        self.scheduler = ReduceLROnPlateau(loop.optimizer, mode="min" if metric == "val_loss" else "max",
                                           factor=cfg.optim.gamma, patience=cfg.optim.plateau_patience)
        if self.restored is not None and self.restored["segment"] == self.segment:
            self.scheduler.load_state_dict(self.restored["scheduler"])
        self.restored = None

    def epoch_ended(self, loop, row, outcome) -> None:
        assert self.scheduler is not None
        metric = loop.config.train.early_stopping_metric
        before = head_lr(loop.optimizer)
        self.scheduler.step(row[metric])
        after = head_lr(loop.optimizer)
        if after < before and not outcome.stop and row["epoch"] + 1 < loop.segment.end_epoch:
            loop.notify(f"{metric} has not improved for {loop.config.optim.plateau_patience + 1} epochs: the learning "
                        f"rate drops from {before:.3g} to {after:.3g}")

    def state_dict(self) -> dict:
        if self.scheduler is None:
            return {}
        return {"segment": self.segment, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.restored = state
