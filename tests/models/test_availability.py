"""Whether each catalogue model is ready here, downloads on first use, or cannot be reached now (issue 12)."""
from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest

from transfer_core.models import get_spec
from transfer_core.models import huggingface, network
from transfer_core.models.network import DOWNLOAD, READY, UNREACHABLE, availability


@pytest.fixture
def network_up(monkeypatch, tmp_path):
    """Reachability under the test's control, and an empty torch hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = {"up": False}
    monkeypatch.setattr(network, "reachable", lambda host, *a, **k: state["up"])
    monkeypatch.setattr(huggingface, "reachable", lambda host, *a, **k: state["up"])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return state


def test_installed_local_and_test_models_are_ready(network_up):
    for name in ("efficientnet_lite0", "minilm_l6", "tiny_cnn", "tiny_bert"):
        assert availability(get_spec(name)) == READY, name


def test_downloads_are_ready_once_cached_else_depend_on_the_network(network_up, tmp_path):
    import torch
    import torchvision
    spec = get_spec("resnet18")
    assert availability(spec) == UNREACHABLE
    assert availability(spec, pretrained=False) == READY        # random initialisation downloads nothing
    network_up["up"] = True
    assert availability(spec) == DOWNLOAD
    network_up["up"] = False
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
    os.makedirs(os.path.dirname(cached))
    open(cached, "wb").close()
    assert availability(spec) == READY

    hub = get_spec("bert-base-uncased")
    assert availability(hub) == UNREACHABLE
    network_up["up"] = True
    assert availability(hub) == DOWNLOAD


def test_the_probe_goes_through_the_https_proxy_as_downloads_do(monkeypatch):
    """Behind a proxy a direct connect fails while downloads work: the probe asks the proxy instead."""
    from transfer_core.models import network
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert network._through_proxy("huggingface.co", 443) == ("huggingface.co", 443)
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    assert network._through_proxy("huggingface.co", 443) == ("proxy.internal", 3128)
    monkeypatch.setenv("no_proxy", "huggingface.co")
    assert network._through_proxy("huggingface.co", 443) == ("huggingface.co", 443)
