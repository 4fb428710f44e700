"""The hooks a loop component answers, in the order the loop reaches them.

A component does one job around the loop (early stopping, checkpoints, BatchNorm statistics...), keeps its
own small state, and overrides only the hooks it needs. The loop (trainer.Trainer) calls each hook on every
component in the order of `Trainer.components`, and passes itself: a component reads the config, the
run's state, the model and the optimizer from it. A new capability is a new component in that list, not a
branch in the loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..trainer import Trainer
    from .state import EpochTotals


@dataclass
class EpochOutcome:
    """What the components decided at an epoch's end (Hugging Face's TrainerControl, for one epoch)."""
    improved: bool = False   # the epoch is the best so far
    stop: str = ""           # why the run ends after this epoch; empty: it goes on


class LoopComponent:
    # True: each training step computes the head's input apart (TransferNet.forward_with_features) and the
    # loop keeps it in `loop.step_features` for extra_loss; every layer then runs at every step (no cache).
    needs_features: bool = False

    def run_started(self, loop: Trainer, *, resumed: bool) -> None:
        """Everything is set up and RunStarted is out; the first step comes next."""

    def segment_started(self, loop: Trainer) -> None:
        """A freezing stage begins: its groups are trainable and its optimizer and schedule are new."""

    def extend_batch(self, loop: Trainer, inputs: dict, index: int) -> dict:
        """Samples to add after a batch's own (domain adaptation's target samples), for components with
        needs_features: at training step `index`, and for batch `index` of the exact BatchNorm statistics, so
        that both see the same mix. The loss and accuracy read only the batch's own rows; step_features holds all."""
        return inputs

    def extra_loss(self, loop: Trainer, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """A term added to this step's loss before the backward pass (None: nothing to add)."""
        return None

    def step_ended(self, loop: Trainer, *, epoch: int, step_in_epoch: int, loss: float) -> None:
        """The optimizer stepped; `loss` is the step's mean loss."""

    def epoch_trained(self, loop: Trainer, epoch: int, totals: EpochTotals) -> None:
        """The epoch's steps are done; validation comes next. Time spent here counts as training time."""

    def epoch_ended(self, loop: Trainer, row: dict, outcome: EpochOutcome) -> None:
        """Validated: `row` is the epoch's line of the history. Set `outcome` to mark it best or end the run."""

    def paused(self, loop: Trainer) -> None:
        """The user paused the run; it may stay paused until the app is closed."""

    def finishing(self, loop: Trainer) -> None:
        """The run ends (completed or stopped): the final weights are saved and evaluated next."""

    def finished(self, loop: Trainer) -> None:
        """The final weights and metrics are written; RunEnded comes next."""

    def failed(self, loop: Trainer, exc: BaseException) -> None:
        """The run failed with `exc`; RunFailed comes next. Must not raise."""

    # What a component must carry across a resume (a domain classifier's weights, a counter) goes into the
    # checkpoint under the component's class name; a component with nothing to carry keeps these as they are.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict gave: at a resume, and when an out-of-memory retry goes back to a checkpoint."""
