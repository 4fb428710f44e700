"""Which layer groups train, at what learning rate, and in which mode.

A run is a list of segments (epoch ranges). Each segment has one set of
trainable groups and one learning-rate factor: feature extraction, top-k and
full fine-tuning are one segment; "staged" is two (head alone, then
everything at a lower rate, as fastai's fine_tune); "gradual" unfreezes one more group each epoch from the
head down (ULMFiT's gradual unfreezing), one segment per epoch until every group trains; extending a finished run
appends one more. The trainer builds a fresh optimizer and schedule per segment.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .config import ConfigError, FreezeConfig
from .models.base import BuiltModel

NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


@dataclass(frozen=True)
class Segment:
    start_epoch: int
    end_epoch: int            # exclusive
    trainable: tuple[str, ...]
    lr_factor: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        return cls(int(d["start_epoch"]), int(d["end_epoch"]), tuple(d["trainable"]), float(d["lr_factor"]))


def trainable_names(group_names: list[str], cfg: FreezeConfig, *, stage: int = 0) -> tuple[str, ...]:
    """Names of the groups that train under `cfg`; stage 1 is the second half of a staged run."""
    preset = cfg.preset
    if preset == "feature_extraction" or (preset == "staged" and stage == 0):
        return (group_names[-1],)
    if preset == "top_k":
        return tuple(group_names[-min(cfg.top_k, len(group_names)):])
    if preset == "gradual":
        return tuple(group_names[-min(stage + 1, len(group_names)):])
    if preset in ("full", "staged"):
        return tuple(group_names)
    if preset == "custom":
        unknown = [n for n in cfg.trainable_groups if n not in group_names]
        if unknown:
            raise ConfigError(f"freeze.trainable_groups names unknown layer groups {unknown}; this model has: {', '.join(group_names)}")
        return tuple(n for n in group_names if n in cfg.trainable_groups)
    raise ConfigError(f"freeze.preset '{preset}' is unknown")


def frozen_gap(group_names: list[str], trainable: tuple[str, ...] | list[str]) -> str:
    """One line of warning when a frozen group sits between trained ones ('' otherwise; only custom choices do that)."""
    trained = [i for i, name in enumerate(group_names) if name in trainable]
    if len(trained) < 2:
        return ""
    gap = [name for name in group_names[trained[0]:trained[-1]] if name not in trainable]
    if not gap:
        return ""
    lowest, them = group_names[trained[0]], ", ".join(gap)
    it = "it" if len(gap) == 1 else "they"
    return (f"frozen between trained groups: {them}. That is unusual: training {lowest} changes the features "
            f"{them} {'was' if len(gap) == 1 else 'were'} pretrained on, and frozen {it} cannot adapt (gradients "
            f"still pass through, so freezing {'it' if len(gap) == 1 else 'them'} saves little time); "
            f"train {them} too, or freeze {lowest}")


def plan_segments(group_names: list[str], cfg: FreezeConfig, epochs: int) -> list[Segment]:
    if cfg.preset == "staged":
        head_epochs = min(cfg.staged_head_epochs, epochs - 1)
        return [Segment(0, head_epochs, trainable_names(group_names, cfg, stage=0)),
                Segment(head_epochs, epochs, trainable_names(group_names, cfg, stage=1), cfg.staged_lr_factor)]
    if cfg.preset == "gradual":
        # Epoch k trains the top k + 1 groups; the last stage keeps every group it reached to the end.
        stages = min(len(group_names), epochs)
        return [Segment(k, k + 1 if k < stages - 1 else epochs, trainable_names(group_names, cfg, stage=k))
                for k in range(stages)]
    return [Segment(0, epochs, trainable_names(group_names, cfg))]


def final_trainable(group_names: list[str], cfg: FreezeConfig, epochs: int) -> tuple[str, ...]:
    """The groups that train by the end of a run (for staged and gradual, more than at its start)."""
    return plan_segments(group_names, cfg, epochs)[-1].trainable


def segment_for_epoch(segments: list[Segment], epoch: int) -> int:
    for i, seg in enumerate(segments):
        if seg.start_epoch <= epoch < seg.end_epoch:
            return i
    return len(segments) - 1


def apply_trainable(built: BuiltModel, trainable: tuple[str, ...], *, train_bn: bool = False) -> None:
    """Set requires_grad per group; with train_bn, BatchNorm in frozen groups trains too (Lightning's train_bn)."""
    params = dict(built.net.named_parameters())
    for group in built.groups:
        on = group.name in trainable
        for name in group.param_names:
            params[name].requires_grad_(on)
    if train_bn:
        for module in _frozen_norm_modules(built, trainable):
            for p in module.parameters(recurse=False):
                p.requires_grad_(True)


def set_train_mode(built: BuiltModel, trainable: tuple[str, ...], *, train_bn: bool = False) -> None:
    """Train mode for trainable groups; frozen groups stay in eval mode (fixed features: no dropout
    noise, no BatchNorm statistic drift), except their BatchNorm layers when train_bn is on."""
    built.net.train()
    modules = dict(built.net.named_modules())
    for group in built.groups:
        if group.name in trainable:
            continue
        for name in group.module_names:
            module = modules[name]
            module.eval()
            if train_bn:
                for sub in module.modules():
                    if isinstance(sub, NORM_TYPES):
                        sub.train()


def _frozen_norm_modules(built: BuiltModel, trainable: tuple[str, ...]):
    modules = dict(built.net.named_modules())
    for group in built.groups:
        if group.name in trainable:
            continue
        for name in group.module_names:
            for sub in modules[name].modules():
                if isinstance(sub, NORM_TYPES):
                    yield sub


def optimizer_param_groups(built: BuiltModel, trainable: tuple[str, ...], *, lr: float, lr_decay: float,
                           weight_decay: float, body_lr_factor: float = 1.0) -> list[dict]:
    """One optimizer group per trainable layer group (two when some parameters skip weight decay).

    Discriminative rates: the head gets `lr`, the group below it `lr * body_lr_factor * lr_decay`, and
    each group further down `lr_decay` times the one above.
    Biases and normalisation weights (1-d tensors) get no weight decay, as is standard.
    Only parameters that require grad are included, so the optimizer holds no frozen state.
    """
    params = dict(built.net.named_parameters())
    n = len(built.groups)
    groups: list[dict] = []
    for depth, group in enumerate(built.groups):
        if group.name not in trainable:
            continue
        group_lr = lr * (lr_decay ** (n - 1 - depth)) * (body_lr_factor if depth < n - 1 else 1.0)
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name in group.param_names:
            p = params[name]
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        if decay:
            groups.append({"params": decay, "lr": group_lr, "weight_decay": weight_decay, "name": group.name})
        if no_decay:
            groups.append({"params": no_decay, "lr": group_lr, "weight_decay": 0.0, "name": group.name + ".no_decay"})
    # BatchNorm parameters of frozen groups that train because of train_bn.
    seen = {id(p) for g in groups for p in g["params"]}
    extra = [p for p in built.net.parameters() if p.requires_grad and id(p) not in seen]
    if extra:
        groups.append({"params": extra, "lr": lr * body_lr_factor * (lr_decay ** (n - 1)), "weight_decay": 0.0,
                       "name": "frozen_bn"})
    return groups


def head_lr(optimizer) -> float:
    """The head's current rate (optim.lr as scheduled): what runs report as their learning rate, since
    the pretrained groups' rates are fixed shares of it."""
    for group in optimizer.param_groups:
        if group.get("name") in ("head", "head.no_decay"):
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])


