"""The Train page's number of GPUs: a run on several GPUs trains on one process per GPU (torchrun, PyTorch's
DistributedDataParallel; docs/distributed.md). Offered only when more than one GPU is visible."""
from __future__ import annotations

import math

import streamlit as st
import torch

from transfer_core.config import RunConfig


def process_count(cfg: RunConfig) -> int:
    """How many processes the run starts on: 1 unless the user picks several GPUs."""
    gpus = torch.cuda.device_count() if cfg.train.device in ("auto", "cuda") else 0
    if gpus < 2 or cfg.adapt.method != "none":   # (domain adaptation trains on one process)
        return 1
    count = int(st.number_input("GPUs to train on", min_value=1, max_value=gpus, value=gpus, step=1,
                                key="train_processes",
                                help="One training process per GPU; the batch size is shared between them."))
    if count > 1:
        share = math.ceil(cfg.train.batch_size / count)
        st.caption(f"{count} GPUs, {share} samples of each batch of {cfg.train.batch_size} on each; the run starts "
                   "as processes of its own and Pause and Stop act on all of them at the same step.")
    return count
