"""Forms generated from the run config: one widget per setting, built from the field's type and
metadata (help, min, max, choices, advanced). Advanced settings go in a collapsed expander.

Widget keys are `cfg.<section>.<name>`; a key is seeded from the draft config the first time
the widget is drawn (Streamlit drops widget keys when their page is left), its value is sent to
the browser again when the widget comes back after a run without it (`state.seed_widget`), and
every value drawn is written back into the config.
"""
from __future__ import annotations

import math

import streamlit as st

from transfer_core.config import ConfigError, RunConfig, field_type, iter_fields
from transfer_core.freezing import RATE_KEYS, recommended_rates

from .state import WIDGET_PREFIX, form_rates, seed_widget, set_form_rates

LABELS = {
    "optim.lr": "Learning rate", "optim.optimizer": "Optimizer", "optim.scheduler": "Learning-rate schedule",
    "optim.grad_clip": "Gradient clipping", "optim.nesterov": "Nesterov momentum (SGD)", "freeze.preset": "Layers that train",
    "train.epochs": "Epochs", "train.batch_size": "Batch size",
    "train.device": "Device", "train.seed": "Random seed", "train.class_balance": "Class balance", "train.num_workers": "Data-loading workers",
    "train.early_stopping_patience": "Early-stopping patience", "train.cache_features": "Cache frozen features", "train.cache_images": "Decode images once", "train.compile": "Compile the model (torch.compile)",
    "data.val_fraction": "Validation share", "data.test_fraction": "Test share",
    "data.max_per_class": "Max samples per class", "data.dedupe": "Drop exact duplicates",
    "data.merge_case": "Merge labels that differ only in case",
    "model.image_size": "Image size (pixels)", "model.max_length": "Max text length (tokens)",
    "model.pretrained": "Start from pretrained weights", "model.head_dropout": "Head dropout",
    "model.head_hidden": "Hidden units in the head",
    "augment.flip": "Random horizontal flips", "augment.rotation": "Random rotation (degrees)",
    "augment.random_resized_crop": "Random crops", "augment.color_jitter": "Colour jitter",
    "freeze.lr_decay": "Learning-rate decay per layer group", "freeze.train_bn": "Let BatchNorm adapt",
    "freeze.staged_lr_factor": "Learning-rate factor after unfreezing",
    "freeze.top_k": "Groups that train (k, counting the head)",
    "freeze.body_lr_factor": "Pretrained layers' share of the learning rate",
    "adapt.method": "Adaptation method", "adapt.weight": "Adaptation loss weight",
}


def label_for(dotted: str) -> str:
    return LABELS.get(dotted) or dotted.split(".", 1)[1].replace("_", " ").capitalize()


def help_for(f) -> str:
    meta = f.metadata
    parts = [meta.get("help", "")]
    if meta.get("min") is not None and meta.get("max") is not None:
        parts.append(f"Range: {meta['min']:g} to {meta['max']:g}.")
    parts.append(f"Setting: `{f.name}`.")
    return " ".join(p for p in parts if p)


def _float_step(value: float, f) -> float:
    if value:
        return 10 ** (math.floor(math.log10(abs(value))) - 1) if abs(value) < 1 else 0.1 * 10 ** math.floor(math.log10(abs(value)))
    high = f.metadata.get("max")
    return (high / 20) if high is not None and high <= 1 else 1.0


def _widget(cfg: RunConfig, dotted: str, f, value):
    key = WIDGET_PREFIX + dotted
    kind = field_type(f)
    meta = f.metadata
    seed_widget(key, value)
    label, help_text = label_for(dotted), help_for(f)
    if kind is bool:
        return st.checkbox(label, key=key, help=help_text)
    if meta.get("choices"):
        return st.selectbox(label, list(meta["choices"]), key=key, help=help_text)
    if kind is int:
        return st.number_input(label, min_value=meta.get("min"), max_value=meta.get("max"), step=1,
                               key=key, help=help_text)
    if kind is float:
        default = f.default if isinstance(f.default, float) else value
        return st.number_input(label, min_value=float(meta["min"]) if meta.get("min") is not None else None,
                               max_value=float(meta["max"]) if meta.get("max") is not None else None,
                               step=_float_step(default, f), format="%g", key=key, help=help_text)
    if kind is list:
        text = st.text_input(label, value=", ".join(value or []), key=key + ".text", help=help_text)
        return [v.strip() for v in text.split(",") if v.strip()]
    return st.text_input(label, key=key, help=help_text)


