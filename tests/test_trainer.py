"""fit(): events, freezing, determinism, stop/pause/resume, failures, extension (tiny random models).

The configs here train on the CPU even where a GPU is present: these tests hold the engine to
bit-equal results, which the CPU gives and mixed precision on a GPU does not (test_cuda.py checks the GPU).
"""
from __future__ import annotations

import json
import threading

import pytest
import torch
from safetensors.torch import load_file

from transfer_core.config import RunConfig
from transfer_core.control import RunControl
from transfer_core.events import RunStatus
from transfer_core.loop.component import LoopComponent
from transfer_core.models import build_model
from transfer_core.run_files import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE
from transfer_core.trainer import fit


def image_config(folder, **sets) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = str(folder)
    cfg.model.name = "tiny_cnn"
    cfg.model.pretrained = False
    cfg.model.image_size = 16
    cfg.train.epochs = 3
    cfg.train.batch_size = 8
    cfg.optim.lr = 0.01
    cfg.train.device = "cpu"
    for key, value in sets.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.check()


def text_config(csv_path, **sets) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = str(csv_path)
    cfg.model.name = "tiny_bert"
    cfg.model.pretrained = False
    cfg.model.max_length = 16
    cfg.train.epochs = 2
    cfg.train.batch_size = 8
    cfg.freeze.preset = "full"
    cfg.train.device = "cpu"
    for key, value in sets.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.check()


class Recorder:
    def __init__(self, on_event=None):
        self.events = []
        self.on_event = on_event

    def __call__(self, event):
        self.events.append(event)
        if self.on_event:
            self.on_event(event)

    def kinds(self):
        return [e.kind for e in self.events]

    def notices(self):
        return [e.message for e in self.events if e.kind == "Notice"]


def test_event_order_and_completion(digits_folder, store):
    rec = Recorder()
    result = fit(image_config(digits_folder), store=store, observers=[rec])
    assert result.status == RunStatus.COMPLETED, result.message
    kinds = [k for k in rec.kinds() if k != "Notice"]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunEnded"
    epochs = [e for e in rec.events if e.kind == "EpochEnded"]
    assert [e.epoch for e in epochs] == [0, 1, 2]
    # Every epoch's batches come before its EpochEnded, and steps count up by one.
    steps = [e.step for e in rec.events if e.kind == "BatchEnded"]
    assert steps == list(range(1, len(steps) + 1))
    start = rec.events[0]
    assert len(steps) == 3 * start.steps_per_epoch
    record = store.get_run(result.run_id)
    assert record.status == RunStatus.COMPLETED
    assert set(result.summary()) >= {"run_id", "status", "epochs", "train_seconds", "val_accuracy", "val_macro_f1"}
    assert store.metrics(result.run_id, scope="epoch").shape[0] == 3


def test_frozen_groups_are_bit_identical_after_training(digits_folder, store):
    from transfer_core.models import build_model
    cfg = image_config(digits_folder)
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    trained = load_file(str(store.run_dir(result.run_id) / WEIGHTS_FILE))
    torch.manual_seed(cfg.train.seed)
    fresh = build_model("tiny_cnn", ["digit_0", "digit_1", "digit_2", "digit_3"], pretrained=False, image_size=16)
    initial = fresh.net.state_dict()
    head = set(fresh.group("head").param_names)
    changed_head = False
    for name, value in initial.items():
        if name in head:
            changed_head |= not torch.equal(value, trained[name])
        else:  # frozen: weights and BatchNorm running statistics untouched
            assert torch.equal(value, trained[name]), name
    assert changed_head


def test_same_seed_same_metrics(digits_folder, store):
    a = fit(image_config(digits_folder, freeze__preset="full"), store=store)
    b = fit(image_config(digits_folder, freeze__preset="full"), store=store)
    assert a.metrics["val_loss"] == b.metrics["val_loss"]
    assert a.metrics["val_accuracy"] == b.metrics["val_accuracy"]


