"""The built-in demo runs: offline data and offline models, sized to finish in about a minute on a laptop CPU.

A demo is there to watch a model learn, so its epochs must do visible work: the top layer groups train
(top_k) above a frozen part that runs once per sample, and each epoch trains them on its stored output.
Head-only training would spend the whole run in that one frozen pass and then draw every epoch at once.
Measured with benchmarks/demo_timing.py (docs/benchmarks.md, "The demos").
"""
from __future__ import annotations

from typing import Any

from transfer_core.config import RunConfig
from transfer_core.freezing import apply_recommended_rates
from transfer_core.models import get_spec

# Settings by dotted name (what RunConfig.set takes).
DEMOS: dict[str, dict[str, Any]] = {
    # 600 images: 480 train the top 4 of EfficientNet-Lite0's 10 groups (stage6, stage7, head_conv, head).
    "image": {"data.path": "demo:fashion-mnist?per_class=60", "model.name": "efficientnet_lite0",
              "model.image_size": 128, "freeze.preset": "top_k", "freeze.top_k": 4, "train.epochs": 10},
    # 250 texts: 200 train MiniLM's last transformer layer and the head; 128 tokens keep the BBC leads.
    "text": {"data.path": "demo:bbc-news?per_class=50", "model.name": "minilm_l6", "model.max_length": 128,
             "freeze.preset": "top_k", "freeze.top_k": 2, "train.epochs": 10},
}
DEMO_NAMES = {"image": "Fashion-MNIST demo", "text": "BBC News demo"}


def demo_config(modality: str) -> RunConfig:
    cfg = RunConfig()
    for key, value in DEMOS[modality].items():
        cfg.set(key, value)
    apply_recommended_rates(cfg, get_spec(cfg.model.name))   # the new head fast, the pretrained groups slow
    return cfg


def describe_path(path: str) -> str:
    """A short human name for a data path."""
    if path.startswith("demo:"):
        name, _, query = path.removeprefix("demo:").partition("?")
        nice = {"fashion-mnist": "Fashion-MNIST demo images", "bbc-news": "BBC News demo texts",
                "digits": "digits demo images", "digits-shifted": "shifted digits demo images"}.get(name, name)
        return f"{nice} ({query.replace('per_class=', '')} per class)" if query else nice
    from pathlib import Path
    p = Path(path)
    return f"your upload {p.name}" if "uploads" in p.parts else p.name
