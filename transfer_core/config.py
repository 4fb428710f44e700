"""The run config: one typed, JSON-serialisable object that drives the UI forms,
the CLI, the saved run and the tests.

Each field carries metadata (help text, range, choices, whether it is an
advanced setting) so forms and validation are generated, not hand-written.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import TransferError

FREEZE_PRESETS = ("feature_extraction", "top_k", "full", "staged", "gradual", "custom")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("constant", "step", "exponential", "cosine", "onecycle", "linear_warmup", "plateau")
METRICS = ("val_loss", "val_accuracy", "val_macro_f1")
DEVICES = ("auto", "cpu", "cuda", "mps")
ADAPT_METHODS = ("none", "dann", "coral")
CLASS_BALANCE = ("none", "weighted_loss", "balanced_sampler")
POOLINGS = ("auto", "mean", "cls", "pooler")


def _field(default, help: str, *, min=None, max=None, choices=None, advanced=False, factory=None):
    meta = {"help": help, "min": min, "max": max, "choices": choices, "advanced": advanced}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    path: str = _field("", "Training data: an image folder or .zip with one subfolder per class, "
                           "a CSV of (image path, label), a CSV/TSV/JSONL text file, or demo:bbc-news / demo:fashion-mnist.")
    val_path: str = _field("", "Optional validation data in the same format. Empty: split off part of the training data.")
    test_path: str = _field("", "Optional test data in the same format, measured once at the end. Empty: data.test_fraction "
                                "of the training data (none by default).")
    text_column: str = _field("", "Text column of a text file. Empty: detected from common names (text, sentence, review, content).", advanced=True)
    label_column: str = _field("", "Label column. Empty: detected from common names (label, class, category, target).", advanced=True)
    image_column: str = _field("", "Image path column of an image CSV. Empty: detected (image, path, file, filename).", advanced=True)
    val_fraction: float = _field(0.2, "Share of the data held out for validation when no validation data is given.", min=0.05, max=0.5)
    test_fraction: float = _field(0.0, "Share of the data held out as a test set, evaluated once at the end.", min=0.0, max=0.5, advanced=True)
    max_per_class: int = _field(0, "Use at most this many samples per class (0: all). Handy for quick trials.", min=0, max=1_000_000, advanced=True)
    dedupe: bool = _field(True, "Drop exact duplicate samples (same content) before splitting.", advanced=True)
    merge_case: bool = _field(False, "Treat labels that differ only in upper/lower case (Cat, cat) as one class, "
                                     "named by its most common spelling.", advanced=True)


@dataclass
class ModelConfig:
    name: str = _field("efficientnet_lite0", "Pretrained model: a registry name, a Hugging Face hub id, a local Hugging Face folder, or run:<run id>.")
    pretrained: bool = _field(True, "Start from pretrained weights. Off: random initialisation (useful only as a baseline).", advanced=True)
    image_size: int = _field(224, "Images are resized to this many pixels square.", min=16, max=1024)
    max_length: int = _field(256, "Texts are cut to this many tokens.", min=8, max=4096)
    head_dropout: float = _field(0.0, "Dropout before the new classification head.", min=0.0, max=0.9, advanced=True)
    head_hidden: int = _field(0, "0: a linear head. N: a head with one hidden layer of N units (dropout, Linear(features, N), "
                                 "ReLU, dropout, Linear(N, classes); both dropouts are model.head_dropout). Useful when the "
                                 "frozen features are not linearly separable, e.g. feature extraction on data far from the "
                                 "pretraining data.", min=0, max=4096, advanced=True)
    pooling: str = _field("auto", "Texts: how the token states become one vector for the head. auto: as the model was trained "
                                  "(mean for sentence-transformers models such as all-MiniLM-L6-v2, the pooler for BERT-style "
                                  "classifiers); mean: the average of the tokens; cls: the first token; pooler: the model's "
                                  "pooler on the first token. Ignored for images.", choices=POOLINGS)
    new_head: bool = _field(False, "With a run:<id> model whose classes are the data's: a new, randomly initialised head "
                                   "instead of the run's trained one (a model of other classes always gets a new head).",
                            advanced=True)
    feature_layer: str = _field("", "The layer group the head reads (pooled as the layer probe does); the groups above it are "
                                    "removed. Empty: the last group below the head. On data far from the pretraining data a "
                                    "middle group often transfers better (python -m transfer_core probe measures each).",
                                advanced=True)


@dataclass
class FreezeConfig:
    preset: str = _field("feature_extraction", "Which layer groups train: feature_extraction (head only), top_k (the top k groups), "
                                               "full (everything), staged (head first, then everything at a lower rate), gradual (the head first, "
                                               "then one more group each epoch from the top down), custom (the list below).",
                         choices=FREEZE_PRESETS)
    top_k: int = _field(2, "With top_k: how many groups train, counting the head (1: the head only; 2: the head and the group below it).", min=1, max=1000)
    staged_head_epochs: int = _field(1, "With staged: epochs that train the head alone before everything is unfrozen.", min=1, max=1000)
    staged_lr_factor: float = _field(0.5, "With staged: the learning rate is multiplied by this when everything is unfrozen.", min=1e-4, max=1.0, advanced=True)
    lr_decay: float = _field(1.0, "Discriminative learning rates: each group further from the head gets the rate of the group above times this (1: same rate everywhere).",
                             min=0.01, max=1.0, advanced=True)
    body_lr_factor: float = _field(1.0, "The pretrained groups that train learn at optim.lr times this; the new head at optim.lr. "
                                        "A new head starts from random weights and needs large steps, pretrained layers small ones "
                                        "(the app and the CLI pick it per model unless you set it).",
                                   min=1e-4, max=1.0, advanced=True)
    train_bn: bool = _field(False, "Let BatchNorm layers in frozen groups update their statistics (off keeps them in eval mode).", advanced=True)
    trainable_groups: list = _field(None, "With custom: names of the layer groups to train.", advanced=True, factory=list)


@dataclass
class OptimConfig:
    optimizer: str = _field("adamw", "Optimizer.", choices=OPTIMIZERS)
    lr: float = _field(2e-3, "Learning rate of the new head; pretrained groups that train get less (freeze.body_lr_factor, "
                             "freeze.lr_decay). For the pretrained layers of a transformer, 2e-5 to 5e-5 is typical.", min=1e-7, max=10.0)
    weight_decay: float = _field(0.01, "Weight decay (L2 penalty; decoupled for AdamW).", min=0.0, max=1.0, advanced=True)
    momentum: float = _field(0.9, "Momentum for SGD and RMSprop.", min=0.0, max=0.999, advanced=True)
    nesterov: bool = _field(False, "Nesterov momentum for SGD (off: plain momentum, as the classic recipes use).",
                            advanced=True)
    scheduler: str = _field("cosine", "How the learning rate changes over training (plateau: lowered by gamma when "
                                      "the validation metric stops improving).", choices=SCHEDULERS)
    warmup_fraction: float = _field(0.1, "Share of the steps used for linear warmup (linear_warmup and onecycle).", min=0.0, max=0.5, advanced=True)
    step_size: int = _field(3, "With step: epochs between learning-rate drops.", min=1, max=1000, advanced=True)
    gamma: float = _field(0.1, "With step: factor applied at each drop; with exponential: factor applied after "
                               "every epoch (e.g. 0.9); with plateau: factor applied when the metric stalls.",
                          min=0.001, max=1.0, advanced=True)
    plateau_patience: int = _field(2, "With plateau: epochs without improvement of train.early_stopping_metric "
                                      "before the learning rate is multiplied by gamma.", min=0, max=1000, advanced=True)
    label_smoothing: float = _field(0.0, "Label smoothing of the cross-entropy loss.", min=0.0, max=0.5, advanced=True)
    grad_clip: float = _field(0.0, "Clip the gradient norm to this value (0: no clipping).", min=0.0, max=1000.0, advanced=True)


@dataclass
class AugmentConfig:
    flip: bool = _field(False, "Random horizontal flips (images).")
    rotation: float = _field(0.0, "Random rotation up to this many degrees (images).", min=0.0, max=180.0)
    random_resized_crop: bool = _field(False, "Random crops of 50-100 % of the image, resized back (images).")
    color_jitter: float = _field(0.0, "Random brightness, contrast and saturation change of up to this share (images).", min=0.0, max=1.0)

    @property
    def enabled(self) -> bool:
        return self.flip or self.rotation > 0 or self.random_resized_crop or self.color_jitter > 0


@dataclass
class TrainConfig:
    epochs: int = _field(10, "Passes over the training data.", min=1, max=1000)
    batch_size: int = _field(32, "Samples per step.", min=1, max=4096)
    seed: int = _field(0, "Random seed: the same seed on the CPU gives the same metrics.", min=0, max=2**31 - 1)
    device: str = _field("auto", "Where to train: auto picks cuda, then mps, then cpu.", choices=DEVICES)
    class_balance: str = _field("none", "For classes of very different sizes: none (every sample counts once), "
                                        "weighted_loss (each class's samples weigh total/(classes x class size) in the loss, "
                                        "so every class counts the same), balanced_sampler (each epoch draws samples with "
                                        "replacement so that every class is drawn about equally often).",
                                choices=CLASS_BALANCE)
    mixed_precision: bool = _field(True, "Mixed precision (autocast) on CUDA. Ignored on the CPU.", advanced=True)
    early_stopping_patience: int = _field(0, "Stop after this many epochs without improvement of the metric below (0: off). The best weights are restored.",
                                          min=0, max=1000, advanced=True)
    early_stopping_metric: str = _field("val_loss", "Metric that ranks the epochs: early stopping watches it, and the run's best epoch is the best by it.",
                                       choices=METRICS, advanced=True)
    cache_features: bool = _field(True, "When the first layer groups are frozen (only the head, or the top k groups train) and augmentation is off, "
                                        "run the frozen layers once per sample and reuse their output every epoch (much faster, same result).", advanced=True)
    num_workers: int = _field(-1, "Background processes that load data (0: load in the training thread; -1: auto, "
                                  "up to 4 on CUDA when images are augmented or decoded per step, else 0).", min=-1, max=64, advanced=True)
    compile: bool = _field(False, "Compile the model with torch.compile (slow first steps, then often faster on GPUs). "
                                  "Falls back to the plain model with a notice when compiling fails.", advanced=True)
    checkpoint_every_s: float = _field(60.0, "Write a checkpoint at an epoch's end when the last one is at least this many seconds old "
                                             "(0: at every epoch's end). The last epoch, a stop, a pause and a failure always leave one.",
                                       min=0.0, max=86400.0, advanced=True)
    cache_images: bool = _field(True, "Decode and resize each image once and keep the pixels (in the runs folder's .image_cache); "
                                      "epochs then only augment and normalise. Off: decode every image at every epoch.", advanced=True)


@dataclass
class AdaptConfig:
    target: str = _field("", "Unlabelled data from the new domain the model should work on: an image folder or .zip "
                             "(class folders optional: their labels are not used), or a text file (a label column is not "
                             "used). Needed by the dann and coral methods.")
    target_val: str = _field("", "Optional labelled data from the new domain, in the training data's format: each epoch "
                                 "reports the model's accuracy on it (target_accuracy). Never trained on.")
    method: str = _field("none", "Domain adaptation: none (train on the labelled data only), dann (a domain classifier "
                                 "behind a gradient-reversal layer makes the features domain-invariant), coral (aligns "
                                 "the second-order statistics of the features of both domains, Deep CORAL).",
                         choices=ADAPT_METHODS)
    weight: float = _field(1.0, "Weight of the adaptation loss (for dann, its largest value: the weight grows from 0 "
                                "over the run, as in DANN's schedule).", min=0.0, max=100.0, advanced=True)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)

    # ---- serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        """The settings by section, with the layout's version (saved runs and drafts are upgraded by it)."""
        return {"version": CONFIG_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """Build a config from a (possibly partial) dict; unknown keys are errors. A dict with a "version" is
        upgraded from that layout; one without is read in today's layout (a config file someone wrote)."""
        if not isinstance(data, dict):
            raise ConfigError("the config must be a JSON object with sections " + ", ".join(section_names()))
        if "version" in data:
            data = upgrade(data)
        cfg = cls()
        for section, values in data.items():
            if section not in section_names():
                raise ConfigError(f"unknown config section '{section}'; use one of: {', '.join(section_names())}")
            if not isinstance(values, dict):
                raise ConfigError(f"config section '{section}' must be an object of settings")
            for key, value in values.items():
                cfg.set(f"{section}.{key}", value)
        return cfg

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the config file is not valid JSON ({exc.msg} at line {exc.lineno}); fix the file or start from the saved config.json of a run") from None

    @classmethod
    def of_saved_run(cls, data: dict) -> "RunConfig":
        """A config saved earlier (a run's, or the app's draft): one saved before versions were recorded has
        layout version 1."""
        if isinstance(data, dict) and "version" not in data:
            data = {"version": 1, **data}
        return cls.from_dict(data)

    def copy(self) -> "RunConfig":
        return RunConfig.from_dict(self.to_dict())

    # ---- access by dotted name ----------------------------------------
    def set(self, dotted: str, value: Any) -> None:
        """Set `section.field` to `value`, coercing strings (from the CLI) to the field's type."""
        section_obj, f = _resolve(self, dotted)
        setattr(section_obj, f.name, coerce(f, value, dotted))

    def get(self, dotted: str) -> Any:
        section_obj, f = _resolve(self, dotted)
        return getattr(section_obj, f.name)

    # ---- validation ----------------------------------------------------
    def validate(self) -> list[str]:
        """Every problem as one sentence naming the field and the fix; empty when valid."""
        problems = []
        for dotted, f, value in iter_fields(self):
            meta = f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                problems.append(f"{dotted} is '{value}'; choose one of: {', '.join(meta['choices'])}.")
            if isinstance(value, float) and not math.isfinite(value):
                # NaN passes every range check (all comparisons are false) and trains to NaN weights.
                problems.append(f"{dotted} is {value}; give a finite number (the default is {f.default}).")
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if meta.get("min") is not None and value < meta["min"]:
                    problems.append(f"{dotted} is {value}; it must be at least {meta['min']}.")
                if meta.get("max") is not None and value > meta["max"]:
                    problems.append(f"{dotted} is {value}; it must be at most {meta['max']}.")
        if not str(self.data.path).strip():
            problems.append("data.path is empty; give a data folder, zip, CSV/TSV/JSONL file or a demo set (demo:bbc-news, demo:fashion-mnist).")
        if not str(self.model.name).strip():
            problems.append("model.name is empty; pick a model (see `python -m transfer_core models`).")
        if self.data.test_path.strip() and self.data.test_fraction > 0:
            problems.append("data.test_path and data.test_fraction both ask for a test set; set data.test_fraction to 0 "
                            "to use the file, or clear data.test_path.")
        if self.data.val_fraction + self.data.test_fraction >= 0.9:
            problems.append("data.val_fraction + data.test_fraction leave under 10 % for training; lower them.")
        if self.freeze.preset == "custom" and not self.freeze.trainable_groups:
            problems.append("freeze.trainable_groups is empty with the custom preset; name at least one layer group to train, e.g. head.")
        if self.freeze.preset == "staged" and self.freeze.staged_head_epochs >= self.train.epochs:
            problems.append(f"freeze.staged_head_epochs ({self.freeze.staged_head_epochs}) must be below train.epochs ({self.train.epochs}) "
                            "so there is an epoch to train everything; raise the epochs or use feature_extraction.")
        if self.adapt.method != "none" and not self.adapt.target.strip():
            problems.append(f"adapt.method {self.adapt.method} needs unlabelled data from the new domain; give it with "
                            "--target PATH (adapt.target), or set adapt.method none.")
        if self.adapt.method != "none" and self.freeze.preset == "feature_extraction":
            problems.append(f"adapt.method {self.adapt.method} changes the features, but feature_extraction freezes "
                            "every layer that makes them; choose freeze.preset top_k, full, staged or gradual.")
        return problems

    def check(self) -> "RunConfig":
        """Raise ConfigError listing every problem; return self when valid."""
        problems = self.validate()
        if problems:
            raise ConfigError(" ".join(problems))
        return self


class ConfigError(TransferError, ValueError):
    """A setting is wrong; the message names the field and the fix."""


# ---- helpers shared by the CLI and the UI form builders -----------------
def section_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def iter_fields(cfg: RunConfig):
    """Yield (dotted name, dataclass field, current value) for every setting."""
    for section in dataclasses.fields(cfg):
        obj = getattr(cfg, section.name)
        for f in dataclasses.fields(obj):
            yield f"{section.name}.{f.name}", f, getattr(obj, f.name)


def field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(type_owner(f))
    return hints[f.name]


def type_owner(f: dataclasses.Field):
    for section in dataclasses.fields(RunConfig):
        cls = section.default_factory   # each section is a dataclass made by its default factory
        if any(x is f for x in dataclasses.fields(cls)):  # type: ignore[arg-type]
            return cls
    raise KeyError(f.name)


def _resolve(cfg: RunConfig, dotted: str):
    parts = dotted.split(".")
    if len(parts) != 2:
        raise ConfigError(f"'{dotted}' is not a setting; settings look like section.name, e.g. optim.lr")
    section, name = parts
    if section not in section_names():
        raise ConfigError(f"unknown config section '{section}' in '{dotted}'; use one of: {', '.join(section_names())}")
    obj = getattr(cfg, section)
    by_name = {f.name: f for f in dataclasses.fields(obj)}
    if name not in by_name:
        raise ConfigError(f"unknown setting '{dotted}'; {section} has: {', '.join(by_name)}")
    return obj, by_name[name]


def coerce(f: dataclasses.Field, value: Any, dotted: str) -> Any:
    """Turn a value (often a CLI string) into the field's type, or raise ConfigError naming the field."""
    target = field_type(f)
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if target is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if target is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if target is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, (list, tuple)):
                return [str(v) for v in value]
            raise ValueError
        if target is str:
            if value is None:
                return ""
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{dotted} must be {_type_word(target)}, got {value!r}") from None
    return value


