"""One run on several processes (torchrun), on PyTorch's own engine: DistributedDataParallel.

`World` is this process's place among the run's processes. A plain run is a world of one, whose methods
give back what they are given, so the loop reads the same either way. Under torchrun (WORLD_SIZE > 1) the
processes join one process group (NCCL on CUDA, gloo on the CPU) and:

- every global batch of `train.batch_size` samples (batching.epoch_batches: the same order for a seed and
  epoch, whatever the number of processes) is split between the processes, rank r taking samples r, r + n,
  ...; DistributedDataParallel averages the gradients, so a step is the step one process would take on the
  whole batch (with equal shares; BatchNorm layers that train see their process's share only, as in plain
  DDP on the CPU);
- the step's loss and hits, and the stop and pause requests, are summed over the processes at every step,
  so all of them stop or pause at the same step and report the same numbers;
- the frozen backbone's features are computed in shards and gathered (feature_cache.cached_features);
- only rank 0 writes: the run store, the run folder, checkpoints, the final weights. Every process
  validates the whole validation set on identical weights, so each decides the same about each epoch.

Step counts and checkpoints are in global batches, so a run resumes from any checkpoint with any number of
processes.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .component import LoopComponent

# How long a collective waits for a process that does not answer before the run fails (a rank that died
# without its process exiting). A paused run keeps talking every half second, so pauses do not count.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


class World:
    """A run of one process."""
    rank, size, local_rank = 0, 1, 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        return device

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every process."""
        return obj

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the processes."""
        return list(values)

    def step_numbers(self, loss: float, hits: float, n: int) -> tuple[float, float, int]:
        """A step's mean loss, hits and samples over all the processes' shares of the batch."""
        return loss, hits, n

    def agree(self, stop: bool, pause: bool) -> tuple[bool, bool]:
        """Whether any process was asked to stop, and to pause."""
        return stop, pause

    def share(self, indices: list[int]) -> list[int]:
        """This process's share of a batch (of sample indices)."""
        return indices

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order."""
        return [obj]

    def leave(self) -> None:
        """Leave the process group at the end of the run."""


class ProcessGroupWorld(World):
    """A run of WORLD_SIZE processes started by torchrun (RANK, LOCAL_RANK, MASTER_ADDR... in the environment)."""

    def __init__(self):
        self.rank = int(os.environ["RANK"])
        self.size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            # gloo for the loop's own small messages (on the CPU), NCCL for a CUDA model's gradients.
            dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)

    def device_for(self, device: torch.device) -> torch.device:
        # One GPU per process: the local rank's.
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def broadcast(self, obj: Any) -> Any:
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, *values: float) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def step_numbers(self, loss: float, hits: float, n: int) -> tuple[float, float, int]:
        loss_sum, hits, n_all = self.sum(loss * n, hits, n)
        return loss_sum / max(n_all, 1), hits, int(n_all)

    def agree(self, stop: bool, pause: bool) -> tuple[bool, bool]:
        stops, pauses = self.sum(float(stop), float(pause))
        return stops > 0, pauses > 0

    def share(self, indices: list[int]) -> list[int]:
        if len(indices) < self.size:   # every process must take part in every step: a sample is repeated
            return [indices[self.rank % len(indices)]] if indices else []
        return indices[self.rank::self.size]

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


LAUNCHED_AT = "TRANSFER_CORE_LAUNCHED_AT"   # set by the launcher (launch.py): when it started the processes


def launched_at() -> float | None:
    """When the launcher started this run's processes (a stop asked for since then counts), if it did."""
    try:
        return float(os.environ[LAUNCHED_AT])
    except (KeyError, ValueError):
        return None


def join_world() -> World:
    """The processes of this run: several under torchrun, else this one alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return ProcessGroupWorld()
    return World()


class _Dispatch(nn.Module):
    """Lets DistributedDataParallel run any of the net's training forwards (forward, head_logits on cached
    features, forward_from a cut, forward_with_features): DDP synchronises the gradients of what goes through
    its own forward."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, method: str, *args, **kwargs):
        return getattr(self.net, method)(*args, **kwargs)


class SyncedNet:
    """The net as the training steps call it, through DDP: `synced.head_logits(f)`, `synced(**batch)`."""

    def __init__(self, ddp: DistributedDataParallel):
        self.ddp = ddp

    def __call__(self, *args, **kwargs):
        return self.ddp("forward", *args, **kwargs)

    def __getattr__(self, method: str):
        return lambda *args, **kwargs: self.ddp(method, *args, **kwargs)


class DistributedTraining(LoopComponent):
    """Wraps the trainable part of the net in DDP at each freezing stage (its set of trainable parameters
    changes there), so the training steps' gradients are averaged over the processes."""

    def segment_started(self, loop) -> None:
        if not any(p.requires_grad for p in loop.built.net.parameters()):
            loop.train_net = None
            return
        device_ids = [loop.device] if loop.device.type == "cuda" else None
        # find_unused_parameters: a trainable group a step does not reach (a pooler the pooling skips) must not
        # make the processes wait for its gradients.
        ddp = DistributedDataParallel(_Dispatch(loop.built.net), device_ids=device_ids, find_unused_parameters=True)
        loop.train_net = SyncedNet(ddp)

    def finishing(self, loop) -> None:
        loop.train_net = None
