"""The built-in demo runs: offline data and offline models, sized to finish in about a minute on a laptop CPU."""
from __future__ import annotations

from transfer_core.config import RunConfig

DEMOS = {
    "image": {"data.path": "demo:fashion-mnist?per_class=60", "model.name": "efficientnet_lite0",
              "model.image_size": 128, "train.epochs": 10, "optim.lr": 3e-3},
    "text": {"data.path": "demo:bbc-news?per_class=50", "model.name": "minilm_l6",
             "train.epochs": 10, "optim.lr": 3e-3},
}
DEMO_NAMES = {"image": "Fashion-MNIST demo", "text": "BBC News demo"}


def demo_config(modality: str) -> RunConfig:
    cfg = RunConfig()
    for key, value in DEMOS[modality].items():
        cfg.set(key, value)
    return cfg


def describe_path(path: str) -> str:
    """A short human name for a data path."""
    if path.startswith("demo:"):
        name, _, query = path.removeprefix("demo:").partition("?")
        nice = {"fashion-mnist": "Fashion-MNIST demo images", "bbc-news": "BBC News demo texts"}.get(name, name)
        return f"{nice} ({query.replace('per_class=', '')} per class)" if query else nice
    from pathlib import Path
    p = Path(path)
    return f"your upload {p.name}" if "uploads" in p.parts else p.name


def default_run_name(model: str, path: str) -> str:
    """e.g. "efficientnet_lite0 on Fashion-MNIST (60 per class)" or "minilm_l6 on reviews"."""
    if path.startswith("demo:"):
        name, _, query = path.removeprefix("demo:").partition("?")
        nice = {"fashion-mnist": "Fashion-MNIST", "bbc-news": "BBC News"}.get(name, name)
        data = f"{nice} ({query.replace('per_class=', '')} per class)" if query else nice
    else:
        from pathlib import Path
        p = Path(path)
        data = p.stem if p.suffix else p.name
    return f"{model} on {data}"
