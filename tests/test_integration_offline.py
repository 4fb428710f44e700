"""Transfer really works: the real offline backbones on small real data sets (slow; run in CI).

Pretrained head-only training must beat random initialisation by a wide margin on the same budget.
"""
from __future__ import annotations

import pytest

from transfer_core.config import RunConfig
from transfer_core.events import RunStatus
from transfer_core.trainer import fit

pytestmark = pytest.mark.slow


def run(store, data, model, *, pretrained=True, **sets):
    cfg = RunConfig()
    cfg.data.path = data
    cfg.model.name = model
    cfg.model.pretrained = pretrained
    for key, value in sets.items():
        cfg.set(key.replace("__", "."), value)
    result = fit(cfg.check(), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    return result.metrics["val_accuracy"]


def test_minilm_head_only_on_bbc_news(store):
    # The bar: 250 BBC texts (50 per class), head only, >= 90 % validation accuracy.
    assert run(store, "demo:bbc-news?per_class=50", "minilm_l6") >= 0.90


def test_efficientnet_head_only_on_fashion_mnist(store):
    # 500 Fashion-MNIST images (50 per class), head only, >= 70 %.
    assert run(store, "demo:fashion-mnist?per_class=50", "efficientnet_lite0", model__image_size=128) >= 0.70


def test_pretrained_text_beats_random_init(store):
    budget = dict(model__max_length=64, train__epochs=5)
    pretrained = run(store, "demo:bbc-news?per_class=20", "minilm_l6", **budget)
    random_init = run(store, "demo:bbc-news?per_class=20", "minilm_l6", pretrained=False, **budget)
    assert pretrained >= random_init + 0.3, (pretrained, random_init)


def test_pretrained_image_beats_random_init(store):
    budget = dict(model__image_size=64, train__epochs=5)
    pretrained = run(store, "demo:fashion-mnist?per_class=20", "efficientnet_lite0", **budget)
    random_init = run(store, "demo:fashion-mnist?per_class=20", "efficientnet_lite0", pretrained=False, **budget)
    assert pretrained >= random_init + 0.2, (pretrained, random_init)