@pytest.mark.parametrize("stop_at_step", [5, 6])  # mid-epoch, and right at an epoch boundary
def test_stop_then_resume_matches_uninterrupted(digits_folder, store, stop_at_step):
    cfg = image_config(digits_folder, freeze__preset="full", optim__scheduler="onecycle", model__head_dropout=0.2)
    baseline = fit(cfg, store=store)

    control = RunControl()
    stopper = Recorder(lambda e: e.kind == "BatchEnded" and e.step == stop_at_step and control.request_stop())
    stopped = fit(cfg.copy(), store=store, control=control, observers=[stopper])
    assert stopped.status == RunStatus.STOPPED
    assert store.get_run(stopped.run_id).status == RunStatus.STOPPED
    assert (store.run_dir(stopped.run_id) / CHECKPOINT_FILE).exists()

    resumed = fit(None, store=store, run_id=stopped.run_id, resume=True)
    assert resumed.status == RunStatus.COMPLETED, resumed.message
    assert resumed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=1e-6)
    assert resumed.metrics["val_accuracy"] == baseline.metrics["val_accuracy"]
    a = load_file(str(store.run_dir(baseline.run_id) / WEIGHTS_FILE))
    b = load_file(str(store.run_dir(resumed.run_id) / WEIGHTS_FILE))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


# 6 steps per epoch: in the head-only stage, at its last step (the stage boundary), at the first full step.
@pytest.mark.parametrize("stop_at_step", [3, 6, 7])
def test_staged_run_stopped_anywhere_resumes_like_uninterrupted(digits_folder, store, stop_at_step):
    cfg = image_config(digits_folder, freeze__preset="staged", freeze__staged_head_epochs=1, train__epochs=3,
                       model__head_dropout=0.2)
    baseline = fit(cfg, store=store)
    control = RunControl()
    stopper = Recorder(lambda e: e.kind == "BatchEnded" and e.step == stop_at_step and control.request_stop())
    stopped = fit(cfg.copy(), store=store, control=control, observers=[stopper])
    assert stopped.status == RunStatus.STOPPED
    resumed = fit(None, store=store, run_id=stopped.run_id, resume=True)
    assert resumed.status == RunStatus.COMPLETED, resumed.message
    assert resumed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=1e-6)
    a = load_file(str(store.run_dir(baseline.run_id) / WEIGHTS_FILE))
    b = load_file(str(store.run_dir(resumed.run_id) / WEIGHTS_FILE))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_head_only_checkpoints_skip_the_frozen_backbone_and_resume_exactly(digits_folder, store):
    cfg = image_config(digits_folder, freeze__preset="feature_extraction", optim__lr=0.05)
    baseline = fit(cfg, store=store)
    control = RunControl()
    stopper = Recorder(lambda e: e.kind == "BatchEnded" and e.step == 5 and control.request_stop())
    stopped = fit(cfg.copy(), store=store, control=control, observers=[stopper])
    saved = torch.load(store.run_dir(stopped.run_id) / CHECKPOINT_FILE, weights_only=True)["net"]
    full = load_file(str(store.run_dir(baseline.run_id) / WEIGHTS_FILE))
    assert 0 < len(saved) < len(full)           # the frozen groups' parameters are not in the checkpoint

    resumed = fit(None, store=store, run_id=stopped.run_id, resume=True)
    assert resumed.status == RunStatus.COMPLETED, resumed.message
    assert resumed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=1e-6)
    after = load_file(str(store.run_dir(resumed.run_id) / WEIGHTS_FILE))
    assert all(torch.allclose(full[k].float(), after[k].float(), atol=1e-6) for k in full)


def test_pause_and_resume_in_thread(digits_folder, store):
    control = RunControl()
    seen_paused = threading.Event()

    def on_event(e):
        if e.kind == "BatchEnded" and e.step == 2:
            control.pause()

            def check_and_resume():
                for _ in range(50):
                    runs = [r for r in store.list_runs() if r.status == RunStatus.PAUSED]
                    if runs:
                        seen_paused.set()
                        break
                    threading.Event().wait(0.05)
                control.resume()
            threading.Thread(target=check_and_resume).start()

    result = fit(image_config(digits_folder, train__epochs=1), store=store, control=control, observers=[Recorder(on_event)])
    assert result.status == RunStatus.COMPLETED
    assert seen_paused.is_set()


