"""Optimizers and schedules from the config, checked against torch's own classes stepped by hand."""
from __future__ import annotations

import pytest
import torch

from test_trainer import image_config
from transfer_core.config import OptimConfig
from transfer_core.events import RunStatus
from transfer_core.optim import build_optimizer, build_scheduler
from transfer_core.trainer import fit


def _stepped(make_optimizer) -> torch.Tensor:
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(16))
    optimizer = make_optimizer([param])
    for _ in range(5):
        param.grad = torch.sin(param.detach() * 3)   # a gradient that changes with the parameter
        optimizer.step()
    return param.detach()


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_uses_plain_momentum_unless_nesterov_is_switched_on(nesterov):
    cfg = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=nesterov)
    ours = _stepped(lambda params: build_optimizer([{"params": params}], cfg, device=torch.device("cpu")))
    reference = _stepped(lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=nesterov))
    other = _stepped(lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=not nesterov))
    assert torch.allclose(ours, reference, atol=1e-6) and not torch.allclose(ours, other, atol=1e-4)


def test_rmsprop_steps_as_torchs_rmsprop():
    cfg = OptimConfig(optimizer="rmsprop", lr=0.01, momentum=0.5)
    ours = _stepped(lambda params: build_optimizer([{"params": params}], cfg, device=torch.device("cpu")))
    assert torch.allclose(ours, _stepped(lambda params: torch.optim.RMSprop(params, lr=0.01, momentum=0.5)), atol=1e-6)


def test_the_exponential_schedule_multiplies_the_rate_by_gamma_after_every_epoch():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.2)
    scheduler = build_scheduler(optimizer, OptimConfig(scheduler="exponential", gamma=0.5), total_steps=9,
                                steps_per_epoch=3)
    rates = []
    for _ in range(9):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.2] * 3 + [0.1] * 3 + [0.05] * 3)


def test_the_plateau_schedules_per_step_part_keeps_a_rate_lowered_between_steps():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.2)
    scheduler = build_scheduler(optimizer, OptimConfig(scheduler="plateau"), total_steps=6, steps_per_epoch=3)
    rates = []
    for step in range(6):
        if step == 3:
            optimizer.param_groups[0]["lr"] = 0.02   # as loop/plateau.py lowers it at an epoch's end
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.2] * 3 + [0.02] * 3)


def test_a_run_trains_with_rmsprop_and_the_exponential_schedule(digits_folder, store):
    cfg = image_config(digits_folder, optim__optimizer="rmsprop", optim__lr=1e-3, optim__scheduler="exponential",
                       optim__gamma=0.8, train__epochs=2)
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    lrs = store.metrics(result.run_id, scope="epoch")["lr"].tolist()
    assert lrs[1] == pytest.approx(lrs[0] * 0.8)   # the rate EpochEnded reports, one epoch apart
