"""Out of memory: go back to the last checkpoint and go on with half the batch size."""
from __future__ import annotations

import gc
import math

import torch

from ..devices import is_out_of_memory
from .randomness import set_rng_state
from .state import EpochTotals, RunState


class MemoryRetry:
    """Recovers an epoch that ran out of device memory. Nothing of the failed attempt survives: the weights,
    optimizer, schedule, state and random generators come back from the last checkpoint (this epoch's start,
    or where a stop left it), so the optimizer never keeps a step of a broken batch. The config keeps the
    batch size the user asked for; the run's state and its RunStarted event carry the smaller one."""

    def recover(self, loop, epoch: int, exc: BaseException) -> tuple[int, EpochTotals]:
        """Where the epoch goes on: (step_in_epoch, totals). Raises `exc` when it cannot be retried."""
        if not is_out_of_memory(exc) or loop.state.batch_size <= 1 or loop.world.size > 1:
            raise exc   # (the processes of a distributed run would have to agree on it: it fails with advice)
        old = min(loop.state.batch_size, len(loop.data.splits.train))   # halving a batch larger than the data changes nothing
        saved = loop.checkpointing.latest(loop)
        done = saved["step_in_epoch"] * saved.get("batch_size", old)   # samples of this epoch already trained
        if saved["epoch"] != epoch or (done and loop.inputs.sample_lengths() is not None):
            # No epoch start to go back to, and text batches grouped by length cannot be re-cut mid-epoch.
            raise exc
        self._free(loop, exc)
        new = old // 2
        if done % new:
            new = math.gcd(new, done)   # an odd batch size stopped mid-epoch: keep the sample position exact
        step_in_epoch = done // new

        state = RunState.from_checkpoint(saved, batch_size=old, eval_batch_size=loop.state.eval_batch_size)
        state.batch_size, state.eval_batch_size = new, max(1, loop.state.eval_batch_size // 2)
        state.segments = loop.state.segments   # the checkpoint on disk may predate an extension's new stage
        loop.restore(state, saved)
        seg_index = state.segment_index(epoch)
        fresh = state.starts_segment(epoch, step_in_epoch)
        loop.enter_segment(seg_index, optimizer_state=None if fresh else saved["optimizer"],
                           scaler_state=None if fresh else saved.get("scaler"),
                           schedule_steps=(epoch - state.segments[seg_index].start_epoch) * loop.steps_per_epoch
                           + step_in_epoch)
        set_rng_state(saved["rng"])
        totals = EpochTotals(**saved["accum"])
        # The checkpoint first: a resume after a crash in between trusts the checkpoint's batch size.
        loop.checkpointing.save(loop, epoch, step_in_epoch, totals)
        loop.notify(f"Out of memory at batch size {old}; retrying epoch {epoch + 1} with batch size {new}")
        loop.announce_start(epoch)
        return step_in_epoch, totals

    @staticmethod
    def _free(loop, exc: BaseException) -> None:
        """Free what the failed attempt holds before the checkpoint is loaded into the model."""
        loop.optimizer.zero_grad(set_to_none=True)
        loop.inputs.free_memory()
        exc.__traceback__ = None   # its frames hold the failed batch's activations
        gc.collect()
        if loop.device.type == "cuda":
            torch.cuda.empty_cache()
