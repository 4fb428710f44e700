"""No wasted work, and the GPU code paths checked on the CPU (dtype choice and device picking with mocks; the real-GPU tests are in test_cuda.py)."""
from __future__ import annotations

import json

import pytest
import torch

from transfer_core import devices, trainer as trainer_mod
from transfer_core.config import OptimConfig
from transfer_core.events import RunStatus
from transfer_core.optim import build_optimizer, load_optimizer_state
from transfer_core.run_files import METRICS_FILE
from transfer_core.trainer import fit

from test_trainer import Recorder, image_config

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

    def optimizer(groups, cfg, **kwargs):
        opt = real_opt(groups, cfg, **kwargs)
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
    # ...and steps them with torch's fused kernels, one pass over all of them (optim.FUSED_DEVICES).
    assert all(g["fused"] for g in spy["optimizers"][-1].param_groups)


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_fused_optimizer_steps_like_the_default_one(name):
    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(5)]
    cfg = OptimConfig(optimizer=name, lr=0.01, momentum=0.9)
    finals = []
    for device in (None, torch.device("cpu")):   # None: no device known, torch's default implementation
        params = [torch.nn.Parameter(t.clone()) for t in start]
        optimizer = build_optimizer([{"params": params[:1], "weight_decay": 0.01}, {"params": params[1:], "weight_decay": 0.0}],
                                    cfg, device=device)
        assert [bool(g["fused"]) for g in optimizer.param_groups] == [device is not None] * 2
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            optimizer.step()
        finals.append(params)
    for default, fused in zip(*finals):
        assert torch.allclose(default, fused, atol=1e-6)


def test_a_checkpoint_of_the_default_optimizer_resumes_fused():
    params = [torch.nn.Parameter(torch.ones(3))]
    params[0].grad = torch.ones(3)
    old = build_optimizer([{"params": params}], OptimConfig())   # as checkpoints before the fused kernels hold it
    old.step()
    resumed = build_optimizer([{"params": params}], OptimConfig(), device=torch.device("cpu"))
    load_optimizer_state(resumed, old.state_dict())
    assert resumed.param_groups[0]["fused"] is True
    assert resumed.state_dict()["state"][0]["exp_avg"].tolist() == old.state_dict()["state"][0]["exp_avg"].tolist()
    resumed.step()



def test_evaluation_runs_under_inference_mode(digits_folder, store, spy):
    result = fit(image_config(digits_folder, freeze__preset="full", train__epochs=2), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    forwards = spy["forwards"]
    training = [f for f in forwards if f[2]]
    evaluating = [f for f in forwards if not f[2]]
    assert training and evaluating
    assert all(grad and not inference for grad, inference, _ in training)
    assert all(inference for _, inference, _ in evaluating)  # no autograd bookkeeping while evaluating


def test_amp_dtype_prefers_bf16_and_falls_back_to_fp16_with_a_grad_scaler(monkeypatch):
    # Mocked: this machine has no GPU; the real check runs in test_cuda_mixed_precision_run.
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.amp_dtype(cuda, True) == torch.bfloat16
    assert not devices.needs_grad_scaler(torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.amp_dtype(cuda, True) == torch.float16
    assert devices.needs_grad_scaler(torch.float16)
    assert devices.amp_dtype(cuda, False) is None
    assert devices.amp_dtype(torch.device("cpu"), True) is None and not devices.needs_grad_scaler(None)


def test_pick_device_order_with_mocked_accelerators(monkeypatch):
    # Mocked: neither CUDA nor MPS exists on this machine.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.pick_device("auto").type == "mps"
    assert devices.pick_device("mps").type == "mps"
    assert devices.pick_device("cuda").type == "cpu"  # asked for but missing: the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.pick_device("auto").type == "cuda"
    assert devices.pick_device("cpu").type == "cpu"


def test_channels_last_for_cnns_on_cuda_and_batchnorm_cnns_on_the_cpu():
    from transfer_core.batching import to_device
    from transfer_core.models import build_model
    cnn = build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16).net   # conv + BatchNorm blocks
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert devices.use_channels_last(cnn, cuda, "image")
    assert devices.use_channels_last(cnn, cpu, "image")
    no_batchnorm = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3) for _ in range(3)])   # as ConvNeXt: LayerNorm
    assert devices.use_channels_last(no_batchnorm, cuda, "image")
    assert not devices.use_channels_last(no_batchnorm, cpu, "image")
    patchify = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    assert not devices.use_channels_last(patchify, cuda, "image")  # a ViT-like stem gains nothing
    assert not devices.use_channels_last(cnn, torch.device("mps"), "image")
    assert not devices.is_channels_last(cnn)
    cnn.to(memory_format=torch.channels_last)
    assert devices.is_channels_last(cnn)
    batch = {"pixel_values": torch.zeros(2, 3, 8, 8)}
    moved = to_device(batch, cpu, channels_last=True)
    assert moved["pixel_values"].is_contiguous(memory_format=torch.channels_last)


