"""Model page helpers: model labels, the layer map (groups and parameter counts), freezing presets
explained, and rough estimates of memory and time per epoch on this machine."""
from __future__ import annotations

import time

import streamlit as st

from transfer_core.devices import pick_device
from transfer_core.models import build_model, get_spec, list_specs
from transfer_core.models.huggingface import default_pooling
from transfer_core.models.network import DOWNLOAD, READY, UNREACHABLE, availability

from .resources import allowed_roots, runs_dir
from .state import save_draft
from .ui import friendly

PRESETS = {
    "feature_extraction": ("Feature extraction (head only)",
                           "Only the new head trains; every pretrained layer stays frozen. Fastest, least memory, "
                           "hardest to overfit: the best start, especially with little data (tens of examples per class)."),
    "top_k": ("Top k groups",
              "The top k groups train, counting the head: k = 1 is the head only, k = 2 the head and the group "
              "just below it; the rest stay frozen. A middle ground with a few hundred examples per class, or when "
              "your data looks different from the pretraining data."),
    "full": ("Full fine-tuning",
             "Every layer trains. Can give the best accuracy with plenty of data (thousands of examples) but is the "
             "slowest, needs the most memory and can overfit small data; use a low learning rate (e.g. 0.0001)."),
    "staged": ("Staged (head first, then everything)",
               "The head trains alone for a few epochs, then everything trains at a lower learning rate. "
               "A safe way to fine-tune fully: the random new head cannot spoil the pretrained layers early on."),
    "gradual": ("Gradual (one more group each epoch)",
                "The head trains alone in the first epoch; each later epoch unfreezes the next group down, until "
                "everything trains (ULMFiT's gradual unfreezing). Gentlest on the pretrained layers; pair it with "
                "discriminative rates (each lower group slower) in the advanced freezing settings."),
    "custom": ("Custom",
               "You pick exactly which groups train with the switches in the layer map."),
}

def presets_explained() -> None:
    with st.expander("When to use each preset"):
        for label, text in PRESETS.values():
            st.markdown(f"- **{label}**: {text}")


FREEZING_TEXT = (
    "A pretrained network is a stack of layer groups: the lower ones detect simple patterns (edges, colours, word "
    "pieces), the higher ones combine them into concepts, and a new **head** on top maps those to your classes. "
    "**Freezing** a group keeps its pretrained weights fixed, so it does not train: training is faster, needs less "
    "memory and less data, and cannot overfit through that group. Unfreezing more groups lets the model adapt "
    "further to your data, at the price of time, memory and more risk of overfitting small data sets."
)

# Rough activation memory per sample for groups that train (bytes per input element x factor).
ACTIVATION_FACTOR = {"image": 60 * 4, "text": 30_000 * 4}


# Pages never probe the network (availability(..., probe=False)): a model that must download is named as such,
# and Start checks that its source answers.
AVAILABILITY = {READY: "ready ✓", DOWNLOAD: "downloads its weights on first use (needs the network)",
                UNREACHABLE: "needs a download, cannot be reached now"}


def model_choices(modality: str | None) -> list[str]:
    """The catalogue's models for `modality`, ready ones first; test models (random weights) are for the CLI
    and the tests only."""
    specs = [s for s in list_specs(modality) if s.source != "test"]
    order = {READY: 0, DOWNLOAD: 1, UNREACHABLE: 2}
    return [s.name for s in sorted(specs, key=lambda s: order[availability(s, probe=False)])]


def model_label(name: str) -> str:
    try:
        spec = get_spec(name, runs_dir=runs_dir())
        ready = availability(spec, probe=False)
    except Exception:  # a label must never break the picker; the page explains the problem below it
        return name
    tag = "test model, random weights" if spec.source == "test" else AVAILABILITY[ready]
    size = f"{spec.num_params / 1e6:.1f} M params" if spec.num_params >= 1e5 else f"{spec.num_params:,} params"
    return f"{name} · {tag} · {size}"


POOLING_WORDS = {"mean": "the average of all its tokens", "cls": "its first token",
                 "pooler": "its pooler (a trained layer on the first token)"}


def drawn_elsewhere(spec) -> tuple[str, ...]:
    """Model settings the form of model settings leaves out: drawn by their own widgets, or not for this modality."""
    drawn: tuple[str, ...] = ("model.name", "model.feature_layer")   # the picker; "The head reads" above the layer map
    if spec.from_run is None:
        drawn += ("model.new_head",)                  # (only a run's model has a trained head to keep)
    return drawn + (("model.max_length", "model.pooling") if spec.modality == "image" else ("model.image_size",))


def other_model(cfg, picker_key: str) -> None:
    """A model the catalogue does not list, by name; `picker_key`: the model picker's widget key, dropped so that
    it shows the new choice."""
    with st.expander("Use another model: a Hugging Face hub id, a local Hugging Face folder, or run:<run id>"):
        st.caption("A local folder must lie under the app's data or runs folder.")
        other = st.text_input("Model name", key="other_model", placeholder="distilbert-base-uncased")
        if st.button("Use this model", key="use_other_model") and other.strip():
            with friendly("use this model"):
                get_spec(other.strip(), runs_dir=runs_dir(), allowed_roots=allowed_roots())
                cfg.model.name = other.strip()
                st.session_state.pop(picker_key, None)
                save_draft(cfg)
                st.rerun()


