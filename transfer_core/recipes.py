"""The classic transfer-learning recipes, one click (or one --recipe) each.

A recipe fills settings of the run config that the user can then change: it is a starting point with a
reason, not a mode. `python -m transfer_core train --recipe NAME` applies it before the options given on
the command line (they win); the Model page's Recipes box applies it to the draft.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ConfigError, RunConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    about: str                  # what it does and when to use it, for the Model page and --help
    settings: dict[str, Any]    # dotted setting name -> value

    def apply(self, config: RunConfig) -> RunConfig:
        for key, value in self.settings.items():
            config.set(key, value)
        return config


RECIPES = {r.name: r for r in (
    Recipe("bert_finetune", "Fine-tune everything (BERT's recipe)",
           "Trains every layer with a small learning rate for a few epochs: Adam at 2e-5, 3 epochs, batch 16, "
           "dropout 0.1 before a linear head, texts up to 512 tokens, as BERT was fine-tuned. Use it for text "
           "classification when you have a few hundred examples or more; on a CPU, long texts make it slow "
           "(lower the max text length).",
           {"freeze.preset": "full", "model.head_dropout": 0.1, "optim.optimizer": "adam", "optim.lr": 2e-5,
            "freeze.body_lr_factor": 1.0, "optim.weight_decay": 0.0, "optim.scheduler": "linear_warmup",
            "optim.warmup_fraction": 0.1, "train.epochs": 3, "train.batch_size": 16, "model.max_length": 512}),
    Recipe("feature_extractor", "Frozen backbone as a feature extractor",
           "Keeps every pretrained layer frozen and trains only a new linear head, with plain SGD (learning rate "
           "1e-3, momentum 0.9). The backbone runs once per example, so it is the fastest recipe. Use it with "
           "little data, or as the first baseline to beat.",
           {"freeze.preset": "feature_extraction", "optim.optimizer": "sgd", "optim.lr": 1e-3, "optim.momentum": 0.9,
            "optim.nesterov": False, "optim.scheduler": "constant", "optim.weight_decay": 0.0,
            "model.head_dropout": 0.0}),
    Recipe("freeze_then_unfreeze", "Train the head, then unfreeze everything",
           "First trains the new head alone (3 epochs) so that its random start does not disturb the pretrained "
           "layers, then unfreezes everything at a tenth of the learning rate, decaying it after every epoch, "
           "with an L2 penalty of 1e-4. Use it when your data differs from what the model was pretrained on "
           "and you have enough of it to adapt the whole network.",
           {"freeze.preset": "staged", "freeze.staged_head_epochs": 3, "freeze.staged_lr_factor": 0.1,
            "freeze.body_lr_factor": 1.0, "optim.optimizer": "adam", "optim.lr": 1e-3, "optim.weight_decay": 1e-4,
            "optim.scheduler": "exponential", "optim.gamma": 0.9, "train.epochs": 8}),
    Recipe("gradual_unfreezing", "Unfreeze one group per epoch (ULMFiT)",
           "Trains the new head alone in the first epoch, then unfreezes one more layer group every epoch from the "
           "top down, until every group trains; lower groups learn more slowly (each at 0.6 times the rate of the "
           "group above, so the lowest of about ten groups gets a hundredth of the top rate), and each stage's rate "
           "warms up then decays, as ULMFiT's slanted triangular schedule. The pretrained layers are disturbed "
           "least: use it when full fine-tuning forgets too much or is unstable on small data. Give it at least "
           "as many epochs as the model has layer groups (the layer map lists them).",
           {"freeze.preset": "gradual", "freeze.lr_decay": 0.6, "optim.scheduler": "linear_warmup",
            "optim.warmup_fraction": 0.1, "train.epochs": 10}),
    Recipe("from_scratch", "Same network, random weights",
           "Trains the same network from random weights instead of pretrained ones: no transfer at all. It is the "
           "baseline every comparison needs: what the pretrained features bring is the difference between it "
           "and the other recipes.",
           {"model.pretrained": False, "freeze.preset": "full", "freeze.body_lr_factor": 1.0}),
)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"no recipe named '{name}'; choose one of {', '.join(RECIPES)}") from None
