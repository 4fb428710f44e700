"""The best epoch and early stopping (Lightning's ModelCheckpoint(monitor=...) and EarlyStopping in one)."""
from __future__ import annotations

from safetensors.torch import load_file

from ..run_files import BEST_FILE
from .component import EpochOutcome, LoopComponent


class BestEpoch(LoopComponent):
    """Tracks the best epoch by train.early_stopping_metric. With early stopping on (a patience above 0), it
    keeps that epoch's weights in best.safetensors, ends the run after `patience` epochs without improvement,
    and gives the run the best epoch's weights at its end."""

    def epoch_ended(self, loop, row, outcome: EpochOutcome) -> None:
        train, state = loop.config.train, loop.state
        metric = train.early_stopping_metric
        value, best = row[metric], state.best["value"]
        outcome.improved = best is None or (value < best if metric == "val_loss" else value > best)
        if outcome.improved:
            state.best, state.bad_epochs = {"epoch": row["epoch"], "value": value}, 0
            if train.early_stopping_patience > 0:
                loop.save_weights(BEST_FILE)
        else:
            state.bad_epochs += 1
        if 0 < train.early_stopping_patience <= state.bad_epochs:
            outcome.stop = (f"early stopping: {metric} did not improve for {train.early_stopping_patience} epochs; "
                            f"keeping the best epoch ({state.best['epoch'] + 1})")

    def finishing(self, loop) -> None:
        path = loop.run_dir / BEST_FILE
        if loop.config.train.early_stopping_patience > 0 and path.exists():
            loop.load_weights(load_file(str(path), device=str(loop.device)))
            loop.mark_norms_exact()   # saved right after its epoch's exact statistics
            loop.state.model_epoch = loop.state.best["epoch"]