def test_passes_without_autograd_batch_for_the_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert devices.eval_batch_size(8, cpu) == devices.eval_batch_size(128, cpu) == devices.CPU_EVAL_BATCH == 32
    assert devices.eval_batch_size(8, cuda) == 64 and devices.eval_batch_size(128, cuda) == 128


@pytest.mark.parametrize("fused", [True, False])
def test_resumed_optimizer_state_takes_its_parameters_layout(fused):
    """A moment stored contiguous (an older checkpoint) for a channels_last parameter: torch's fused step
    would update the wrong elements; after load_optimizer_state it steps as the uninterrupted run."""
    import copy
    torch.manual_seed(0)
    start = torch.randn(8, 4, 3, 3)
    grads = [torch.randn(8, 4, 3, 3) for _ in range(2)]
    plain = torch.nn.Parameter(start.clone())
    plain_opt = torch.optim.AdamW([plain], lr=0.1, fused=fused)
    plain.grad = grads[0].clone()
    plain_opt.step()
    saved = copy.deepcopy(plain_opt.state_dict())
    resumed = torch.nn.Parameter(plain.detach().clone().contiguous(memory_format=torch.channels_last))
    resumed_opt = torch.optim.AdamW([resumed], lr=0.1, fused=fused)
    load_optimizer_state(resumed_opt, saved)
    assert resumed_opt.state[resumed]["exp_avg"].stride() == resumed.stride()
    plain.grad, resumed.grad = grads[1].clone(), grads[1].contiguous(memory_format=torch.channels_last)
    plain_opt.step()
    resumed_opt.step()
    assert torch.allclose(resumed, plain, atol=1e-6)


def test_loader_workers_auto(monkeypatch):
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 16)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert devices.loader_workers(-1, cuda, per_item_work=True) == 4
    assert devices.loader_workers(-1, cuda, per_item_work=False) == 0
    assert devices.loader_workers(-1, cpu, per_item_work=True) == 0
    assert devices.loader_workers(3, cpu, per_item_work=False) == 3  # an explicit number is kept


def test_cudnn_benchmark_only_on_cuda_and_when_not_deterministic(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    devices.configure_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    devices.configure_backends(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is True
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    devices.configure_backends(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is False


def test_compile_failure_falls_back_with_a_notice(digits_folder, store, monkeypatch):
    def broken_compile(net, *a, **k):
        def call(**batch):
            raise RuntimeError("no C++ compiler found")
        return call
    monkeypatch.setattr(torch, "compile", broken_compile)
    rec = Recorder()
    compiled = fit(image_config(digits_folder, freeze__preset="full", train__compile=True), store=store, observers=[rec])
    plain = fit(image_config(digits_folder, freeze__preset="full"), store=store)
    assert compiled.status == RunStatus.COMPLETED, compiled.message
    notes = [e.message for e in rec.events if e.kind == "Notice" and "torch.compile" in e.message]
    assert len(notes) == 1 and "no C++ compiler" in notes[0]
    assert compiled.metrics["val_loss"] == plain.metrics["val_loss"]


def test_compiled_forward_does_not_swallow_out_of_memory():
    def oom(**batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    fallbacks = []
    fwd = devices.CompiledForward(torch.nn.Identity(), enabled=False, on_fallback=fallbacks.append)
    fwd.compiled = oom
    with pytest.raises(torch.cuda.OutOfMemoryError):
        fwd(input=torch.zeros(1))
    assert not fallbacks


def test_app_caps_torch_threads_and_the_engine_does_not(monkeypatch):
    pytest.importorskip("streamlit", reason="the app's own module needs streamlit (a GPU machine may lack it)")
    from app import resources
    monkeypatch.delenv("TRANSFER_APP_TORCH_THREADS", raising=False)
    monkeypatch.setattr(resources.os, "cpu_count", lambda: 8)
    assert resources.torch_threads() == 7
    monkeypatch.setattr(resources.os, "cpu_count", lambda: 1)
    assert resources.torch_threads() == 1
    monkeypatch.setenv("TRANSFER_APP_TORCH_THREADS", "3")
    assert resources.torch_threads() == 3
    before = torch.get_num_threads()
    try:
        resources.cap_torch_threads()
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    import transfer_core.jobs, transfer_core.trainer  # noqa: F401,E401
    assert torch.get_num_threads() == before  # importing the engine leaves the threads alone


def test_metrics_record_how_the_run_used_the_machine(digits_folder, store):
    result = fit(image_config(digits_folder, freeze__preset="full", train__epochs=1, train__device="cpu"), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    hardware = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())["hardware"]
    assert hardware == {"device": "cpu", "precision": "fp32", "channels_last": True, "compiled": False,
                        "batch_size": 8, "train_seconds": round(result.train_seconds, 2), "processes": 1}
