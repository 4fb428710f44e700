"""Exact BatchNorm running statistics where a validation decides something (see batchnorm.py for why)."""
from __future__ import annotations

import time

from .. import batchnorm
from .component import LoopComponent


class NormStatistics(LoopComponent):
    """Recomputes the running statistics of the BatchNorm layers that train, from the training samples as
    evaluation sees them: at the end of each freezing stage (its weights are what the next stage starts from,
    or what the run keeps), with early stopping at every epoch (any may become the kept model), and at the
    end of a run stopped part-way through a stage."""

    def __init__(self):
        self.norms: list = []   # the BatchNorm layers that train in the current stage

    def segment_started(self, loop) -> None:
        self.norms = batchnorm.trained_norms(loop.built, loop.segment.trainable, train_bn=loop.config.freeze.train_bn)
        batchnorm.raise_momentum(self.norms)

    def epoch_trained(self, loop, epoch, totals) -> None:
        # The last stage ends at the planned epochs (plan_segments, RunState.extend), so its end is the run's.
        due = epoch + 1 >= loop.segment.end_epoch or loop.config.train.early_stopping_patience > 0
        if self.norms and due:
            tick = time.perf_counter()
            self._recompute(loop)
            totals.seconds += time.perf_counter() - tick   # part of making the model: training time

    def finishing(self, loop) -> None:
        if self.norms and not loop.norms_exact:
            self._recompute(loop)   # stopped inside a stage: the model kept must evaluate right

    def _recompute(self, loop) -> None:
        if batchnorm.recompute_statistics(loop.built.net, self.norms, loop.inputs.norm_statistics_forwards(loop)):
            loop.weights_changed()   # the eval-mode model changed
        loop.mark_norms_exact()
