"""AppTest: with several GPUs visible, the Train page offers how many to train on, starts the run as processes
of its own (train --devices N) and follows it through the run store; Pause, Resume and Stop act on all of
its processes. There is no GPU here: the page is told two are visible (torch.cuda.device_count), and the
processes it starts, which do not see that, train on the CPU with gloo, as the distributed tests do."""
from __future__ import annotations

import json

import pytest
import torch
from apphelpers import draft, no_exceptions, open_app, wait_for

from app.state import CURRENT_RUN
from transfer_core.events import RunStatus
from transfer_core.run_files import CHECKPOINT_FILE, METRICS_FILE
from transfer_core.store import RunStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_one_gpu_offers_nothing(app_env, shapes_folder):
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn")})
    no_exceptions(at)
    assert not [n for n in at.number_input if n.key == "train_processes"]


def test_two_gpus_train_on_two_processes_that_pause_resume_and_stop_together(app_env, shapes_folder, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn",
                                                            model__image_size=32, train__epochs=300,
                                                            train__batch_size=4)})
    no_exceptions(at)
    assert at.number_input(key="train_processes").value == 2
    assert any("--devices 2" in c.value for c in at.code)
    at.button(key="start").click().run()
    no_exceptions(at)
    run_id = at.session_state[CURRENT_RUN]
    with RunStore(app_env / "runs") as store:
        def status():
            return store.get_run(run_id).status
        wait_for(lambda: len(store.metrics(run_id, "epoch")), timeout=180, what="the first epoch")
        at.run()
        at.button(key="run_pause").click().run()
        wait_for(lambda: status() == RunStatus.PAUSED, timeout=60, what="the run to pause")
        paused_steps = len(store.metrics(run_id, "step"))
        at.run()
        at.button(key="run_resume").click().run()
        wait_for(lambda: status() == RunStatus.RUNNING and len(store.metrics(run_id, "step")) > paused_steps,
                 timeout=60, what="the run to go on")
        at.run()
        at.button(key="run_stop").click().run()
        wait_for(lambda: status() == RunStatus.STOPPED, timeout=120, what="the run to stop")
        assert (store.run_dir(run_id) / CHECKPOINT_FILE).exists()
        metrics = json.loads((store.run_dir(run_id) / METRICS_FILE).read_text())
        assert metrics["hardware"]["processes"] == 2
    at.run()
    no_exceptions(at)