def checkpoint_writes(monkeypatch) -> list[tuple[int, int]]:
    """(epoch, step_in_epoch) of every checkpoint written to disk, in order; the writes still happen."""
    import transfer_core.checkpoint as checkpoint
    real, writes = checkpoint.save_checkpoint, []

    def spy(path, state):
        writes.append((state["epoch"], state["step_in_epoch"]))
        real(path, state)
    monkeypatch.setattr(checkpoint, "save_checkpoint", spy)
    return writes


def test_short_epochs_write_one_checkpoint_after_the_last(digits_folder, store, monkeypatch):
    writes = checkpoint_writes(monkeypatch)
    once = fit(image_config(digits_folder), store=store)   # 3 epochs, each far shorter than a minute
    assert once.status == RunStatus.COMPLETED, once.message
    assert writes == [(3, 0)]
    every = fit(image_config(digits_folder, train__checkpoint_every_s=0), store=store)
    assert writes[1:] == [(1, 0), (2, 0), (3, 0)]
    assert every.metrics == once.metrics   # when checkpoints are written changes nothing trained


def test_a_pause_writes_the_epoch_end_held_in_memory(digits_folder, store, monkeypatch):
    writes = checkpoint_writes(monkeypatch)
    control = RunControl()

    def on_event(e):
        if e.kind == "BatchEnded" and e.epoch == 1 and e.step_in_epoch == 1:
            control.pause()
            threading.Timer(0.3, control.resume).start()

    result = fit(image_config(digits_folder), store=store, control=control, observers=[Recorder(on_event)])
    assert result.status == RunStatus.COMPLETED, result.message
    # The pause in epoch 2 wrote epoch 1's end; epoch 2's end stayed in memory; the last one is always written.
    assert writes == [(1, 0), (3, 0)]


def test_extend_finished_run(digits_folder, store):
    first = fit(image_config(digits_folder, train__epochs=2), store=store)
    run_dir = store.run_dir(first.run_id)
    # The last checkpoint leaves the optimizer out: an extension starts a segment with a fresh one.
    final = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert final["optimizer"] is None and final["scheduler"] is None and final["net"]
    before = load_file(str(run_dir / WEIGHTS_FILE))
    extended = fit(None, store=store, run_id=first.run_id, resume=True, extra_epochs=2)
    assert extended.status == RunStatus.COMPLETED, extended.message
    assert extended.epochs_done == 4
    # The config keeps the 2 epochs asked for; the run's state (checkpoint, store) has the 4 it plans now.
    record = store.get_run(first.run_id)
    assert (record.config["train"]["epochs"], record.total_epochs) == (2, 4)
    assert json.loads((run_dir / CONFIG_FILE).read_text())["train"]["epochs"] == 2
    assert torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["segments"][-1]["end_epoch"] == 4
    assert store.metrics(first.run_id, scope="epoch").shape[0] == 4
    # The extra epochs train on a schedule of their own, as a fresh 2-epoch run does (not at the
    # finished schedule's end, where the learning rate is 0), and change the weights.
    steps = store.metrics(first.run_id, scope="step")
    fresh = fit(image_config(digits_folder, train__epochs=2), store=store)
    fresh_lrs = store.metrics(fresh.run_id, scope="step")["lr"].tolist()
    assert steps["lr"].tolist()[len(fresh_lrs):] == pytest.approx(fresh_lrs)
    after = load_file(str(run_dir / WEIGHTS_FILE))
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_staged_trains_head_first_then_everything(digits_folder, store):
    rec = Recorder()
    cfg = image_config(digits_folder, freeze__preset="staged", freeze__staged_head_epochs=1, train__epochs=2)
    result = fit(cfg, store=store, observers=[rec])
    assert result.status == RunStatus.COMPLETED, result.message
    lrs = {e.epoch: e.lr for e in rec.events if e.kind == "BatchEnded" and e.step_in_epoch == 1}
    # The second stage restarts its schedule at lr * staged_lr_factor.
    assert lrs[1] == pytest.approx(cfg.optim.lr * cfg.freeze.staged_lr_factor)


