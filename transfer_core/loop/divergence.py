"""Ends a run whose training diverged, with advice, instead of training on useless weights."""
from __future__ import annotations

import math

from ..errors import TrainingDiverged
from .component import LoopComponent

# Cross-entropy of a uniform guess is ln(classes). An epoch whose mean training loss is this many times
# that has blown its weights up (a learning rate far too high): no run that learns gets there.
DIVERGED_LOSS_FACTOR = 10.0


class DivergenceGuard(LoopComponent):
    """A failed run, not a completed one with a warning: the weights of a diverged run are useless (NaN or far
    worse than chance), so nothing should offer them for evaluation, trying or export."""

    def step_ended(self, loop, *, epoch, step_in_epoch, loss) -> None:
        if not math.isfinite(loss):
            # NaN weights never recover, and every later step and the saved model would be NaN too.
            raise diverged(loop.config, f"training diverged in epoch {epoch + 1}, step {step_in_epoch}: "
                                        f"the loss became {loss}")

    def epoch_trained(self, loop, epoch, totals) -> None:
        # Before any work (BatchNorm statistics, validation) on blown-up weights.
        chance = math.log(max(2, len(loop.data.classes)))
        if totals.mean_loss > DIVERGED_LOSS_FACTOR * chance:
            raise diverged(loop.config, f"training diverged in epoch {epoch + 1}: the training loss rose to "
                                        f"{totals.mean_loss:,.1f}, where guessing at random scores {chance:.2f}")


def diverged(config, message: str) -> TrainingDiverged:
    lr = config.optim.lr
    advice = f"lower the learning rate (optim.lr is {lr:g}; try {lr / 10:g})"
    if config.optim.grad_clip <= 0:
        advice += " or limit each step with optim.grad_clip=1"
    return TrainingDiverged(message, advice + ", and start a new run")
