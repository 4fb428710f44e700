"""The frozen-prefix cache: the first k layer groups frozen run once per sample, the rest train on their outputs.

Fast tests use the tiny random models; the slow one uses the real offline MiniLM and prints the speed-up.
"""
from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load_file

from transfer_core import feature_cache
from transfer_core.config import RunConfig
from transfer_core.events import RunStatus
from transfer_core.feature_cache import cache_cut, cache_key, segments_cut
from transfer_core.freezing import plan_segments
from transfer_core.models import build_model
from transfer_core.run_files import WEIGHTS_FILE
from transfer_core.trainer import fit

IMAGE_CLASSES = ["digit_0", "digit_1", "digit_2", "digit_3"]


def config(kind: str, path, **sets) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = str(path)
    cfg.model.pretrained = False
    cfg.train.batch_size = 8
    cfg.freeze.preset = "top_k"
    cfg.model.head_dropout = 0.1
    cfg.optim.lr = 0.01
    cfg.train.device = "cpu"   # bit-equal comparisons: see test_trainer.py
    if kind == "image":
        cfg.model.name, cfg.model.image_size, cfg.train.epochs = "tiny_cnn", 16, 3
    else:
        cfg.model.name, cfg.model.max_length, cfg.train.epochs = "tiny_bert", 16, 2
    for key, value in sets.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.check()


def notices(events) -> list[str]:
    return [e.message for e in events if e.kind == "Notice"]


def run(cfg, store, events=None):
    events = [] if events is None else events
    result = fit(cfg, store=store, observers=[events.append])
    assert result.status == RunStatus.COMPLETED, result.message
    return result, notices(events)


def train_losses(events) -> list[float]:
    return [e.train_loss for e in events if e.kind == "EpochEnded"]


def test_prefix_then_forward_from_is_the_full_forward(topics_csv):
    torch.manual_seed(0)
    for name in ("tiny_cnn", "tiny_bert"):
        built = build_model(name, ["a", "b", "c"], pretrained=False)
        net = built.net.eval()
        assert set(net.prefix_cuts) == {1, 2}
        if built.modality == "image":
            batch = {"pixel_values": torch.randn(4, 3, 32, 32)}
        else:
            batch = dict(built.preprocess.tokenizer(["short", "a somewhat longer text than that"], padding=True,
                                                    return_tensors="pt"))
        with torch.no_grad():
            full = net(**batch)
            for cut in net.prefix_cuts:
                assert torch.equal(net.forward_from(cut, net.prefix(cut, **batch)), full), (name, cut)


@pytest.mark.parametrize("kind, data", [("image", "digits_folder"), ("text", "topics_csv")])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_cached_prefix_gives_the_same_metrics_as_running_it(kind, data, k, store, request):
    path = request.getfixturevalue(data)
    cached_events, plain_events = [], []
    cached, cached_notes = run(config(kind, path, freeze__top_k=k), store, cached_events)
    plain, plain_notes = run(config(kind, path, freeze__top_k=k, train__cache_features=False), store, plain_events)
    word = "frozen backbone" if k == 1 else "frozen layers"
    assert any(word in m and "once" in m for m in cached_notes), cached_notes
    assert not any("frozen" in m for m in plain_notes)
    assert cached.metrics["val_accuracy"] == plain.metrics["val_accuracy"]
    assert cached.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], abs=1e-5)
    assert train_losses(cached_events) == pytest.approx(train_losses(plain_events), abs=1e-5)


def test_cache_key_changes_with_the_cut_and_is_reused_across_hyperparameters(digits_folder, store):
    built = build_model("tiny_cnn", IMAGE_CLASSES, pretrained=False, image_size=16)
    cfg = config("image", digits_folder)
    keys = {cut: cache_key(cfg, built, "data", "train", cut=cut) for cut in (1, 2, 3)}
    assert len(set(keys.values())) == 3
    assert keys[3] == cache_key(cfg, built, "data", "train")   # the head cut keeps its key
    _, first = run(config("image", digits_folder, freeze__top_k=2), store)
    assert not any("reused" in m for m in first)
    _, other_cut = run(config("image", digits_folder, freeze__top_k=3), store)
    assert not any("reused" in m for m in other_cut) and any("frozen layers (block1)" in m for m in other_cut)
    _, again = run(config("image", digits_folder, freeze__top_k=2, optim__lr=0.02, train__epochs=2), store)
    assert any("frozen layers (block1, block2): outputs reused" in m for m in again), again


