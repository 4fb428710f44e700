"""The CUDA paths on a real GPU: mixed precision, the fp16 grad scaler, a real out-of-memory retry,
the feature cache, data-loading workers, torch.compile. Every test here skips on a machine without CUDA
(the CPU checks of the same code, with mocks, are in test_speed.py)."""
from __future__ import annotations

import gc
import json
import math

import pytest
import torch

from transfer_core.checkpoint import load_checkpoint
from transfer_core.events import RunStatus
from transfer_core.run_files import CHECKPOINT_FILE, METRICS_FILE
from transfer_core.trainer import fit

from test_trainer import Recorder, image_config, text_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def hardware(store, result) -> dict:
    return json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())["hardware"]


def test_mixed_precision_trains_like_fp32_and_reports_its_precision_and_memory(digits_folder, store):
    sets = {"freeze__preset": "full", "train__device": "cuda", "train__epochs": 4}
    amp = fit(image_config(digits_folder, **sets), store=store)
    fp32 = fit(image_config(digits_folder, train__mixed_precision=False, **sets), store=store)
    assert amp.status == fp32.status == RunStatus.COMPLETED, amp.message or fp32.message
    hw_amp, hw_fp32 = hardware(store, amp), hardware(store, fp32)
    assert hw_amp["device"].startswith("cuda (") and hw_amp["channels_last"]
    assert hw_amp["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert hw_fp32["precision"] == "fp32"
    assert hw_amp["peak_gpu_memory_mib"] > 0 and hw_fp32["peak_gpu_memory_mib"] > 0
    assert math.isfinite(amp.metrics["val_loss"])
    # 12 validation images: one image is 8 points; mixed precision may move a couple of them.
    assert abs(amp.metrics["val_accuracy"] - fp32.metrics["val_accuracy"]) <= 0.25
    assert amp.metrics["val_loss"] == pytest.approx(fp32.metrics["val_loss"], rel=0.25)


def test_fp16_with_a_grad_scaler_where_bf16_is_missing(digits_folder, store, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # an older GPU
    result = fit(image_config(digits_folder, freeze__preset="full", train__device="cuda"), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    assert hardware(store, result)["precision"] == "fp16"
    assert math.isfinite(result.metrics["val_loss"])
    scaler = load_checkpoint(store.run_dir(result.run_id) / CHECKPOINT_FILE)["scaler"]
    assert scaler and scaler["scale"] > 0   # the scaler ran and its state is checkpointed for a resume


def test_a_real_out_of_memory_halves_the_batch_and_the_run_completes(digits_folder, store, monkeypatch):
    from transfer_core import trainer
    # cuDNN's autotuning tries convolution algorithms with workspaces of any size, which would make
    # the peak at batch 4 (and so the cap below) a matter of chance.
    monkeypatch.setattr(trainer, "configure_backends", lambda device: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    sets = {"model__name": "resnet18", "model__image_size": 224, "freeze__preset": "full", "train__device": "cuda",
            "train__epochs": 1, "optim__lr": 1e-3}
    gc.collect()
    in_use = torch.cuda.memory_allocated()   # what earlier tests in this process still hold
    small = fit(image_config(digits_folder, train__batch_size=4, **sets), store=store)
    assert small.status == RunStatus.COMPLETED, small.message
    run_peak_at_4 = hardware(store, small)["peak_gpu_memory_mib"] * 2**20 - in_use
    gc.collect()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # Room for about batch 8 (weights, optimizer state, a few activations): batch 48 cannot fit.
    torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_allocated() + 2.5 * run_peak_at_4) / total))
    try:
        rec = Recorder()
        big = fit(image_config(digits_folder, train__batch_size=48, **sets), store=store, observers=[rec])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert big.status == RunStatus.COMPLETED, big.message
    retries = [m for m in rec.notices() if m.startswith("Out of memory at batch size")]
    assert retries and "batch size 48" in retries[0]
    assert hardware(store, big)["batch_size"] < 48
    assert math.isfinite(small.metrics["val_loss"]) and math.isfinite(big.metrics["val_loss"])


def test_feature_cache_on_the_gpu_gives_the_metrics_of_the_full_forward(digits_folder, store):
    sets = {"freeze__preset": "feature_extraction", "optim__lr": 0.01, "train__device": "cuda"}
    cached_rec = Recorder()
    cached = fit(image_config(digits_folder, **sets), store=store, observers=[cached_rec])
    plain = fit(image_config(digits_folder, train__cache_features=False, **sets), store=store)
    assert cached.status == plain.status == RunStatus.COMPLETED
    assert any("frozen backbone" in m for m in cached_rec.notices())
    # Mixed precision and cuDNN's per-batch-size kernels round differently from the CPU: close, not bit-equal.
    assert cached.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], rel=0.02, abs=1e-3)


