"""Domain adaptation: train on labelled source data so that the model also works on a new domain, from
unlabelled target data (AdaptConfig), and measure it there.

`DomainAdaptation` adds a term to every step's loss computed from the features (the head's input) of the
source batch and of a batch of target samples:
- dann (Ganin & Lempitsky, 2015): a small domain classifier tells source from target features; between
  them a gradient-reversal layer turns its gradient around, so the network learns features the classifier
  cannot tell apart. The reversal weight grows from 0 to adapt.weight as 2 / (1 + exp(-10 p)) - 1 over the
  run's progress p, DANN's schedule, so the new classifier first learns before it pushes back.
- coral (Sun & Saenko, 2016): adapt.weight times the squared distance between the two batches' feature
  covariances, divided by 4 d^2 (Deep CORAL).
`TargetValidation` scores the model on labelled target data at every epoch's end and at the run's end
(target_accuracy); it runs with any method, none included, which is the source-only baseline.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import batching
from ..config import RunConfig
from ..errors import TransferError
from ..evaluate import compute_metrics, predict_dataset
from ..optim import build_optimizer
from ..preparation import load_configured
from .component import LoopComponent


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times -weight backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


def dann_weight(progress: float, top: float) -> float:
    """DANN's schedule of the reversal weight: 0 at the start, close to `top` by the end."""
    return top * (2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: ||C_s - C_t||_F^2 / (4 d^2) between the batches' feature covariances."""
    if len(source) < 2 or len(target) < 2:
        return source.sum() * 0.0    # a covariance needs two samples (a last batch of one)
    d = source.shape[1]
    difference = torch.cov(source.T) - torch.cov(target.T)
    return (difference * difference).sum() / (4.0 * d * d)


def domain_classifier(width: int) -> nn.Module:
    """Source or target? Two hidden layers of 256, as DANN's domain classifier (smaller for small features)."""
    hidden = min(256, max(32, width))
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class DomainAdaptation(LoopComponent):
    needs_features = True

    def __init__(self, config: RunConfig):
        self.method = config.adapt.method
        self.samples = None
        self.classifier: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.restored: dict | None = None
        self.order: tuple[int, list] = (-1, [])      # (target epoch, its batches)
        self.scale = 1.0                               # the grad scaler's factor in this step's loss

    def run_started(self, loop, *, resumed: bool) -> None:
        from ..data.unlabelled import load_unlabelled
        cfg = loop.config
        if not loop.built.net.supports_feature_split:
            raise TransferError(f"{cfg.model.name} cannot be adapted: its features cannot be read apart from its head; "
                                "pick another model (see `python -m transfer_core models`) or set adapt.method none")
        target = load_unlabelled(cfg.adapt.target, modality=loop.data.modality, text_column=cfg.data.text_column,
                                 image_column=cfg.data.image_column, allowed_roots=loop.allowed_roots)
        self.samples = batching.sample_set(loop.built, target, augment=cfg.augment, decoded=cfg.train.cache_images,
                                           cache_root=loop.runs_root)
        loop.notify(f"domain adaptation ({self.method}): {len(target)} unlabelled samples of the new domain join "
                    "every training step; every layer runs at every step")

    def extend_batch(self, loop, inputs: dict, index: int) -> dict:
        # One forward for both domains, as TLlib's DANN: BatchNorm normalises the mixed batch, in training and
        # in the exact statistics the evaluated model keeps (NormStatistics), so the features a target sample
        # gets at evaluation are those it got in training. Separate forwards left the target features trained
        # with target batch statistics but evaluated with the source's.
        pad_id = getattr(getattr(loop.built.preprocess, "tokenizer", None), "pad_token_id", None) or 0
        return batching.concat_inputs(inputs, self._target_batch(loop, index), pad_id)

    def extra_loss(self, loop, logits, targets):
        features = loop.step_features.flatten(1)
        source, target = features[:len(targets)], features[len(targets):]
        if self.method == "coral":
            return loop.config.adapt.weight * coral_loss(source.float(), target.float())
        classifier = self._classifier(loop, source.shape[1])
        progress = loop.state.global_step / max(1, loop.state.epochs * loop.steps_per_epoch)
        features = GradientReversal.apply(torch.cat([source, target]), dann_weight(progress, loop.config.adapt.weight))
        domains = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(source.device)
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        self.scale = float(loop.scaler.get_scale()) if loop.scaler.is_enabled() else 1.0
        return nn.functional.binary_cross_entropy_with_logits(classifier(features.float()).squeeze(1), domains)

    def step_ended(self, loop, *, epoch, step_in_epoch, loss) -> None:
        if self.optimizer is None:
            return
        grads = [p.grad for p in self.classifier.parameters() if p.grad is not None] if self.classifier else []
        if self.scale != 1.0:   # the loss was scaled for float16 (devices.needs_grad_scaler): unscale
            for g in grads:
                g.div_(self.scale)
        if all(torch.isfinite(g).all() for g in grads):
            self.optimizer.step()

    def _classifier(self, loop, width: int) -> nn.Module:
        if self.classifier is None:
            self.classifier = domain_classifier(width).to(loop.device)
            cfg = loop.config.optim
            self.optimizer = build_optimizer([{"params": list(self.classifier.parameters()), "lr": cfg.lr,
                                               "weight_decay": cfg.weight_decay}], cfg, device=loop.device)
            if self.restored:
                self.classifier.load_state_dict(self.restored["classifier"])
                self.optimizer.load_state_dict(self.restored["optimizer"])
            self.restored = None
        return self.classifier

    def _target_batch(self, loop, step: int) -> dict:
        """The target samples of `step`: batch `step % n` of target epoch `step // n`, shuffled per target
        epoch by the run's seed, so a resumed run sees what an uninterrupted one does."""
        assert self.samples is not None
        batch_size = min(loop.state.batch_size, len(self.samples))
        per_epoch = math.ceil(len(self.samples) / batch_size)
        epoch, index = divmod(step, per_epoch)
        if self.order[0] != epoch:
            self.order = (epoch, batching.epoch_batches(len(self.samples), batch_size, shuffle=True,
                                                        seed=loop.config.train.seed + 7919, epoch=epoch,
                                                        lengths=batching.sample_lengths(self.samples)))
        inputs, _, _ = next(iter(batching.device_batches(loop.built, self.samples, [self.order[1][index]], loop.device,
                                                         channels_last=loop.channels_last)))
        return inputs

    def state_dict(self) -> dict:
        if self.classifier is None or self.optimizer is None:
            return {}
        return {"classifier": self.classifier.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.restored = state
        if self.classifier is not None and self.optimizer is not None:   # an out-of-memory retry goes back
            self.classifier.load_state_dict(state["classifier"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.restored = None


class TargetValidation(LoopComponent):
    """target_accuracy and target_macro_f1 on adapt.target_val: each epoch and for the model the run gives."""

    def __init__(self):
        self.dataset = None
        self.samples = None

    def run_started(self, loop, *, resumed: bool) -> None:
        self.dataset = load_configured(loop.config.adapt.target_val, loop.config, allowed_roots=loop.allowed_roots)
        unknown = sorted(set(self.dataset.classes) - set(loop.data.classes))
        if unknown:
            loop.notify(f"the labelled new-domain data has classes the training data lacks ({', '.join(unknown[:5])}); "
                        "its samples of those classes are left out of target_accuracy")
        self.samples = batching.sample_set(loop.built, self.dataset, decoded=loop.config.train.cache_images,
                                           cache_root=loop.runs_root)

    def scores(self, loop) -> dict:
        preds = predict_dataset(loop.built, self.dataset, batch_size=loop.state.eval_batch_size, device=loop.device,
                                amp=loop.amp is not None, samples=self.samples, keep_on_device=True)
        metrics = compute_metrics(preds.true, preds.pred, loop.built.classes)
        return {"target_accuracy": metrics["accuracy"], "target_macro_f1": metrics["macro_f1"]}

    def epoch_ended(self, loop, row, outcome) -> None:
        row.update(self.scores(loop))

    def finishing(self, loop) -> None:
        loop.extra_metrics.update(self.scores(loop))   # after the best epoch's weights and exact statistics


def adaptation_components(config: RunConfig) -> list[LoopComponent]:
    """The components a run's adapt settings ask for (none for a plain run)."""
    components: list[LoopComponent] = []
    if config.adapt.method != "none":
        components.append(DomainAdaptation(config))
    if config.adapt.target_val.strip():
        components.append(TargetValidation())
    return components
