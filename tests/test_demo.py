"""The demos are worth watching (issue 12): their epochs do visible work, the curves get new points for most
of the run instead of all at its end, and the model they make is good.

Head-only demos spent the run in one frozen pass and then drew all ten epochs within a fraction of a second
(0.2 s of curves in a 10 s run). The timings themselves depend on the machine; the shares tested here do not.
benchmarks/demo_timing.py prints the seconds (docs/benchmarks.md, "The demos").
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from app.demo import demo_config
from transfer_core.feature_cache import cache_cut
from transfer_core.freezing import body_lr, trainable_names, trains_body
from transfer_core.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def _timing_module():
    spec = importlib.util.spec_from_file_location("demo_timing", ROOT / "benchmarks" / "demo_timing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("modality", ["image", "text"])
def test_demo_epochs_train_pretrained_groups_above_a_cached_cut(modality):
    cfg = demo_config(modality)
    assert cfg.validate() == []
    assert trains_body(cfg.freeze)          # every epoch trains layers, not only a head on stored features
    built = build_model(cfg.model.name, ["a", "b"], image_size=cfg.model.image_size, max_length=cfg.model.max_length)
    names = [g.name for g in built.groups]
    trainable = trainable_names(names, cfg.freeze)
    cut = cache_cut(built, trainable, cfg)
    assert cut is not None and 0 < cut < len(names) - 1   # the frozen part still runs only once per sample
    assert cfg.optim.lr == 2e-3 and body_lr(cfg) < cfg.optim.lr   # the new head fast, the pretrained layers slow


@pytest.mark.slow
@pytest.mark.parametrize("modality,floor", [("image", 0.75), ("text", 0.9)])
def test_demo_curves_move_for_most_of_the_run_and_the_model_is_good(modality, floor):
    threads = max(1, (os.cpu_count() or 2) - 1)      # what the app gives training
    row = _timing_module().measure(modality, threads)
    assert row["status"] == "completed"
    assert row["val_accuracy"] >= floor, row
    # New points reach the chart from early on until the end (over half the run), with no long pause
    # (an epoch's validation is the longest).
    assert row["moving_span_s"] >= 0.5 * row["total_s"], row
    assert row["longest_pause_s"] <= 0.15 * row["moving_span_s"], row