def _type_word(t: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number",
            list: "a comma-separated list", str: "text"}.get(t, t.__name__)


# ---------------------------------------------------------------------------------------- layout versions
# A saved config (a run's config.json, the app's draft) records the layout it was written in. Renaming or
# re-meaning a setting adds a step below and raises CONFIG_VERSION: old runs stay resumable and old drafts
# keep their choices; nothing is silently reset.
CONFIG_VERSION = 3


def _v1_pooling(data: dict) -> dict:
    """Version 2 added model.pooling (default auto: mean pooling for sentence encoders). Runs saved before it
    trained text models on the first token, so their weights only fit that pooling."""
    model = data.get("model")
    if isinstance(model, dict) and "pooling" not in model:
        data["model"] = {**model, "pooling": "cls"}
    return data


def _v2_nesterov(data: dict) -> dict:
    """Version 3 made Nesterov momentum a switch, off by default. Before it, SGD with momentum always used
    Nesterov's, so older runs keep it (their checkpoints' optimizer states were made with it)."""
    optim = data.get("optim")
    if isinstance(optim, dict) and "nesterov" not in optim:
        momentum = optim.get("momentum", 0.9)
        sgd_with_momentum = optim.get("optimizer") == "sgd" and isinstance(momentum, (int, float)) and momentum > 0
        data["optim"] = {**optim, "nesterov": sgd_with_momentum}
    return data


_UPGRADES = {1: _v1_pooling, 2: _v2_nesterov}   # version N -> N + 1


def upgrade(data: dict) -> dict:
    """`data` (with its "version") in today's layout, without the version key."""
    version, rest = data.get("version"), {k: v for k, v in data.items() if k != "version"}
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"config version {str(version)[:20]!r} is not a layout version; it must be a whole number "
                          f"from 1 to {CONFIG_VERSION}")
    if version > CONFIG_VERSION:
        raise ConfigError(f"this config was saved by a newer Transfer Studio (layout version {version}; this one reads "
                          f"up to {CONFIG_VERSION}); update Transfer Studio to use it")
    for step in range(version, CONFIG_VERSION):
        rest = _UPGRADES[step](rest)
    return rest
