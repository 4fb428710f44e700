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


def digit_folders(root, per_class_train=20, per_class_val=6):
    """scikit-learn's digits (10 classes) at 32 px: a training folder and a validation folder of other images."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    digits = load_digits()
    for label in range(10):
        idx = np.flatnonzero(digits.target == label)
        for split, chosen in (("train", idx[:per_class_train]), ("val", idx[per_class_train:per_class_train + per_class_val])):
            (root / split / str(label)).mkdir(parents=True, exist_ok=True)   # numeric class names, as users have
            for i in chosen:
                Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8), mode="L").resize((32, 32)).save(
                    root / split / str(label) / f"{i}.png")
    return root / "train", root / "val"


def test_full_fine_tune_evaluates_its_training_images_as_it_trained_on_them(store, tmp_path):
    # EfficientNet-Lite0's BatchNorm layers keep momentum 0.01: without recomputed statistics the saved
    # model scored about 58 % on images it trained on at 99 % (batchnorm.py).
    from transfer_core.runs import evaluate_run
    train, val = digit_folders(tmp_path)
    cfg = RunConfig()
    cfg.data.path, cfg.data.val_path = str(train), str(val)
    cfg.model.name, cfg.model.image_size = "efficientnet_lite0", 64
    cfg.freeze.preset, cfg.optim.lr, cfg.train.epochs = "full", 1e-3, 6
    result = fit(cfg.check(), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    last_epoch = store.metrics(result.run_id, scope="epoch").iloc[-1]
    evaluated = evaluate_run(store, result.run_id, str(train))["accuracy"]
    assert abs(evaluated - last_epoch["train_accuracy"]) <= 0.03, (evaluated, last_epoch["train_accuracy"])
    assert result.metrics["val_accuracy"] >= 0.7
