"""Fixtures for the model tests: no network, and the slow offline builds shared per session."""
from __future__ import annotations

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def short_socket_timeout():
    """A download attempt on a silent network must fail fast, not hang the suite."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    yield
    socket.setdefaulttimeout(old)


@pytest.fixture(scope="session")
def lite0():
    from transfer_core.models import build_model
    torch.manual_seed(0)
    return build_model("efficientnet_lite0", ["a", "b", "c"], image_size=64)


@pytest.fixture(scope="session")
def minilm():
    from transfer_core.models import build_model
    torch.manual_seed(0)
    return build_model("minilm_l6", ["neg", "pos"], max_length=32)
