"""Device choice and mixed-precision settings."""
from __future__ import annotations

import contextlib
import os
from typing import Callable

import torch


def pick_device(name: str = "auto") -> torch.device:
    """auto: cuda, then mps, then cpu. An explicit device that is missing falls back to cpu."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if name in ("auto", "mps") and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (which needs a grad scaler); None means full precision."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """"bf16", "fp16" or "fp32": the arithmetic a run trained in."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32") if dtype is not None else "fp32"


def describe_device(device: torch.device) -> str:
    """"cpu", or the accelerator's name, e.g. "cuda (NVIDIA H200)"."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    return dtype == torch.float16


# Batch size of passes without autograd on the CPU. Past it, activations outgrow the CPU's caches and
# convolutional backbones cost more per image (benchmarks/cpu_layout.py; docs/benchmarks.md).
CPU_EVAL_BATCH = 32


def eval_batch_size(train_batch_size: int, device: torch.device) -> int:
    """Batch size of the feature-cache pass and evaluation: on an accelerator at least 64 (no activations
    are kept for a backward pass, so larger batches fit and keep it busy); on the CPU, CPU_EVAL_BATCH."""
    return CPU_EVAL_BATCH if device.type == "cpu" else max(train_batch_size, 64)


def use_channels_last(net: torch.nn.Module, device: torch.device, modality: str) -> bool:
    """channels_last memory format for convolutional image models, where its kernels are faster.

    On CUDA for every convolutional net (cuDNN). On the CPU for those with BatchNorm (oneDNN): ResNet,
    MobileNet and EfficientNet train 1.1-1.9x faster per step on 2 cores, while ConvNeXt, without
    BatchNorm, gains nothing. A model counts as convolutional when it has several Conv2d layers: a
    vision transformer's single patch-embedding convolution gains nothing from it.
    """
    if modality != "image" or device.type not in ("cuda", "cpu"):
        return False
    if sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) < 3:
        return False
    return device.type == "cuda" or any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def is_channels_last(net: torch.nn.Module) -> bool:
    """True when the net's convolution weights are stored channels_last (see use_channels_last)."""
    for m in net.modules():
        # A 1x1 kernel, or one input channel (depthwise), is laid out the same either way.
        w = getattr(m, "weight", None) if isinstance(m, torch.nn.Conv2d) else None
        if w is not None and w.dim() == 4 and w.shape[1] > 1 and w.shape[2] * w.shape[3] > 1:
            return w.stride(1) == 1
    return False


def configure_backends(device: torch.device) -> None:
    """cuDNN autotuning on CUDA (input sizes are fixed per run), unless deterministic algorithms were asked for."""
    if device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True


def loader_workers(configured: int, device: torch.device, *, per_item_work: bool) -> int:
    """Data-loading processes: `configured` when >= 0; auto (-1) uses up to 4 on CUDA when items
    need work on the CPU (images: decoding, augmenting, gathering pixels), else 0: on the CPU the
    workers would compete with training for the same cores."""
    if configured >= 0:
        return configured
    if device.type != "cuda" or not per_item_work:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class CompiledForward:
    """`net(**batch)` through torch.compile when asked; when compiling fails (at wrap time or at the
    first call, where torch.compile reports most errors) it falls back to the eager module for the
    rest of the run and calls `on_fallback(exc)` once. Running out of memory is never a compile failure."""

    def __init__(self, net: torch.nn.Module, *, enabled: bool, on_fallback: Callable[[BaseException], None]):
        self.net = net
        self.on_fallback = on_fallback
        self.compiled = None
        if enabled:
            try:
                self.compiled = torch.compile(net)
            except Exception as exc:  # e.g. no compiler toolchain, unsupported Python
                self._fall_back(exc)

    @property
    def active(self) -> bool:
        return self.compiled is not None

    def _fall_back(self, exc: BaseException) -> None:
        self.compiled = None
        self.on_fallback(exc)

    def __call__(self, **batch):
        if self.compiled is not None:
            try:
                return self.compiled(**batch)
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise
                self._fall_back(exc)
        return self.net(**batch)