def pooling_caption(spec, pooling: str) -> str:
    """What the text model's head reads, in words; for auto, what auto means for this model."""
    if pooling != "auto":
        return f"The head reads {POOLING_WORDS[pooling]}."
    chosen = default_pooling(spec)
    why = ("as this sentence encoder was trained" if chosen == "mean" else
           "as this model was trained" if spec.source != "run" else "as the run it starts from did")
    return f"Pooling auto: the head reads {POOLING_WORDS[chosen]}, {why}."


@st.cache_resource(show_spinner="Loading the model's layer map...", max_entries=3)
def built_model(name: str, classes: tuple, image_size: int, max_length: int, head_hidden: int = 0,
                feature_layer: str = ""):
    """The network (offline weights loaded, online ones left random so nothing downloads here). Its groups
    and sizes do not depend on model.pooling, which is left on auto here; the head's size depends on head_hidden,
    the groups kept on feature_layer."""
    spec = get_spec(name, runs_dir=runs_dir())
    pretrained = spec.offline or spec.source in ("local", "run")
    return build_model(name, list(classes), pretrained=pretrained, image_size=image_size, max_length=max_length,
                       head_hidden=head_hidden, runs_dir=runs_dir(), feature_layer=feature_layer)


def layer_groups(built) -> list[dict]:
    return [{"group": g.name, "params": g.num_params} for g in built.groups]


@st.cache_data(show_spinner="Measuring the model's speed on this machine...", max_entries=16)
def seconds_per_sample(name: str, classes: tuple, image_size: int, max_length: int, device: str) -> float:
    """Forward-pass time per sample at inference, measured on a small batch (best of three)."""
    import torch

    built = built_model(name, classes, image_size, max_length)
    net = built.net.to(device).eval()
    batch = 8
    inputs = _example_batch(built, batch, image_size, max_length, device)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(3):
            start = time.perf_counter()
            net(**inputs)
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    net.to("cpu")
    return best / batch


def _example_batch(built, batch: int, image_size: int, max_length: int, device: str) -> dict:
    import torch

    if built.modality == "image":
        return {"pixel_values": torch.randn(batch, 3, image_size, image_size, device=device)}
    ids = torch.randint(1000, 2000, (batch, max_length), device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@st.cache_data(show_spinner="Timing a training step on this machine...", max_entries=16)
def seconds_per_train_sample(name: str, classes: tuple, image_size: int, max_length: int, device: str) -> float:
    """Seconds per sample of a training step of the whole network (forward and backward, in train
    mode, in the memory layout the trainer uses), measured on one small batch: best of two after a
    warm-up step. The backward pass costs a different multiple of the forward pass per network and
    machine (depthwise convolutions on a CPU: far more than twice), so it is measured, not assumed.
    Runs on a copy: the cached model is shared by every session and must not change."""
    import copy

    import torch

    from transfer_core.devices import use_channels_last

    built = built_model(name, classes, image_size, max_length)
    net = copy.deepcopy(built.net).to(device).train()
    for p in net.parameters():
        p.requires_grad_(True)
    channels_last = use_channels_last(net, torch.device(device), built.modality)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    batch = 8
    inputs = _example_batch(built, batch, image_size, max_length, device)
    if channels_last:
        inputs = {k: v.contiguous(memory_format=torch.channels_last) for k, v in inputs.items()}
    targets = torch.randint(0, len(classes), (batch,), device=device)
    best = float("inf")
    for attempt in range(3):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(**inputs), targets)
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if attempt:
            best = min(best, time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
    del net
    return best / batch


def current_device(name: str = "auto") -> str:
    return str(pick_device(name))


def estimate(groups: list[dict], trainable: set[str], *, modality: str, batch_size: int, image_size: int,
             max_length: int, n_train: int, n_val: int, per_sample: float | None, cached: bool,
             train_per_sample: float | None = None) -> dict:
    """Rough training memory (bytes) and seconds for the first and later epochs.

    per_sample: a forward pass (inference) per sample; train_per_sample: a training step of the whole
    network per sample, both measured here. The trained groups cost their share of the training step,
    the frozen groups below them a forward pass (or nothing after the first epoch where cached)."""
    total = sum(g["params"] for g in groups)
    trained = sum(g["params"] for g in groups if g["group"] in trainable)
    names = [g["group"] for g in groups]
    lowest = min((names.index(n) for n in trainable if n in names), default=len(names) - 1)
    depth = (len(names) - lowest - 1) / max(1, len(names) - 1)    # share of the network that trains
    elements = image_size * image_size * 3 if modality == "image" else max_length
    memory = total * 4 + trained * 4 * 3 + batch_size * elements * ACTIVATION_FACTOR[modality] * max(depth, 0.02)
    out = {"memory": memory, "total": total, "trainable": trained, "first_epoch": None, "later_epoch": None}
    if per_sample:
        train = train_per_sample or 3 * per_sample   # without a measurement: backward twice the forward
        forward_all = (n_train + n_val) * per_sample
        if cached:   # the frozen groups below the lowest trained one run once, in the first epoch
            later = n_train * train * depth + n_val * per_sample * depth
            out["later_epoch"] = max(0.05, n_train * 2e-5, later)
            out["first_epoch"] = forward_all + (later if depth else 0.0)
        else:
            epoch = n_train * (per_sample * (1 - depth) + train * depth) + n_val * per_sample
            out["first_epoch"] = out["later_epoch"] = epoch
    return out
