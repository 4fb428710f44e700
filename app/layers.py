"""The layer map on the Model page: one row per layer group with its size and a train switch,
totals, and the memory and time estimates."""
from __future__ import annotations

import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.feature_cache import augmentation_blocks_cache, cache_cut
from transfer_core.freezing import final_trainable, frozen_gap

from . import charts, model_ui
from .state import WIDGET_PREFIX, draft, save_draft, seed_widget
from .text import md
from .ui import fmt_bytes, fmt_duration, fmt_int

TOGGLE_PREFIX = "layer."


def _toggled(group_names: list[str]) -> None:
    """A switch was flipped: the choice becomes the custom preset with exactly the groups switched on."""
    cfg = draft()
    chosen = [g for g in group_names if st.session_state.get(TOGGLE_PREFIX + g)]
    cfg.freeze.preset = "custom"
    cfg.freeze.trainable_groups = chosen
    st.session_state[WIDGET_PREFIX + "freeze.preset"] = "custom"
    save_draft(cfg)


def feature_layer_choice(cfg: RunConfig, classes: tuple) -> None:
    """'The head reads': the last layer group (as pretrained) or an inner one (model.feature_layer), for the
    models whose groups can be cut; a choice made for another model is dropped."""
    full = model_ui.built_model(cfg.model.name, classes, cfg.model.image_size, cfg.model.max_length,
                                cfg.model.head_hidden)
    below = [g.name for g in full.groups[:-1]]
    options = [""] + below[:-1] if full.net.can_probe(full.groups) else [""]
    if cfg.model.feature_layer not in options:
        cfg.model.feature_layer = ""
    key = WIDGET_PREFIX + "model.feature_layer"
    seed_widget(key, cfg.model.feature_layer)
    if st.session_state.get(key) not in options:
        st.session_state[key] = cfg.model.feature_layer
    if len(options) == 1:
        return
    cfg.model.feature_layer = str(st.selectbox(
        "The head reads", options, key=key,
        format_func=lambda name: f"{below[-1]}: the last group, as pretrained" if not name else
        f"{name}: the groups above it are removed",
        help="Which layer group's output the new head classifies. On data far from what the model was pretrained "
             "on, a middle group can transfer better: 'Which layer transfers best?' below measures each one."))
    save_draft(cfg)