def test_prefix_weights_stay_bit_identical(digits_folder, store):
    cfg = config("image", digits_folder, freeze__top_k=2)
    result, notes = run(cfg, store)
    assert any("frozen layers" in m for m in notes)
    trained = load_file(str(store.run_dir(result.run_id) / WEIGHTS_FILE))
    torch.manual_seed(cfg.train.seed)
    fresh = build_model("tiny_cnn", IMAGE_CLASSES, pretrained=False, image_size=16)
    prefix = [fresh.group("block1"), fresh.group("block2")]
    prefix_modules = tuple(m + "." for g in prefix for m in g.module_names)
    changed = False
    for name, value in fresh.net.state_dict().items():
        if name.startswith(prefix_modules):    # weights and BatchNorm running statistics untouched
            assert torch.equal(value, trained[name]), name
        else:
            changed |= not torch.equal(value, trained[name])
    assert changed


def test_augmentation_or_train_bn_turns_the_prefix_cache_off(digits_folder, store):
    built = build_model("tiny_cnn", IMAGE_CLASSES, pretrained=False, image_size=16)
    trainable = ("block3", "head")
    assert cache_cut(built, trainable, config("image", digits_folder)) == 2
    assert cache_cut(built, trainable, config("image", digits_folder, augment__flip=True)) is None
    assert cache_cut(built, trainable, config("image", digits_folder, freeze__train_bn=True)) is None
    _, notes = run(config("image", digits_folder, freeze__top_k=2, augment__flip=True), store)
    assert not any("frozen" in m for m in notes)


def test_staged_caches_its_head_only_segment_only(digits_folder):
    built = build_model("tiny_cnn", IMAGE_CLASSES, pretrained=False, image_size=16)
    cfg = config("image", digits_folder, freeze__preset="staged", train__epochs=4)
    segments = plan_segments([g.name for g in built.groups], cfg.freeze, cfg.train.epochs)
    assert segments_cut(built, segments[:1], cfg) == 3
    assert segments_cut(built, segments[:2], cfg) is None


def test_prefix_cache_over_the_memory_bound_is_skipped_with_a_notice(topics_csv, store, monkeypatch):
    monkeypatch.setattr(feature_cache, "MAX_PREFIX_CACHE_BYTES", 1000)
    skipped, notes = run(config("text", topics_csv, freeze__top_k=2), store)
    assert any("not cached" in m for m in notes), notes
    monkeypatch.undo()
    plain, _ = run(config("text", topics_csv, freeze__top_k=2, train__cache_features=False), store)
    assert skipped.metrics["val_loss"] == plain.metrics["val_loss"]


@pytest.mark.slow
def test_minilm_top_k_cached_matches_uncached_and_is_faster(store):
    """Real MiniLM on BBC texts, last encoder layer + head training: prints the speed-up (no timing assertion)."""
    sets = dict(freeze__preset="top_k", freeze__top_k=2, model__max_length=128, train__epochs=3,
                train__batch_size=16, optim__lr=1e-3, model__head_dropout=0.1)

    def timed(**extra):
        cfg = RunConfig()
        cfg.data.path = "demo:bbc-news?per_class=30"
        cfg.model.name = "minilm_l6"
        for key, value in {**sets, **extra}.items():
            cfg.set(key.replace("__", "."), value)
        start = time.perf_counter()
        result, notes = run(cfg.check(), store)
        return result, notes, time.perf_counter() - start

    plain, _, plain_s = timed(train__cache_features=False)
    cached, notes, cached_s = timed()
    assert any("frozen layers" in m and "once" in m for m in notes), notes
    assert cached.metrics["val_accuracy"] == plain.metrics["val_accuracy"]
    assert cached.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], abs=1e-4)
    _, reuse_notes, reused_s = timed(optim__lr=2e-3)
    assert any("reused" in m for m in reuse_notes)
    print(f"\nMiniLM top_k=2 (layer5 + head), 3 epochs: uncached {plain_s:.1f} s (train {plain.train_seconds:.1f} s), "
          f"cached {cached_s:.1f} s (train {cached.train_seconds:.1f} s), cache reused {reused_s:.1f} s; "
          f"speed-up {plain_s / cached_s:.2f}x end to end, {plain_s / reused_s:.2f}x with the cache on disk")