def test_early_stopping_restores_best(digits_folder, store):
    cfg = image_config(digits_folder, train__epochs=6, train__early_stopping_patience=1, optim__lr=5.0,
                       optim__scheduler="constant", optim__optimizer="sgd")
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED
    assert result.epochs_done <= 6
    assert result.best_epoch >= 0


def test_text_model_trains_full(topics_csv, store):
    result = fit(text_config(topics_csv, optim__lr=0.003, train__epochs=4), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    assert result.metrics["val_accuracy"] > 0.5


def test_bad_data_fails_with_message(tmp_path, store):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    result = fit(text_config(empty), store=store)
    assert result.status == RunStatus.FAILED
    assert "\n" not in result.message and result.message


def test_wrong_modality_fails(digits_folder, store):
    result = fit(image_config(digits_folder, model__name="tiny_bert"), store=store)
    assert result.status == RunStatus.FAILED
    assert "image" in result.message and "text" in result.message


@pytest.mark.parametrize("make_config, data", [("image", "digits_folder"), ("text", "topics_csv")])
def test_feature_cache_gives_same_metrics_as_full_forward(make_config, data, store, request):
    path = request.getfixturevalue(data)
    build = image_config if make_config == "image" else text_config
    extra = {"freeze__preset": "feature_extraction", "model__head_dropout": 0.1, "optim__lr": 0.01}
    cached_rec, plain_rec = Recorder(), Recorder()
    cached = fit(build(path, **extra), store=store, observers=[cached_rec])
    plain = fit(build(path, train__cache_features=False, **extra), store=store, observers=[plain_rec])
    assert cached.status == plain.status == RunStatus.COMPLETED
    assert any("frozen backbone" in e.message for e in cached_rec.events if e.kind == "Notice")
    assert not any(e.kind == "Notice" and "frozen backbone" in e.message for e in plain_rec.events)
    assert cached.metrics["val_accuracy"] == plain.metrics["val_accuracy"]
    assert cached.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], abs=1e-5)
    # A second run with other hyperparameters reuses the stored features.
    again_rec = Recorder()
    fit(build(path, **{**extra, "optim__lr": 0.02}), store=store, observers=[again_rec])
    assert any("reused" in e.message for e in again_rec.events if e.kind == "Notice")


@pytest.mark.parametrize("augment", [False, True])
def test_images_decoded_once_give_the_same_run_as_decoding_every_step(digits_folder, store, augment):
    sets = {"freeze__preset": "full", "augment__flip": augment, "augment__rotation": 15.0 if augment else 0.0}
    once = fit(image_config(digits_folder, **sets), store=store)
    every = fit(image_config(digits_folder, train__cache_images=False, **sets), store=store)
    assert once.status == every.status == RunStatus.COMPLETED, once.message
    assert once.metrics["val_loss"] == every.metrics["val_loss"]
    assert once.metrics["val_accuracy"] == every.metrics["val_accuracy"]
    assert list((store.root / ".image_cache").glob("*.npy"))  # train and val pixels kept for the next run


class _GroupWatch(LoopComponent):
    """Records, at each epoch's end, which groups trained and each group's weights."""

    def __init__(self):
        self.trained: list[tuple[str, ...]] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def epoch_trained(self, loop, epoch, totals):
        self.trained.append(loop.segment.trainable)
        params = dict(loop.built.net.named_parameters())
        self.weights.append({g.name: torch.cat([params[n].detach().flatten().clone() for n in g.param_names])
                             for g in loop.built.groups if g.param_names})


