"""Checkpoints: what a resume, an out-of-memory retry and a failed run go back to.

A checkpoint is written at an epoch end once a minute (train.checkpoint_every_s), after the last epoch, and
on stop, pause and failure; in between, the latest epoch end is kept in memory (checkpoint.CheckpointWriter).
Its contents are checkpoint format 1: the changeable weights, the optimizer, the schedule, the run's state
(state.RunState), the epoch's running totals, the data's fingerprint and the random generators.
"""
from __future__ import annotations

import logging
import time

from ..checkpoint import CheckpointWriter
from ..errors import RunError
from ..freezing import Segment
from ..run_files import CHECKPOINT_FILE
from .component import LoopComponent
from .randomness import get_rng_state
from .state import EpochTotals

log = logging.getLogger(__name__)


class Checkpointing(LoopComponent):
    def __init__(self):
        self.writer = CheckpointWriter()
        self.written_at = time.monotonic()   # when the checkpoint on disk was written (or training began)
        self.unwritten_epoch_end = False     # an epoch end held in memory only

    # Only rank 0 of a distributed run keeps and writes checkpoints (every process holds the same state).
    def run_started(self, loop, *, resumed: bool) -> None:
        if not resumed and loop.world.is_main:
            # Something for an out-of-memory retry in the first epoch to go back to. In memory only:
            # writing it would cost a full save, and a run that dies before its first checkpoint
            # resumes from the beginning, which is this same state.
            self.writer.keep(self.snapshot(loop, loop.start_epoch, 0, EpochTotals()))
        self.written_at = time.monotonic()

    def epoch_ended(self, loop, row, outcome) -> None:
        """Write the state at an epoch's end when the checkpoint on disk is train.checkpoint_every_s old, and
        always after the last epoch (`extend` and a failed finish resume from it). Writing a large model
        at every short epoch would cost more than the epoch it saves: in between, the state is kept in
        memory, where an out-of-memory retry finds it and a pause or a failure writes it."""
        if not loop.world.is_main:
            return
        epoch = row["epoch"]
        last = bool(outcome.stop) or epoch + 1 >= loop.state.epochs
        if last or time.monotonic() - self.written_at >= loop.config.train.checkpoint_every_s:
            self.save(loop, epoch + 1, 0, EpochTotals())
        else:
            self.writer.keep(self.snapshot(loop, epoch + 1, 0, EpochTotals()))
            self.unwritten_epoch_end = True

    def paused(self, loop) -> None:
        self._write_unwritten(loop)   # a pause may last until the app is closed

    def finished(self, loop) -> None:
        # The last checkpoint was written while the weights and predictions were: it is on disk
        # (or its error raised) before the run ends.
        self.writer.wait()

    def failed(self, loop, exc) -> None:
        try:
            self._write_unwritten(loop)   # a resume goes on from the last finished epoch
            self.writer.wait()            # nothing is left writing once the run is marked failed
        except Exception as write_error:   # the failure being reported may be this very disk
            log.warning("run %s: the last checkpoint was not written (%s)", loop.run_id, write_error)

    def save(self, loop, epoch: int, step_in_epoch: int, totals: EpochTotals) -> None:
        if not loop.world.is_main:
            return
        self.writer.save(loop.run_dir / CHECKPOINT_FILE, self.snapshot(loop, epoch, step_in_epoch, totals))
        self.written_at, self.unwritten_epoch_end = time.monotonic(), False

    def latest(self, loop) -> dict:
        """The newest checkpoint, kept in memory or on disk."""
        return self.writer.latest(loop.run_dir / CHECKPOINT_FILE)

    def _write_unwritten(self, loop) -> None:
        if self.unwritten_epoch_end:
            self.writer.write_kept(loop.run_dir / CHECKPOINT_FILE)
            self.written_at, self.unwritten_epoch_end = time.monotonic(), False

    def snapshot(self, loop, epoch: int, step_in_epoch: int, totals: EpochTotals) -> dict:
        # At a segment's start (the run's end among them) a resume builds a fresh optimizer: leaving its
        # state out makes the last checkpoint of an AdamW run a third of the size.
        fresh = loop.state.starts_segment(epoch, step_in_epoch)
        states = {type(c).__name__: state for c in loop.components if (state := c.state_dict())}
        return {"format": 1, "net": changeable_weights(loop),
                "optimizer": None if fresh else loop.optimizer.state_dict(),
                "scheduler": None if fresh else loop.scheduler.state_dict(),
                "scaler": loop.scaler.state_dict() if loop.scaler.is_enabled() and not fresh else {},
                "epoch": epoch, "step_in_epoch": step_in_epoch, "accum": totals.to_dict(),
                **loop.state.to_checkpoint(), "fingerprint": loop.data.fingerprint, "rng": get_rng_state(),
                **({"components": states} if states else {})}


def always_frozen(built, segments: list[Segment]) -> set[str]:
    """Parameters of the groups that train in no stage."""
    trains = {name for seg in segments for name in seg.trainable}
    return {p for g in built.groups if g.name not in trains for p in g.param_names}


def changeable_weights(loop) -> dict:
    """Parameters of every group that trains in some stage, and all buffers. Groups frozen throughout
    never change, and a resumed run rebuilds them from the same source, so checkpoints skip them:
    a head-only run checkpoints kilobytes instead of the whole backbone at every epoch."""
    frozen = always_frozen(loop.built, loop.state.segments)
    return {k: v for k, v in loop.built.net.state_dict().items() if k not in frozen}


def restore_weights(loop, saved: dict) -> None:
    """Load a checkpoint's weights into the model (the groups it skipped are the model's own already), and
    the components' own state."""
    missing, unexpected = loop.built.net.load_state_dict(saved["net"], strict=False)
    loop.weights_changed()
    skipped = always_frozen(loop.built, [Segment.from_dict(s) for s in saved["segments"]])
    if unexpected or set(missing) - skipped:
        raise RunError("the checkpoint does not match this model; start the run again")
    states = saved.get("components", {})
    for component in loop.components:
        if type(component).__name__ in states:
            component.load_state_dict(states[type(component).__name__])