def parameter_summary(built: BuiltModel, trainable: tuple[str, ...]) -> list[dict]:
    """Per group: name, parameter count, whether it trains; input first, head last."""
    return [{"group": g.name, "params": g.num_params, "trainable": g.name in trainable} for g in built.groups]


def count_trainable(built: BuiltModel) -> tuple[int, int]:
    total = sum(p.numel() for p in built.net.parameters())
    trainable = sum(p.numel() for p in built.net.parameters() if p.requires_grad)
    return trainable, total


# ---- learning rates that suit the preset and the model ---------------------------------------
# The CLI (when --lr is not given) and the app's forms both take their defaults from here, so a
# preset change never leaves a rate that only suited the old preset. Values are for Adam-family
# optimizers; SGD takes steps about ten times larger.
HEAD_LR = 2e-3                       # a new, randomly initialised linear head
BODY_LR = {"transformer": 5e-5,      # BERT-style fine-tuning: 2e-5 to 5e-5 (Devlin et al., HF examples)
           "cnn": 2e-4}              # ImageNet CNNs tolerate larger steps than transformers
BODY_LR_RANGE = {"transformer": (5e-6, 2e-4), "cnn": (1e-5, 5e-3)}
HEAD_LR_RANGE = (1e-4, 5e-2)
SGD_SCALE = 10.0
RATE_KEYS = ("optim.lr", "freeze.body_lr_factor")
_ATTENTION_NAMES = ("vit", "deit", "swin", "beit", "dino")