def test_gradual_unfreezes_one_more_group_each_epoch_from_the_head_down(digits_folder, store):
    names = [g.name for g in build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16).groups]
    watch = _GroupWatch()
    cfg = image_config(digits_folder, freeze__preset="gradual", train__epochs=len(names) + 1, freeze__lr_decay=0.5)
    result = fit(cfg, store=store, components=[watch])
    assert result.status == RunStatus.COMPLETED, result.message
    expected = [tuple(names[-k:]) for k in range(1, len(names) + 1)] + [tuple(names)]
    assert watch.trained == expected
    # A group keeps its start weights until its epoch comes, then changes.
    for epoch in range(1, len(watch.weights)):
        for group, now in watch.weights[epoch].items():
            changed = not torch.equal(now, watch.weights[epoch - 1][group])
            assert changed == (group in watch.trained[epoch]), (epoch, group)
    # Each stage caches what is still frozen below it, with the same result as running every layer each epoch.
    plain = fit(image_config(digits_folder, freeze__preset="gradual", train__epochs=len(names) + 1, freeze__lr_decay=0.5,
                             train__cache_features=False), store=store)
    assert plain.metrics["val_loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-5)


def test_gradual_with_fewer_epochs_than_groups_says_which_stay_frozen(digits_folder, store):
    rec = Recorder()
    result = fit(image_config(digits_folder, freeze__preset="gradual", train__epochs=2), store=store, observers=[rec])
    assert result.status == RunStatus.COMPLETED, result.message
    notes = [e.message for e in rec.events if e.kind == "Notice"]
    assert any("reaches only the top 2" in n for n in notes), notes


def _plateau_config(folder):
    return image_config(folder, freeze__preset="full", optim__scheduler="plateau", optim__plateau_patience=0,
                        optim__gamma=0.5, train__epochs=5, train__early_stopping_metric="val_accuracy")


def _epoch_lrs(store, run_id):
    return [e.lr for e in store.events(run_id) if e.kind == "EpochEnded"]


def test_plateau_halves_the_rate_after_each_epoch_without_a_better_metric(digits_folder, store):
    rec = Recorder()
    cfg = _plateau_config(digits_folder)
    result = fit(cfg, store=store, observers=[rec])
    assert result.status == RunStatus.COMPLETED, result.message
    accuracies = [e.val_accuracy for e in rec.events if e.kind == "EpochEnded"]
    # With patience 0, the rate after an epoch is halved unless that epoch beat the best accuracy so far.
    expected, lr, best = [], cfg.optim.lr, -1.0
    for accuracy in accuracies:
        if accuracy > best:
            best = accuracy
        else:
            lr *= 0.5
        expected.append(lr)
    assert [e.lr for e in rec.events if e.kind == "EpochEnded"] == pytest.approx(expected)
    assert expected[-1] < cfg.optim.lr, accuracies            # the run did meet a plateau
    steps = [e for e in rec.events if e.kind == "BatchEnded"]
    assert steps[-1].lr == pytest.approx(expected[-2])          # the last epoch trained at the lowered rate
    assert any("learning rate drops" in e.message for e in rec.events if e.kind == "Notice")


def test_plateau_schedule_resumes_where_it_stopped(digits_folder, store):
    baseline = fit(_plateau_config(digits_folder), store=store)
    control = RunControl()
    stopper = Recorder(lambda e: e.kind == "BatchEnded" and e.step == 21 and control.request_stop())  # in epoch 4
    stopped = fit(_plateau_config(digits_folder), store=store, control=control, observers=[stopper])
    assert stopped.status == RunStatus.STOPPED
    resumed = fit(None, store=store, run_id=stopped.run_id, resume=True)
    assert resumed.status == RunStatus.COMPLETED, resumed.message
    assert _epoch_lrs(store, resumed.run_id)[-2:] == pytest.approx(_epoch_lrs(store, baseline.run_id)[-2:])
    assert resumed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=1e-6)