def test_decoded_images_kept_on_the_gpu_give_the_loaders_batches(digits_folder, monkeypatch):
    from transfer_core import batching
    from transfer_core.data import load_dataset
    from transfer_core.models import build_model
    from test_batching import loader_batches
    ds = load_dataset(str(digits_folder))
    built = build_model("tiny_cnn", ds.classes, pretrained=False, image_size=12)
    cuda = torch.device("cuda")
    batches = batching.epoch_batches(len(ds), 5, shuffle=True, seed=3)
    samples = batching.sample_set(built, ds, decoded=True)
    assert samples.batch_source(cuda) is None          # not asked to keep them there: the loader's path
    kept = list(batching.device_batches(built, samples, batches, cuda, keep_on_device=True))
    assert samples._on_device["cuda"] is not None and samples._on_device["cuda"].is_cuda
    for (inputs, targets, indices), want in zip(kept, loader_batches(built, samples, batches, "cuda"), strict=True):
        assert inputs["pixel_values"].is_cuda
        assert torch.equal(inputs["pixel_values"], want["pixel_values"])
        assert torch.equal(targets, want["targets"]) and torch.equal(indices, want["indices"])
    samples.drop_device_copies()
    assert samples.batch_source(cuda, keep_on_device=True) is None and not samples._on_device
    # A set larger than its share of the GPU's free memory stays on the host.
    monkeypatch.setattr(batching, "DEVICE_PIXELS_SHARE", 0.0)
    assert batching.sample_set(built, ds, decoded=True).batch_source(cuda, keep_on_device=True) is None


def test_training_from_pixels_kept_on_the_gpu_matches_the_loader(digits_folder, store, monkeypatch):
    from transfer_core import batching
    sets = {"freeze__preset": "full", "train__device": "cuda", "train__mixed_precision": False}
    kept = fit(image_config(digits_folder, **sets), store=store)
    monkeypatch.setattr(batching, "DEVICE_PIXELS_SHARE", 0.0)   # every batch through the DataLoader's workers
    loaded = fit(image_config(digits_folder, **sets), store=store)
    assert kept.status == loaded.status == RunStatus.COMPLETED, kept.message or loaded.message
    # The same batches in the same order; cuDNN's autotuned kernels may round differently between runs.
    assert kept.metrics["val_loss"] == pytest.approx(loaded.metrics["val_loss"], rel=1e-3)


def test_augmented_images_load_in_worker_processes_on_the_gpu(digits_folder, store):
    result = fit(image_config(digits_folder, freeze__preset="full", augment__flip=True, augment__rotation=10.0,
                              train__device="cuda"), store=store)
    assert result.status == RunStatus.COMPLETED, result.message


def test_text_model_trains_with_mixed_precision_on_the_gpu(topics_csv, store):
    result = fit(text_config(topics_csv, train__device="cuda"), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    assert hardware(store, result)["precision"] in ("bf16", "fp16")


def test_torch_compile_works_on_the_gpu(digits_folder, store):
    rec = Recorder()
    result = fit(image_config(digits_folder, freeze__preset="full", train__device="cuda", train__compile=True,
                              train__epochs=2), store=store, observers=[rec])
    assert result.status == RunStatus.COMPLETED, result.message
    assert not [m for m in rec.notices() if "torch.compile failed" in m]
    assert hardware(store, result)["compiled"]