def network_family(spec) -> str:
    """"transformer" for text models and vision transformers, else "cnn": what sets a safe rate for pretrained layers."""
    if spec.modality == "text":
        return "transformer"
    name = spec.base_name.lower()
    return "transformer" if any(word in name for word in _ATTENTION_NAMES) else "cnn"


def trains_body(cfg: FreezeConfig) -> bool:
    """Whether the preset trains any pretrained group (everything below the new head)."""
    if cfg.preset in ("full", "staged", "gradual"):
        return True
    if cfg.preset == "top_k":
        return cfg.top_k > 1
    if cfg.preset == "custom":
        return any(name != "head" for name in cfg.trainable_groups)
    return False


def recommended_rates(spec, optimizer: str = "adamw") -> dict[str, float]:
    """{"optim.lr": the head's rate, "freeze.body_lr_factor": pretrained groups' share of it} for `spec`.

    One pair serves every preset: the head always starts random, and the factor only acts where a
    preset trains pretrained groups (so switching presets needs no new rate)."""
    scale = SGD_SCALE if optimizer == "sgd" else 1.0
    return {"optim.lr": HEAD_LR * scale, "freeze.body_lr_factor": BODY_LR[network_family(spec)] / HEAD_LR}


def apply_recommended_rates(config, spec, *, keep=()) -> dict[str, float]:
    """Set the recommended rates on `config`, except the settings named in `keep` (the user's own);
    returns what was set."""
    chosen = {k: v for k, v in recommended_rates(spec, config.optim.optimizer).items() if k not in keep}
    for key, value in chosen.items():
        config.set(key, value)
    return chosen


def body_lr(config) -> float:
    """The rate of the highest pretrained group that trains (in a staged run, after unfreezing)."""
    rate = config.optim.lr * config.freeze.body_lr_factor * config.freeze.lr_decay
    return rate * config.freeze.staged_lr_factor if config.freeze.preset == "staged" else rate


def rate_warnings(config, spec) -> list[str]:
    """One sentence per learning rate that looks out of range for the preset and the model; empty when fine."""
    scale = SGD_SCALE if config.optim.optimizer == "sgd" else 1.0
    recommended = recommended_rates(spec, config.optim.optimizer)
    advice = (f"the defaults for {spec.name} are optim.lr {recommended['optim.lr']:g} for the new head and "
              f"freeze.body_lr_factor {recommended['freeze.body_lr_factor']:g} for the pretrained layers")
    out = []
    low, high = (x * scale for x in HEAD_LR_RANGE)
    lr = config.optim.lr
    if lr > high:
        out.append(f"optim.lr {lr:g} is very high: training will likely diverge ({low:g} to {high:g} suits a new head; {advice}).")
    elif lr < low:
        out.append(f"optim.lr {lr:g} is low for a new head, which starts from random weights: it will learn slowly "
                   f"({low:g} to {high:g} is typical; {advice}).")
    if trains_body(config.freeze):
        family = network_family(spec)
        low, high = (x * scale for x in BODY_LR_RANGE[family])
        rate = body_lr(config)
        kind = "a pretrained transformer" if family == "transformer" else "a pretrained CNN"
        if rate > high:
            out.append(f"The pretrained layers would train at {rate:g}, too fast for {kind}: large steps overwrite what "
                       f"it learned in pretraining and accuracy collapses ({low:g} to {high:g} is typical; {advice}).")
        elif rate < low:
            out.append(f"The pretrained layers would train at {rate:g}, so slowly that training them changes little "
                       f"({low:g} to {high:g} is typical; {advice}).")
    return out