def render_settings(cfg: RunConfig, sections: tuple[str, ...], *, skip: tuple[str, ...] = (),
                    columns: int = 2, advanced_label: str = "Advanced settings") -> list[str]:
    """Draw the settings of `sections` (basic ones in a grid, advanced ones collapsed) and write the
    values into `cfg`. Returns the problems found (one sentence each)."""
    fields = [(d, f, v) for d, f, v in iter_fields(cfg) if d.split(".")[0] in sections and d not in skip]
    basic = [x for x in fields if not x[1].metadata.get("advanced")]
    advanced = [x for x in fields if x[1].metadata.get("advanced")]
    problems: list[str] = []
    _grid(cfg, basic, columns, problems)
    if advanced:
        with st.expander(advanced_label, expanded=False):
            _grid(cfg, advanced, columns, problems)
    return problems


def _grid(cfg: RunConfig, items, columns: int, problems: list[str]) -> None:
    for start in range(0, len(items), columns):
        cols = st.columns(columns)
        for col, (dotted, f, value) in zip(cols, items[start:start + columns]):
            with col:
                new = _widget(cfg, dotted, f, value)
                try:
                    cfg.set(dotted, new)
                except ConfigError as exc:
                    problems.append(str(exc))


def render_field(cfg: RunConfig, dotted: str) -> list[str]:
    """Draw one setting's widget and write its value into `cfg`; returns the problems found."""
    problems: list[str] = []
    for d, f, value in iter_fields(cfg):
        if d == dotted:
            new = _widget(cfg, d, f, value)
            try:
                cfg.set(d, new)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)


def _stock_rates() -> dict[str, set]:
    """Every value the form could have chosen itself: the config's defaults and every recommendation."""
    from transfer_core.models import list_specs
    stock = {key: {RunConfig().get(key)} for key in RATE_KEYS}
    for spec in list_specs():
        for optimizer in ("adamw", "sgd"):
            for key, value in recommended_rates(spec, optimizer).items():
                stock[key].add(value)
    return stock


def follow_recommended_rates(cfg: RunConfig, spec) -> None:
    """Keep the learning rates on the defaults for the model and optimizer (recommended_rates) until the
    user enters their own; those are kept (rate_warnings says when they look out of range).

    A rate is the form's own while it still equals what the form last chose. A reloaded page reads what the
    last session chose (kept beside the draft, state.form_rates); where nothing is known, any stock value
    counts as the form's."""
    optimizer = st.session_state.get(WIDGET_PREFIX + "optim.optimizer", cfg.optim.optimizer)
    chosen = form_rates()
    stock = _stock_rates() if chosen is None else {}
    ours = {}
    for key, value in recommended_rates(spec, optimizer).items():
        current = cfg.get(key)
        mine = any(_same(current, v) for v in stock[key]) if chosen is None else \
            key in chosen and _same(current, chosen[key])
        if not mine:
            continue
        if not _same(current, value):
            cfg.set(key, value)
            st.session_state.pop(WIDGET_PREFIX + key, None)   # the widget shows the new value
        ours[key] = value
    set_form_rates(ours)


def form_defaults(spec) -> RunConfig:
    """The settings a new run starts from: the config's defaults with the model's recommended rates."""
    from transfer_core.freezing import apply_recommended_rates
    defaults = RunConfig()
    apply_recommended_rates(defaults, spec)
    return defaults


def changed_settings(cfg: RunConfig, spec, sections: tuple[str, ...], extra: tuple[str, ...] = ()) -> list[tuple]:
    """(setting, value, default) for each setting of `sections` (and `extra`) that is not its default."""
    defaults = {d: v for d, _, v in iter_fields(form_defaults(spec))}
    out = []
    for dotted, _, value in iter_fields(cfg):
        if dotted.split(".")[0] not in sections and dotted not in extra:
            continue
        default = defaults[dotted]
        same = _same(value, default) if isinstance(value, float) and isinstance(default, float) else value == default
        if not same:
            out.append((dotted, value, default))
    return out


def reset_settings(cfg: RunConfig, spec, changed: list[tuple]) -> None:
    """Put the `changed` settings back to their defaults, in the config and in their widgets."""
    for dotted, _, default in changed:
        cfg.set(dotted, default)
        st.session_state.pop(WIDGET_PREFIX + dotted, None)
    set_form_rates(dict(recommended_rates(spec, cfg.optim.optimizer)))


def describe_value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
