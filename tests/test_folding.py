"""BatchNorm folded into convolutions for the frozen-layer pass: same outputs, and only where it is safe."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from transfer_core.feature_cache import compute_features, compute_prefix
from transfer_core.folding import first_samples, folded_for_inference
from transfer_core.models import build_model
from transfer_core.batching import sample_set
from transfer_core.data.loaders import load_dataset


def batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def trained_stats(net: nn.Module) -> nn.Module:
    """Running statistics away from 0/1, so that a BatchNorm left out or applied twice changes the output."""
    torch.manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


@torch.inference_mode()
def test_tiny_cnn_folds_every_batchnorm_and_gives_the_same_features():
    net = trained_stats(build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16).net)
    x = torch.randn(6, 3, 16, 16)
    folded = folded_for_inference(net, lambda m: m.features(pixel_values=x[:2]))
    assert folded is not net and batchnorms(folded) == 0 and batchnorms(net) == 3
    assert torch.allclose(folded.features(pixel_values=x), net.features(pixel_values=x), atol=1e-5)
    assert torch.allclose(folded.prefix(1, pixel_values=x), net.prefix(1, pixel_values=x), atol=1e-5)


@torch.inference_mode()
def test_efficientnet_lite0_pretrained_folds_with_same_padding_convolutions():
    pytest.importorskip("efficientnet_lite_pytorch", reason="EfficientNet-Lite0's code (requirements.txt) is not installed")
    net = build_model("efficientnet_lite0", ["a", "b"], image_size=64).net.eval()
    x = torch.randn(3, 3, 64, 64)
    folded = folded_for_inference(net, lambda m: m.features(pixel_values=x[:2]))
    assert batchnorms(folded) == 0 < batchnorms(net)
    want = net.features(pixel_values=x)
    assert (folded.features(pixel_values=x) - want).norm() <= 1e-4 * want.norm()


class ReusesConvOutput(nn.Module):
    """The convolution's output feeds its BatchNorm and a skip connection: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return y + torch.relu(self.bn(y))


class SharedBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.bn = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv1(x)) + self.bn(self.conv2(x))


@torch.inference_mode()
def test_unsafe_folds_are_refused():
    x = torch.randn(2, 3, 8, 8)
    reuse = trained_stats(ReusesConvOutput())
    assert folded_for_inference(reuse, lambda m: m(x)) is reuse        # the check against the original catches it
    shared = trained_stats(SharedBatchNorm())
    assert folded_for_inference(shared, lambda m: m(x)) is shared      # one BatchNorm after two convolutions
    training = build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16).net.train()
    assert folded_for_inference(training, lambda m: m.features(pixel_values=x)) is training   # batch statistics
    no_batchnorm = nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU())
    assert folded_for_inference(no_batchnorm, lambda m: m(x)) is no_batchnorm
    tiny = trained_stats(build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16).net)
    assert folded_for_inference(tiny, lambda m: m.features(pixel_values=x), mixed_precision=True) is tiny


@torch.inference_mode()
def test_the_folded_copy_keeps_the_nets_memory_layout():
    from transfer_core.devices import is_channels_last
    net = trained_stats(build_model("tiny_cnn", ["a", "b"], pretrained=False, image_size=16).net)
    net.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    folded = folded_for_inference(net, lambda m: m.features(pixel_values=x))
    assert batchnorms(folded) == 0 and is_channels_last(folded)


def test_first_samples_slices_tensors_only():
    few = first_samples({"pixel_values": torch.zeros(5, 3, 4, 4), "flag": True}, 2)
    assert few["pixel_values"].shape[0] == 2 and few["flag"] is True


def test_cache_passes_run_folded_match_the_net_and_leave_it_unchanged(digits_folder, monkeypatch):
    from transfer_core import feature_cache
    used = []
    real = feature_cache.folded_for_inference
    monkeypatch.setattr(feature_cache, "folded_for_inference", lambda net, run, **kw: used.append(real(net, run, **kw)) or used[-1])
    dataset = load_dataset(str(digits_folder))
    built = build_model("tiny_cnn", dataset.classes, pretrained=False, image_size=16)
    trained_stats(built.net)
    samples = sample_set(built, dataset, decoded=True)
    keys_before = list(built.net.state_dict())
    feats = compute_features(built, samples, batch_size=4, device=torch.device("cpu"), amp_dtype=None)
    prefix = compute_prefix(built, samples, 2, batch_size=4, device=torch.device("cpu"), amp_dtype=None)
    assert [batchnorms(net) for net in used] == [0, 1]   # the prefix below cut 2 never runs block3
    assert list(built.net.state_dict()) == keys_before and batchnorms(built.net) == 3
    pixels = samples.normalize(torch.stack([samples.pixels_of(i) for i in range(len(samples))]))
    with torch.inference_mode():
        assert torch.allclose(feats, built.net.features(pixel_values=pixels), atol=1e-5)
        assert torch.allclose(prefix.tensors["dense"], built.net.prefix(2, pixel_values=pixels), atol=1e-5)


def test_predictions_run_folded_and_channels_last_with_the_same_probabilities(digits_folder, monkeypatch):
    from transfer_core import evaluate
    from transfer_core.devices import is_channels_last
    dataset = load_dataset(str(digits_folder))
    built = build_model("tiny_cnn", dataset.classes, pretrained=False, image_size=16)
    trained_stats(built.net)
    samples = sample_set(built, dataset, decoded=True)
    pixels = samples.normalize(torch.stack([samples.pixels_of(i) for i in range(len(samples))]))
    with torch.inference_mode():
        want = torch.softmax(built.net(pixel_values=pixels), dim=-1).numpy()
    used = []
    real = evaluate.folded_for_inference
    monkeypatch.setattr(evaluate, "folded_for_inference", lambda net, run, **kw: used.append(real(net, run, **kw)) or used[-1])
    preds = evaluate.predict_dataset(built, dataset, batch_size=8, samples=samples)
    assert [batchnorms(net) for net in used] == [0]
    assert abs(preds.probs - want).max() < 1e-5
    assert is_channels_last(built.net) and batchnorms(built.net) == 3   # the layout changed, not the modules
