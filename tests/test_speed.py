"""No wasted work: frozen groups get no gradients, the optimizer holds only trainable parameters, evaluation runs under inference mode."""
from __future__ import annotations

import pytest
import torch

from transfer_core import trainer as trainer_mod
from transfer_core.events import RunStatus
from transfer_core.trainer import fit

from test_trainer import image_config

@pytest.fixture
def spy(monkeypatch):
    """Capture the built model, the optimizer's parameters and the grad/inference state of every forward."""
    seen = {"forwards": [], "optimizers": []}
    real_build, real_opt = trainer_mod.build_model, trainer_mod.build_optimizer

    def build(*args, **kwargs):
        built = real_build(*args, **kwargs)
        seen["built"] = built
        built.net.register_forward_hook(lambda m, i, o: seen["forwards"].append(
            (torch.is_grad_enabled(), torch.is_inference_mode_enabled(), m.training)))
        return built

    def optimizer(groups, cfg):
        opt = real_opt(groups, cfg)
        seen["optimizers"].append(opt)
        return opt

    monkeypatch.setattr(trainer_mod, "build_model", build)
    monkeypatch.setattr(trainer_mod, "build_optimizer", optimizer)
    return seen


def test_frozen_groups_get_no_gradients_and_the_optimizer_holds_only_trainable_params(digits_folder, store, spy):
    result = fit(image_config(digits_folder, freeze__preset="top_k", freeze__top_k=2, train__epochs=1), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    built = spy["built"]
    params = dict(built.net.named_parameters())
    trainable = {"block3", "head"}
    in_optimizer = {id(p) for g in spy["optimizers"][-1].param_groups for p in g["params"]}
    for group in built.groups:
        for name in group.param_names:
            p = params[name]
            if group.name in trainable:
                assert p.requires_grad and p.grad is not None and id(p) in in_optimizer, name
            else:
                assert not p.requires_grad and p.grad is None and id(p) not in in_optimizer, name
    assert len(in_optimizer) == sum(p.requires_grad for p in built.net.parameters())


def test_evaluation_runs_under_inference_mode(digits_folder, store, spy):
    result = fit(image_config(digits_folder, freeze__preset="full", train__epochs=2), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    forwards = spy["forwards"]
    training = [f for f in forwards if f[2]]
    evaluating = [f for f in forwards if not f[2]]
    assert training and evaluating
    assert all(grad and not inference for grad, inference, _ in training)
    assert all(inference for _, inference, _ in evaluating)  # no autograd bookkeeping while evaluating
