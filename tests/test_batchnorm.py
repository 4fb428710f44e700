"""BatchNorm running statistics fit the weights a run ends with (transfer_core/batchnorm.py).

The reference is torch's own `torch.optim.swa_utils.update_bn` on the training pixels, not the engine.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.optim.swa_utils import update_bn

from transfer_core import batchnorm
from transfer_core.batching import decode_image
from transfer_core.control import RunControl
from transfer_core.events import RunStatus
from transfer_core.models import build_model
from transfer_core.run_files import WEIGHTS_FILE
from transfer_core.trainer import fit
from test_trainer import Recorder, image_config

CLASSES = ["digit_0", "digit_1", "digit_2", "digit_3"]


@pytest.fixture(scope="module")
def digits_val(tmp_path_factory):
    """Validation digits (other images than digits_folder's), so all of data.path trains."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    root = tmp_path_factory.mktemp("digits_val")
    for label in range(4):
        (root / f"digit_{label}").mkdir()
        for i in np.flatnonzero(digits.target == label)[15:20]:
            Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8), mode="L").resize((16, 16)).save(
                root / f"digit_{label}" / f"{i}.png")
    return root


def training_pixels(folder, size=16) -> torch.Tensor:
    """All training images, normalised as tiny_cnn's preprocessing does ((x - 0.5) / 0.5)."""
    paths = sorted(folder.rglob("*.png"))
    return torch.stack([decode_image(p, size) for p in paths]).float().div(255).sub(0.5).div(0.5)


def saved_net(store, run_id):
    built = build_model("tiny_cnn", CLASSES, pretrained=False, image_size=16)
    built.net.load_state_dict(load_file(str(store.run_dir(run_id) / WEIGHTS_FILE)))
    return built.net


def norm_state(net: nn.Module, prefix: str) -> dict:
    return {k: v.clone() for k, v in net.state_dict().items() if k.startswith(prefix) and "running" in k}


def assert_same_statistics(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


# One batch holds the whole training set (60 images), so the exact statistics do not depend on
# how the engine orders its batches.
WHOLE_SET = dict(freeze__preset="full", train__batch_size=60, train__epochs=3)


@pytest.mark.parametrize("how", ["completed", "stopped", "early_stopping"])
def test_full_fine_tune_keeps_the_statistics_of_its_final_weights(digits_folder, digits_val, store, how):
    sets = dict(WHOLE_SET, data__val_path=str(digits_val))
    control, observers = RunControl(), []
    if how == "stopped":   # inside the only segment: no segment end recomputed them
        observers = [Recorder(lambda e: e.kind == "BatchEnded" and e.step == 2 and control.request_stop())]
    if how == "early_stopping":
        sets.update(train__early_stopping_patience=1, train__epochs=6, optim__lr=0.5, optim__scheduler="constant")
    result = fit(image_config(digits_folder, **sets), store=store, control=control, observers=observers)
    assert result.status == (RunStatus.STOPPED if how == "stopped" else RunStatus.COMPLETED), result.message
    net = saved_net(store, result.run_id)
    saved = norm_state(net, "")
    reference = saved_net(store, result.run_id)
    update_bn([training_pixels(digits_folder)], reference)
    assert_same_statistics(saved, norm_state(reference, ""))


def test_top_k_recomputes_only_the_trained_norms_from_cached_frozen_outputs(digits_folder, digits_val, store):
    sets = dict(WHOLE_SET, data__val_path=str(digits_val), freeze__preset="top_k", freeze__top_k=2)
    cfg = image_config(digits_folder, **sets)   # block3 and head train; block1 and block2 are cached
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    net = saved_net(store, result.run_id)
    torch.manual_seed(cfg.train.seed)
    initial = build_model("tiny_cnn", CLASSES, pretrained=False, image_size=16).net
    assert_same_statistics(norm_state(net, "block1"), norm_state(initial, "block1"))
    assert_same_statistics(norm_state(net, "block2"), norm_state(initial, "block2"))
    reference = saved_net(store, result.run_id).eval()
    with torch.no_grad():
        below = reference.block2(reference.block1(training_pixels(digits_folder)))
    update_bn([below], reference.block3)
    assert_same_statistics(norm_state(net, "block3"), norm_state(reference, "block3"))


def test_recompute_averages_batch_statistics_and_restores_the_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm1d(3, momentum=0.01), nn.Dropout(0.5), nn.Linear(3, 2))
    net.train()
    x = torch.randn(64, 3) * 4 + 2
    batches = [x[i:i + 16] for i in range(0, 64, 16)]
    n = batchnorm.recompute_statistics(net, [net[0]], [lambda b=b: net(b) for b in batches])
    assert n == 4
    torch.testing.assert_close(net[0].running_mean, x.mean(0))
    torch.testing.assert_close(net[0].running_var, torch.stack([b.var(0) for b in batches]).mean(0))
    assert net[0].momentum == 0.01 and net.training and net[1].training


def test_trained_norms_follow_the_trainable_groups_and_train_bn():
    built = build_model("tiny_cnn", CLASSES, pretrained=False, image_size=16)
    built.net.eval()
    block3 = batchnorm.trained_norms(built, ("block3", "head"), train_bn=False)
    assert block3 == [built.net.block3[1]]
    every = batchnorm.trained_norms(built, ("head",), train_bn=True)
    assert every == [built.net.block1[1], built.net.block2[1], built.net.block3[1]]
    assert batchnorm.trained_norms(built, ("head",), train_bn=False) == []
    assert not any(m.training for m in built.net.modules())   # modes left as they were


def test_recompute_batches_sample_at_most_the_cap_and_never_a_batch_of_one():
    batches = batchnorm.recompute_batches(33, 8, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(33))
    assert min(len(b) for b in batches) > 1
    big = batchnorm.recompute_batches(batchnorm.MAX_RECOMPUTE_SAMPLES + 500, 64, seed=0)
    assert sum(len(b) for b in big) == batchnorm.MAX_RECOMPUTE_SAMPLES
