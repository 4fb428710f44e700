"""The loop's hooks (loop/component.py) as a new capability meets them: a component given to fit() sees
every hook in order, can add to the loss, and can end the run; RunState keeps what the run decided."""
from __future__ import annotations

import pandas as pd
from test_trainer import Recorder, image_config

from transfer_core.checkpoint import load_checkpoint
from transfer_core.control import RunControl
from transfer_core.events import RunStatus
from transfer_core.freezing import Segment
from transfer_core.loop.component import LoopComponent
from transfer_core.loop.state import RunState
from transfer_core.run_files import CHECKPOINT_FILE, PREDICTIONS_FILE
from transfer_core.trainer import fit


class HookLog(LoopComponent):
    def __init__(self):
        self.calls = []

    def run_started(self, loop, *, resumed):
        self.calls.append(("run_started", resumed))

    def segment_started(self, loop):
        self.calls.append(("segment_started", loop.segment.trainable))

    def step_ended(self, loop, *, epoch, step_in_epoch, loss):
        if step_in_epoch == 1:
            self.calls.append(("step_ended", epoch))

    def epoch_trained(self, loop, epoch, totals):
        self.calls.append(("epoch_trained", epoch))

    def epoch_ended(self, loop, row, outcome):
        self.calls.append(("epoch_ended", row["epoch"]))

    def finishing(self, loop):
        self.calls.append(("finishing",))

    def finished(self, loop):
        self.calls.append(("finished",))


def test_a_component_sees_the_hooks_in_the_loops_order(digits_folder, store):
    hooks = HookLog()
    cfg = image_config(digits_folder, freeze__preset="staged", freeze__staged_head_epochs=1, train__epochs=2)
    result = fit(cfg, store=store, components=[hooks])
    assert result.status == RunStatus.COMPLETED, result.message
    head, everything = ("head",), ("block1", "block2", "block3", "head")
    assert hooks.calls == [("segment_started", head), ("run_started", False),
                           ("step_ended", 0), ("epoch_trained", 0), ("epoch_ended", 0),
                           ("segment_started", everything),
                           ("step_ended", 1), ("epoch_trained", 1), ("epoch_ended", 1),
                           ("finishing",), ("finished",)]


class ShrinkLogits(LoopComponent):
    """An extra loss term, as domain adaptation will add one: here a penalty on large logits."""
    def __init__(self, weight):
        self.weight, self.steps = weight, 0

    def extra_loss(self, loop, logits, targets):
        self.steps += 1
        return self.weight * logits.float().pow(2).mean()


def test_an_extra_loss_term_changes_what_the_model_learns(digits_folder, store):
    cfg = image_config(digits_folder, freeze__preset="full", train__epochs=2)
    plain_rec, shrunk_rec = Recorder(), Recorder()
    plain = fit(cfg.copy(), store=store, observers=[plain_rec])
    shrink = ShrinkLogits(weight=5.0)
    shrunk = fit(cfg.copy(), store=store, observers=[shrunk_rec], components=[shrink])
    assert plain.status == shrunk.status == RunStatus.COMPLETED
    steps = [e for e in shrunk_rec.events if e.kind == "BatchEnded"]
    assert shrink.steps == len(steps) > 0   # called once per step
    # The reported step loss includes the term, and the trained model is less confident than without it.
    plain_loss = [e.loss for e in plain_rec.events if e.kind == "BatchEnded"][0]
    assert steps[0].loss > plain_loss
    assert mean_confidence(store, shrunk) < mean_confidence(store, plain)


def mean_confidence(store, result) -> float:
    table = pd.read_csv(store.run_dir(result.run_id) / PREDICTIONS_FILE)
    return float(table["confidence"].mean())


class StopAfterFirstEpoch(LoopComponent):
    def epoch_ended(self, loop, row, outcome):
        outcome.stop = "stopped by a component after one epoch"


def test_a_component_can_end_the_run_after_an_epoch(digits_folder, store):
    rec = Recorder()
    result = fit(image_config(digits_folder, train__epochs=3), store=store, observers=[rec],
                 components=[StopAfterFirstEpoch()])
    assert (result.status, result.epochs_done) == (RunStatus.COMPLETED, 1)
    assert rec.notices()[-1] == "stopped by a component after one epoch"
    # The checkpoint after the run's last epoch is written, as at any run's end.
    assert load_checkpoint(store.run_dir(result.run_id) / CHECKPOINT_FILE)["epoch"] == 1


def test_run_state_extends_and_round_trips_through_a_checkpoint():
    state = RunState([Segment(0, 1, ("head",)), Segment(1, 3, ("body", "head"), 0.1)], batch_size=16, eval_batch_size=64)
    assert state.epochs == 3 and state.starts_segment(1, 0) and not state.starts_segment(1, 2)
    state.best, state.bad_epochs = {"epoch": 2, "value": 0.3}, 1
    state.extend(2)
    assert state.epochs == 5 and state.segments[-1] == Segment(3, 5, ("body", "head"), 0.1)
    assert (state.best, state.bad_epochs) == ({"epoch": -1, "value": None}, 0)   # early stopping starts over
    state.batch_size, state.global_step = 4, 30
    saved = {**state.to_checkpoint(), "epoch": 3, "step_in_epoch": 0}
    back = RunState.from_checkpoint(saved, batch_size=16, eval_batch_size=64)
    assert back == RunState(state.segments, batch_size=4, eval_batch_size=64, global_step=30, model_epoch=2)
    # A checkpoint from before out-of-memory retries were recorded takes the run's own batch sizes.
    old = {k: v for k, v in saved.items() if k not in ("batch_size", "eval_batch_size")}
    assert RunState.from_checkpoint(old, batch_size=16, eval_batch_size=64).batch_size == 16


class CountsEpochs(LoopComponent):
    """A component with state of its own: the epochs it has seen, which a resume must carry on from."""
    def __init__(self, counts: list[int]):
        self.seen, self.counts = 0, counts

    def epoch_ended(self, loop, row, outcome):
        self.seen += 1
        self.counts.append(self.seen)

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_a_components_state_survives_a_stop_and_resume(digits_folder, store):
    control, counts = RunControl(), []
    stop_in_epoch_2 = Recorder(lambda e: e.kind == "BatchEnded" and e.epoch == 1 and e.step_in_epoch == 2
                               and control.request_stop())
    stopped = fit(image_config(digits_folder, train__epochs=3), store=store, control=control,
                  observers=[stop_in_epoch_2], components=[CountsEpochs(counts)])
    assert stopped.status == RunStatus.STOPPED and counts == [1]
    assert load_checkpoint(store.run_dir(stopped.run_id) / CHECKPOINT_FILE)["components"] == {"CountsEpochs": {"seen": 1}}
    resumed = fit(None, store=store, run_id=stopped.run_id, resume=True, components=[CountsEpochs(counts)])
    assert resumed.status == RunStatus.COMPLETED, resumed.message
    assert counts == [1, 2, 3]   # went on from the checkpoint's count, not from 0
