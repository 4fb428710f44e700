"""train.class_balance: a class-weighted loss and a balanced sampler (balance.py), checked against scikit-learn's
class weights and on real training runs where the small class is otherwise never predicted."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_head_hidden import fit_with_and_without_cache
from test_trainer import image_config

from transfer_core.balance import balance_inputs, loss_weights, sample_weights
from transfer_core.batching import epoch_batches
from transfer_core.config import ConfigError, RunConfig
from transfer_core.data import build_report
from transfer_core.events import RunStatus
from transfer_core.preparation import load_configured
from transfer_core.run_files import METRICS_FILE
from transfer_core.trainer import fit


@pytest.fixture(scope="module")
def rare_eights(tmp_path_factory):
    """'other' (20 each of nine digits, 180 images) against 'eight' (12 images): fifteen to one."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    root = tmp_path_factory.mktemp("rare-eights")
    for label, wanted, count in (("other", (0, 1, 2, 3, 4, 5, 6, 7, 9), 20), ("eight", (8,), 12)):
        (root / label).mkdir()
        for digit in wanted:
            for i in np.flatnonzero(digits.target == digit)[:count]:
                pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
                Image.fromarray(pixels, mode="L").resize((16, 16)).save(root / label / f"{i}.png")
    return root


def test_loss_weights_are_scikit_learns_balanced_class_weights():
    from sklearn.utils.class_weight import compute_class_weight
    targets = torch.tensor([0] * 30 + [1] * 6 + [3] * 4)   # class 2 has no training sample
    weights = loss_weights(targets, 4)
    present = np.array([0, 1, 3])
    expected = compute_class_weight("balanced", classes=present, y=targets.numpy())
    np.testing.assert_allclose(weights[present].numpy(), expected, rtol=1e-6)
    assert weights[2] == 0
    # Every class present carries the same total weight.
    totals = [float(weights[c] * (targets == c).sum()) for c in present]
    assert totals == pytest.approx([totals[0]] * 3)


def test_the_balanced_sampler_draws_every_class_about_equally_and_depends_only_on_seed_and_epoch():
    targets = torch.tensor([0] * 90 + [1] * 10)
    weights = sample_weights(targets, 2)
    drawn = [i for epoch in range(20) for batch in epoch_batches(100, 16, shuffle=True, seed=3, epoch=epoch,
                                                                   weights=weights) for i in batch]
    share_of_small = float((targets[drawn] == 1).float().mean())
    assert 0.45 < share_of_small < 0.55
    first = epoch_batches(100, 16, shuffle=True, seed=3, epoch=5, weights=weights)
    assert first == epoch_batches(100, 16, shuffle=True, seed=3, epoch=5, weights=weights)
    assert first != epoch_batches(100, 16, shuffle=True, seed=3, epoch=6, weights=weights)
    assert len(first) == 7 and sum(map(len, first)) == 100          # an epoch keeps its number of steps
    assert balance_inputs("none", targets, 2) == (None, None)


def test_a_setting_outside_the_choices_is_refused():
    cfg = RunConfig()
    cfg.set("train.class_balance", "oversample")
    assert cfg.validate()[0] == "train.class_balance is 'oversample'; choose one of: none, weighted_loss, balanced_sampler."
    with pytest.raises(ConfigError, match="class_balance"):
        cfg.check()


def test_the_data_report_names_class_balance_when_classes_are_imbalanced(rare_eights):
    report = build_report(load_configured(str(rare_eights), RunConfig()))
    finding = next(f for f in report.findings if f.code == "imbalance")
    assert "class_balance" in finding.fix


def defect_recall(store, run_id) -> float:
    metrics = json.loads((store.run_dir(run_id) / METRICS_FILE).read_text())
    return metrics["val"]["per_class"]["eight"]["recall"]


def test_balancing_makes_the_model_find_the_small_class(rare_eights, store):
    recalls = {}
    for balance in ("none", "weighted_loss", "balanced_sampler"):
        result = fit(image_config(rare_eights, train__epochs=2, train__class_balance=balance, freeze__preset="full",
                                  data__val_fraction=0.5), store=store)
        assert result.status == RunStatus.COMPLETED, result.message
        recalls[balance] = defect_recall(store, result.run_id)
    # Unbalanced, two epochs teach it to say 'other' for everything; balanced, it finds most eights.
    assert recalls["none"] < 0.5 <= min(recalls["weighted_loss"], recalls["balanced_sampler"]), recalls


@pytest.mark.parametrize("balance", ["weighted_loss", "balanced_sampler"])
def test_balanced_training_gives_the_same_model_from_cached_features(balance, rare_eights, store):
    fit_with_and_without_cache(image_config, rare_eights, store, freeze__preset="feature_extraction",
                               train__class_balance=balance)