def layer_map(cfg: RunConfig, classes: tuple, modality: str, n_train: int, n_val: int) -> None:
    feature_layer_choice(cfg, classes)
    built = model_ui.built_model(cfg.model.name, classes, cfg.model.image_size, cfg.model.max_length,
                                 cfg.model.head_hidden, cfg.model.feature_layer)
    groups = model_ui.layer_groups(built)
    names = [g["group"] for g in groups]
    if cfg.freeze.preset == "custom" and not cfg.freeze.trainable_groups:
        cfg.freeze.trainable_groups = [names[-1]]
    cfg.freeze.trainable_groups = [g for g in cfg.freeze.trainable_groups if g in names] \
        if cfg.freeze.preset == "custom" else cfg.freeze.trainable_groups
    # Staged and gradual runs: the map shows what trains by the end of the run.
    trainable = set(final_trainable(names, cfg.freeze, cfg.train.epochs))
    save_draft(cfg)

    with st.container(border=True):
        head = st.columns([3, 2, 2])
        head[0].markdown("**Layer group** (input at the top, head at the bottom)")
        head[1].markdown("**Parameters**")
        head[2].markdown("**Trains?**")
        for g in groups:
            row = st.columns([3, 2, 2])
            row[0].markdown(f"`{g['group']}`")
            row[1].markdown(f"{g['params']:,}")
            key = TOGGLE_PREFIX + g["group"]
            st.session_state[key] = g["group"] in trainable
            row[2].toggle("trains" if g["group"] in trainable else "frozen", key=key, on_change=_toggled,
                          args=(names,), help="Switch on to train this group; off keeps its pretrained weights.")
    gap = frozen_gap(names, tuple(trainable))
    if gap:
        st.warning(md(gap[0].upper() + gap[1:] + "."), icon=":material/warning:")
    if cfg.freeze.preset == "top_k":
        trained = [n for n in names if n in trainable]
        st.caption(f"k = {cfg.freeze.top_k}: " + (", ".join(f"`{n}`" for n in trained)) +
                   (" train (the head counts as one of the k)." if len(trained) > 1 else " trains: the head alone."))
    if cfg.freeze.preset == "staged":
        st.caption(f"Staged: only `{names[-1]}` trains for the first {cfg.freeze.staged_head_epochs} epoch(s); "
                   "then every group shown as training here trains.")
    if cfg.freeze.preset == "gradual":
        order = list(reversed(names))
        reached = min(len(names), cfg.train.epochs)
        following = ", then ".join(f"`{n}`" for n in order[1:3]) + (", …" if len(order) > 3 else "")
        st.caption(f"Gradual: epoch 1 trains `{order[0]}` alone; each later epoch adds the next group down "
                   f"({following})" + (
                       f"; from epoch {len(names)} every group trains." if reached == len(names) else
                       f". In {cfg.train.epochs} epochs it reaches only the top {reached} groups; give "
                       f"{len(names)} epochs to train them all."))

    # The engine's own rule: the frozen groups below the lowest trained one run once per example where it can cut there.
    cut = cache_cut(built, tuple(n for n in names if n in trainable), cfg)
    cached = cut is not None
    device = model_ui.current_device(cfg.train.device)
    sizes = (cfg.model.name, classes, cfg.model.image_size, cfg.model.max_length, device)
    per_sample = model_ui.seconds_per_sample(*sizes)
    # Timing a training step costs a few seconds once per model: only when more than the head trains.
    train_per_sample = model_ui.seconds_per_train_sample(*sizes) if not (cached and cut == len(names) - 1) else None
    est = model_ui.estimate([{**g} for g in groups], trainable, modality=modality, batch_size=cfg.train.batch_size,
                            image_size=cfg.model.image_size, max_length=cfg.model.max_length, n_train=n_train,
                            n_val=n_val, per_sample=per_sample, cached=cached, train_per_sample=train_per_sample)
    cols = st.columns(5)
    cols[0].metric("Trainable parameters", fmt_int(est["trainable"]),
                   help=f"{est['trainable']:,} of {est['total']:,} ({est['trainable'] / max(1, est['total']):.1%})")
    cols[1].metric("Total parameters", fmt_int(est["total"]))
    cols[2].metric("Memory (rough)", fmt_bytes(est["memory"]),
                   help=f"Weights, gradients and optimizer state, plus activations at batch size {cfg.train.batch_size}.")
    timing_help = (f"Estimated from a forward pass and a training step of this model timed here on {device}, for "
                   f"{n_train:,} training and {n_val:,} validation examples. Rough: slower while another run trains, "
                   "and texts shorter than the maximum length train faster.")
    cols[3].metric(f"First epoch ({device}, rough)", fmt_duration(est["first_epoch"]), help=timing_help)
    cols[4].metric("Each later epoch (rough)", fmt_duration(est["later_epoch"]), help=timing_help)
    if cached and cut == len(names) - 1:
        st.caption(f"Only the head trains, so each example goes through the frozen layers once "
                   f"(first epoch about {fmt_duration(est['first_epoch'])}); later epochs take a fraction of a second.")
    elif cut is not None and cut > 0:
        st.caption(f"The frozen groups below `{names[cut]}` run once per example (in the first epoch); "
                   "later epochs run only the groups from there up.")
    st.plotly_chart(charts.layer_params([{**g, "trainable": g["group"] in trainable} for g in groups]),
                    key="layer_chart", config={"displayModeBar": False})


def _augmentation_off() -> None:
    cfg = draft()
    cfg.augment.flip, cfg.augment.random_resized_crop = False, False
    cfg.augment.rotation, cfg.augment.color_jitter = 0.0, 0.0
    for name in ("flip", "random_resized_crop", "rotation", "color_jitter"):
        st.session_state[f"{WIDGET_PREFIX}augment.{name}"] = getattr(cfg.augment, name)
    save_draft(cfg)


def augmentation_cache_notice(cfg: RunConfig, modality: str) -> None:
    """On the Train page: say that augmentation turns the frozen-feature cache off, and offer to turn it off."""
    if not augmentation_blocks_cache(cfg, modality):
        return
    st.info("Augmentation is on, so the frozen-feature cache is off: every epoch runs each image through the "
            "whole network. With augmentation off, the frozen layers run once per image and later epochs run "
            "only the layers above them, usually many times faster (augmentation may still help on small data sets).",
            icon=":material/speed:")
    st.button("Turn augmentation off for speed", key="augment_off", on_click=_augmentation_off,
              icon=":material/bolt:")
