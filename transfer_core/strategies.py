"""Comparing transfer strategies: the same data, split, seed and settings trained four ways, so that what the
pretrained layers bring shows as the difference between runs (head only, the top layers, everything, and the
same network from random weights). Only what defines a strategy changes; everything else is the user's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import RunConfig
from .models import get_spec


@dataclass(frozen=True)
class Strategy:
    name: str
    title: str
    settings: dict[str, Any]


STRATEGIES = (
    Strategy("head_only", "Head only", {"freeze.preset": "feature_extraction"}),
    Strategy("top_layers", "Top layers", {"freeze.preset": "top_k", "freeze.top_k": 3}),
    Strategy("full", "Full fine-tuning", {"freeze.preset": "full"}),
    # (the from_scratch recipe's settings: with no pretrained layers, every layer learns at the head's rate)
    Strategy("from_scratch", "From scratch", {"freeze.preset": "full", "model.pretrained": False,
                                              "freeze.body_lr_factor": 1.0}),
)


def registry_model(name: str, runs_dir=None, allowed_roots: list | None = None) -> str:
    """The catalogue model a run:<id> model was first built from (itself for any other model)."""
    spec = get_spec(name, runs_dir=runs_dir, allowed_roots=allowed_roots)
    while spec.from_run is not None:
        spec = get_spec(spec.from_run.base, runs_dir=runs_dir, allowed_roots=allowed_roots)
    return spec.name


def strategy_configs(cfg: RunConfig, runs_dir=None, allowed_roots: list | None = None) -> list[tuple[Strategy, RunConfig]]:
    """One config per strategy. From scratch builds the run's catalogue model: a run:<id> model's weights are
    its whole point, and random weights are random whatever run they would have come from. Domain adaptation is
    left out (head only cannot adapt, and all four must train alike); labelled new-domain data is still measured."""
    out = []
    for strategy in STRATEGIES:
        config = cfg.copy()
        config.adapt.method = "none"
        for key, value in strategy.settings.items():
            config.set(key, value)
        if strategy.name == "from_scratch":
            config.model.name = registry_model(cfg.model.name, runs_dir, allowed_roots)
            config.model.new_head = False
        out.append((strategy, config.check()))
    return out
