"""Hugging Face models: hub ids, local save_pretrained folders, and the shared wrapping/grouping.

Remote code is never run (trust_remote_code=False everywhere). When the hub
cannot be reached, loads fall back to the local cache at once instead of
retrying for half a minute, and fail with a message naming the offline models.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import pickle
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import ModelError
from .base import BuiltModel, ImagePreprocess, LayerGroup, Modality, ModelSpec, TextPreprocess, TransferNet
from .feature_layer import groups_with_head
from .grouping import generic_groups
from .heads import IMAGENET_MEAN, IMAGENET_STD, HeadLinear, HeadMLP, new_head, swap_module
from .network import OFFLINE_HINT, reachable

# A transformers PreTrainedModel: its submodules are named per architecture (model.classifier, model.bert...),
# which typing cannot follow (nn.Module's attributes would read as tensors).
HFModel = Any

# Well-known hub models shown in the catalogue (modality known without a download).
KNOWN: dict[str, tuple[Modality, int, str]] = {
    "bert-base-uncased": ("text", 110_000_000, "BERT base, uncased English (12 layers); downloads from the Hugging Face hub."),
    "distilbert-base-uncased": ("text", 66_000_000, "DistilBERT base, uncased English (6 layers, fast); downloads from the Hugging Face hub."),
    "roberta-base": ("text", 125_000_000, "RoBERTa base, English (12 layers); downloads from the Hugging Face hub."),
    "google/vit-base-patch16-224": ("image", 86_000_000, "ViT-B/16 on ImageNet-21k+1k at 224 px; downloads from the Hugging Face hub."),
}

# Config keys through which families expose the dropout before their classifier.
_DROPOUT_KEYS = ("classifier_dropout", "seq_classif_dropout")
# Config key of a head with a hidden layer ({"units": N, "paths": [...]}): transformers builds a Linear
# there, so an exported folder says which classifiers its predict.py must rebuild (see bundle_template).
HIDDEN_HEAD = "transfer_hidden_head"


# ---- loading helpers -------------------------------------------------------

@contextlib.contextmanager
def quiet_transformers():
    """Hide load reports and progress bars: the app reports what matters itself."""
    from transformers.utils import logging as hf_logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        hub_logger.setLevel(hub_level)


def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or the hub does not answer one quick connect."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    from huggingface_hub import constants
    return reachable(urlparse(constants.ENDPOINT).hostname or "huggingface.co")


def is_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().is_dir()


def _explain(name: str, exc: Exception) -> ModelError:
    text = str(exc)
    if "trust_remote_code" in text or "custom code" in text:
        return ModelError(f"{name} needs custom Python code shipped with the model (trust_remote_code), which this app "
                          "never runs; pick a model that transformers supports itself")
    chain: list[str] = []
    e: BaseException | None = exc
    while e is not None:
        chain.append(type(e).__name__)
        e = e.__cause__ or e.__context__
    if "RepositoryNotFoundError" in chain or "is not a valid model identifier" in text:
        return ModelError(f"{name} is neither a Hugging Face hub model nor a local folder; check the name, "
                          "or list models with `python -m transfer_core models`")
    if is_local(name):
        return ModelError(f"could not load the Hugging Face folder {name} ({type(exc).__name__}: {text.splitlines()[0] if text else ''}); "
                          "point model.name at a folder written by save_pretrained")
    return ModelError(f"could not download {name} from the Hugging Face hub (no network?); {OFFLINE_HINT}")


def _source_kwargs(source: str) -> dict:
    if is_local(source):
        folder = Path(source).expanduser()
        return {"use_safetensors": True} if any(folder.glob("*.safetensors")) else {}
    return {} if hub_reachable() else {"local_files_only": True}


def load_config(source: str):
    from transformers import AutoConfig
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(source, trust_remote_code=False,
                                              local_files_only=not is_local(source) and not hub_reachable())
    except (OSError, ValueError, KeyError) as exc:
        raise _explain(source, exc) from exc


def modality_of(config, folder: Path | None = None) -> Modality:
    """'image' or 'text', from the model type's auto mappings (and the folder's files when both fit)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES as IMAGE,
    )
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as TEXT,
    )
    mtype = getattr(config, "model_type", "")
    archs = " ".join(getattr(config, "architectures", None) or [])
    is_image, is_text = mtype in IMAGE, mtype in TEXT
    if is_image and is_text:
        if folder is not None:
            is_image = (folder / "preprocessor_config.json").exists()
        else:
            is_image = "ImageClassification" in archs
        is_text = not is_image
    if is_image:
        return "image"
    if is_text:
        return "text"
    if getattr(config, "auto_map", None):
        raise ModelError(f"model type '{mtype}' needs custom Python code shipped with the model (trust_remote_code), "
                         "which this app never runs; pick a model that transformers supports itself")
    raise ModelError(f"model type '{mtype}' cannot classify images or texts with transformers; "
                     "pick a *ForImageClassification or *ForSequenceClassification model")


# ---- head/feature split per family ------------------------------------------
# Each known family's classification block, re-done from its modeling_*.py
# (transformers 5.x) so that logits == head(model, features(last hidden state)).
# `features` keeps only what the head reads (the first token, as (N, 1, H) for
# text or (N, H) for ViT); `head` is exactly the "head" group's computation,
# its dropout included.

def _first_token(hidden: torch.Tensor) -> torch.Tensor:
    return hidden[:, :1]


def mean_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The average of the non-padding token states, as (N, 1, H): where the family's head reads the
    first token, it reads this (sentence-transformers' mean pooling)."""
    if attention_mask is None:
        return hidden.mean(1, keepdim=True)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1e-9)


def _cls_token(hidden: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


def _bert_head(model: HFModel, features: torch.Tensor) -> torch.Tensor:
    # BertForSequenceClassification: pooler (dense + tanh on token 0), dropout, classifier.
    pooled = getattr(model, model.base_model_prefix).pooler(features)
    return model.classifier(model.dropout(pooled))


def _distilbert_head(model: HFModel, features: torch.Tensor) -> torch.Tensor:
    # DistilBertForSequenceClassification: pre_classifier, ReLU, dropout, classifier on token 0.
    x = torch.relu(model.pre_classifier(features[:, 0]))
    return model.classifier(model.dropout(x))


def _classifier_head(model: HFModel, features: torch.Tensor) -> torch.Tensor:
    # RoBERTa-style *ClassificationHead (reads features[:, 0, :]) or ViT/DeiT's Linear on the class token.
    return model.classifier(features)


def _has(model: HFModel, *paths: str) -> bool:
    for path in paths:
        try:
            if not isinstance(model.get_submodule(path), nn.Module):
                return False
        except AttributeError:
            return False
    return True


_ROBERTA_HEAD = (_first_token, _classifier_head, ("classifier.dense", "classifier.dropout", "classifier.out_proj"))
# class name: (features from the last hidden state, head, submodules the head needs)
SPLITS = {
    "BertForSequenceClassification": (_first_token, _bert_head, ("dropout", "classifier")),
    "DistilBertForSequenceClassification": (_first_token, _distilbert_head, ("pre_classifier", "dropout", "classifier")),
    "RobertaForSequenceClassification": _ROBERTA_HEAD,
    "XLMRobertaForSequenceClassification": _ROBERTA_HEAD,
    "XLMRobertaXLForSequenceClassification": _ROBERTA_HEAD,
    "CamembertForSequenceClassification": _ROBERTA_HEAD,
    "RobertaPreLayerNormForSequenceClassification": _ROBERTA_HEAD,
    "Data2VecTextForSequenceClassification": _ROBERTA_HEAD,
    "ViTForImageClassification": (_cls_token, _classifier_head, ("classifier",)),
    "DeiTForImageClassification": (_cls_token, _classifier_head, ("classifier",)),
}

# Families whose encoder can also be cut between layers (HFClassifier.prefix / forward_from).
PREFIX_FAMILIES = {"BertForSequenceClassification"}
# Vision transformers whose last encoder layer reads its tokens through `layernorm_before` (token_layer).
TOKEN_FAMILIES = {"ViTForImageClassification", "DeiTForImageClassification"}

# Marks the generic split: features = the input of the single final Linear (see _linear_input_split).
LINEAR_INPUT = "linear_input"


def _family_split(model: HFModel) -> str | None:
    name = type(model).__name__
    if name not in SPLITS or not _base_prefix(model):
        return None
    needs = SPLITS[name][2]
    if name == "BertForSequenceClassification":
        pooler = getattr(getattr(model, model.base_model_prefix), "pooler", None)
        if not isinstance(pooler, nn.Module):
            return None
    return name if _has(model, *needs) else None


def _outside_base_params(model: HFModel) -> set[str]:
    base = _base_prefix(model)
    names = {n for n, _ in model.named_parameters() if not (base and n.startswith(base + "."))}
    pooler = getattr(getattr(model, base), "pooler", None) if base else None
    if isinstance(pooler, nn.Module):     # hf_groups puts a base pooler with weights into the head
        names |= {f"{base}.pooler.{n}" for n, _ in pooler.named_parameters()}
    return names


def _probe_inputs(model: HFModel, accepted: list[str]) -> dict | None:
    param = next(model.parameters())
    config = model.config
    if "pixel_values" in accepted:
        size = native_image_size(config)
        channels = int(getattr(config, "num_channels", 3) or 3)
        return {"pixel_values": torch.zeros(1, channels, size, size, device=param.device, dtype=param.dtype)}
    if "input_ids" in accepted:
        vocab = int(getattr(config, "vocab_size", 0) or 0)
        if vocab < 8:
            return None
        ids = torch.tensor([[1, 5, 6, 7, 2]], device=param.device)
        out = {"input_ids": ids}
        if "attention_mask" in accepted:
            out["attention_mask"] = torch.ones_like(ids)
        return out
    return None


class _ReachedHead(Exception):
    """Raised at the final Linear's input to end a forward pass early, carrying that input."""

    def __init__(self, features: torch.Tensor):
        super().__init__("reached the classification head")
        self.features = features


def _stop_at_input(module: nn.Module, args: tuple):
    raise _ReachedHead(args[0])


def _linear_input_split(model: HFModel, accepted: list[str]) -> str | None:
    """Path of the final Linear when logits are exactly `linear(x)` for an x below the head, else None.

    Safe only when (a) the head group is that Linear alone (no other weights
    outside the base, no base pooler with weights), (b) no dropout module sits
    outside the base (it would run inside `features`), and (c) one eval-mode
    probe shows the model calls the Linear once, on a (N, D) input, and returns
    its output object itself as logits (no pooling or reshaping after it).
    """
    try:
        paths = _final_linears(model, model.config.num_labels)
    except ModelError:
        return None
    if len(paths) != 1:
        return None
    path = paths[0]
    linear = model.get_submodule(path)
    own = {f"{path}.{n}" for n, _ in linear.named_parameters()}
    if _outside_base_params(model) != own:
        return None
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for _, m in _outside_base(model)):
        return None
    inputs = _probe_inputs(model, accepted)
    if inputs is None:
        return None
    calls = []
    handle = linear.register_forward_hook(lambda m, args, output: calls.append((args, output)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(**inputs)
        logits = out.logits if hasattr(out, "logits") else out[0]
    except Exception:       # an architecture the probe cannot feed: no split, the plain forward still works
        return None
    finally:
        handle.remove()
        model.train(was_training)
    if len(calls) != 1 or len(calls[0][0]) != 1:
        return None
    (x,), output = calls[0]
    return path if output is logits and isinstance(x, torch.Tensor) and x.dim() == 2 else None


# ---- wrapping --------------------------------------------------------------

class HFClassifier(TransferNet):
    """Gives a transformers classifier the `net(**batch) -> logits` contract.

    Inputs the wrapped model does not take (e.g. token_type_ids for DistilBERT)
    are dropped, so one tokenizer's batches fit any text model.

    For the families in SPLITS, `features(**batch)` calls the base model and keeps
    what the head reads, `head_logits(features)` runs the family's head modules,
    and forward is exactly `head_logits(features(**batch))`: the same logits as
    the transformers model's own forward, so save_pretrained exports predict the
    same. Another architecture gets the generic split of _linear_input_split when
    that is provably safe; otherwise `supports_feature_split` is False and
    forward is the model's own.
    """

    def __init__(self, model: HFModel, interpolate_pos_encoding: bool = False, pooling: str = "cls"):
        super().__init__()
        self.model = model
        self.pooling = pooling      # "mean" replaces the first token the head reads; see POOLINGS
        accepted = set(inspect.signature(model.forward).parameters)
        self.accepted = sorted(accepted & {"input_ids", "attention_mask", "token_type_ids", "pixel_values"})
        self.interpolate_pos_encoding = interpolate_pos_encoding
        self.split = _family_split(model)
        self.linear_path = None
        self.base_accepted: list[str] = []
        self.base_interpolates = False
        if self.split is not None:
            base = getattr(model, model.base_model_prefix)
            base_params = set(inspect.signature(base.forward).parameters)
            self.base_accepted = sorted(base_params & set(self.accepted))
            self.base_interpolates = interpolate_pos_encoding and "interpolate_pos_encoding" in base_params
            if interpolate_pos_encoding and not self.base_interpolates:
                self.split = None
        if self.split is None:
            self.linear_path = _linear_input_split(model, self.accepted)
            if self.linear_path is not None:
                self.split = LINEAR_INPUT
        self.supports_feature_split = self.split is not None
        self.prefix_cuts: dict[int, int] = {}   # {cut: encoder layers in the frozen prefix}; see set_prefix_cuts

    def set_prefix_cuts(self, groups) -> None:
        """Cuts between layer groups, for BERT-family text encoders: the frozen prefix must be exactly
        the embeddings and the first n encoder layers (then its output is the hidden states after layer n)."""
        self.prefix_cuts = {}
        if self.split not in PREFIX_FAMILIES or getattr(self.model.config, "is_decoder", False):
            return
        base_name = self.model.base_model_prefix
        base = getattr(self.model, base_name)
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if not isinstance(getattr(base, "embeddings", None), nn.Module) or not isinstance(layers, nn.ModuleList):
            return
        stem = f"model.{base_name}"
        parts = [{f"{stem}.embeddings.{n}" for n, _ in base.embeddings.named_parameters()}]
        parts += [{f"{stem}.encoder.layer.{i}.{n}" for n, _ in layer.named_parameters()} for i, layer in enumerate(layers)]
        below: set[str] = set()
        for cut in range(1, len(groups) - 1):
            below |= set(groups[cut - 1].param_names)
            for n in range(len(layers) + 1):
                if below == set().union(*parts[:n + 1]):
                    self.prefix_cuts[cut] = n

    def token_layer(self) -> nn.Module | None:
        if self.split not in TOKEN_FAMILIES:
            return None
        base = getattr(self.model, self.model.base_model_prefix)
        layers = base.layers if hasattr(base, "layers") else base.encoder.layer   # transformers 5 or 4
        return layers[-1].layernorm_before

    def _encoder(self):
        base = getattr(self.model, self.model.base_model_prefix)
        return base, base.encoder.layer

    def _mask(self, base: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None):
        from transformers.masking_utils import create_bidirectional_mask
        return create_bidirectional_mask(config=base.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def prefix(self, cut: int, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None) -> dict:
        """Hidden states after the frozen prefix (embeddings and the first encoder layers), with the mask."""
        base, layers = self._encoder()
        hidden, attention_mask = self._embed(base, input_ids, attention_mask, token_type_ids)
        mask = self._mask(base, hidden, attention_mask)
        for layer in layers[:self.prefix_cuts[cut]]:
            hidden = layer(hidden, mask)
        return {"hidden_states": hidden, "attention_mask": attention_mask}

    def _embed(self, base: Any, input_ids, attention_mask, token_type_ids) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {"token_type_ids": token_type_ids} if "token_type_ids" in self.base_accepted and token_type_ids is not None else {}
        hidden = base.embeddings(input_ids=input_ids, **kwargs)
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        return hidden, attention_mask

    def forward_from(self, cut: int, state: dict) -> torch.Tensor:
        """Logits from prefix(cut, ...): the remaining encoder layers, then the head (pooler included)."""
        base, layers = self._encoder()
        hidden = state["hidden_states"]
        mask = self._mask(base, hidden, state["attention_mask"])
        for layer in layers[self.prefix_cuts[cut]:]:
            hidden = layer(hidden, mask)
        return self.head_logits(self._pool(hidden, state["attention_mask"]))

    def pool_hidden(self, state: dict) -> torch.Tensor:
        return self._pool(state["hidden_states"], state["attention_mask"])

    def group_features(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None) -> list[torch.Tensor]:
        """One pass through the embeddings and the encoder layers, pooling the tokens (as the head's
        pooling does) at the end of each group (see TransferNet.group_features)."""
        if not self.prefix_cuts:   # one group below the head: its output is the features
            return [self.features(input_ids, attention_mask, token_type_ids, pixel_values)]
        base, layers = self._encoder()
        hidden, attention_mask = self._embed(base, input_ids, attention_mask, token_type_ids)
        ends = set(self.prefix_cuts.values())   # encoder layers done at the end of each group below the last one
        out = [self._pool(hidden, attention_mask)] if 0 in ends else []
        mask = self._mask(base, hidden, attention_mask)
        for done, layer in enumerate(layers, start=1):
            hidden = layer(hidden, mask)
            if done in ends:
                out.append(self._pool(hidden, attention_mask))
        return [*out, self._pool(hidden, attention_mask)]

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "mean":
            return mean_tokens(hidden, attention_mask)
        assert self.split is not None   # features and forward_from exist only for a split family
        return SPLITS[self.split][0](hidden)

    def _kwargs(self, names: list[str], given: dict, interpolate: bool) -> dict:
        kwargs = {k: given[k] for k in names if given[k] is not None}
        if interpolate:
            kwargs["interpolate_pos_encoding"] = True
        return kwargs

    def features(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None) -> torch.Tensor:
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids, "pixel_values": pixel_values}
        if self.split is None:
            raise NotImplementedError(f"{type(self.model).__name__} has no head/feature split")
        if self.split == LINEAR_INPUT:
            # The model's forward stops where the final Linear would start: neither its weights nor its
            # dropout (which would draw random numbers) run inside features.
            handle = self.model.get_submodule(self.linear_path).register_forward_pre_hook(_stop_at_input)
            try:
                self.model(**self._kwargs(self.accepted, given, self.interpolate_pos_encoding))
            except _ReachedHead as reached:
                return reached.features
            finally:
                handle.remove()
            raise RuntimeError(f"{type(self.model).__name__} returned without calling its classifier {self.linear_path}")
        base = getattr(self.model, self.model.base_model_prefix)
        # A BERT base model also runs its pooler (one matrix product on the first token); that output is
        # unused here, so features do not depend on the pooler, which head_logits applies.
        out = base(**self._kwargs(self.base_accepted, given, self.base_interpolates))
        return self._pool(out[0], attention_mask)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        if self.split is None:
            raise NotImplementedError(f"{type(self.model).__name__} has no head/feature split")
        if self.split == LINEAR_INPUT:
            return self.model.get_submodule(self.linear_path)(features)
        return SPLITS[self.split][1](self.model, features)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None):
        if self.supports_feature_split:
            return self.head_logits(self.features(input_ids=input_ids, attention_mask=attention_mask,
                                                  token_type_ids=token_type_ids, pixel_values=pixel_values))
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids, "pixel_values": pixel_values}
        out = self.model(**self._kwargs(self.accepted, given, self.interpolate_pos_encoding))
        return out.logits if hasattr(out, "logits") else out[0]


def _base_prefix(model: HFModel) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    return prefix if prefix and isinstance(getattr(model, prefix, None), nn.Module) else ""


def _outside_base(model: HFModel):
    """(name, module) pairs of the classification block: everything outside the base model."""
    base = _base_prefix(model)
    for name, module in model.named_modules():
        if name and not (base and (name == base or name.startswith(base + "."))):
            yield name, module


def _final_linears(model: HFModel, num_labels: int) -> list[str]:
    """Paths of the final classifier layers: Linears, or HeadMLPs taken whole (their layers are not searched)."""
    mlps = [n for n, m in _outside_base(model) if isinstance(m, HeadMLP)]
    found = [n for n, m in _outside_base(model) if isinstance(m, (nn.Linear, HeadMLP)) and m.out_features == num_labels
             and not any(n.startswith(p + ".") for p in mlps)]
    if not found:
        raise ModelError(f"{type(model).__name__} has no linear classification layer this app can replace; "
                         "pick a standard *ForSequenceClassification or *ForImageClassification model")
    return found


def reset_head(model: HFModel, classes: list[str], head_dropout: float, head_hidden: int = 0) -> None:
    """Fresh final classifier layer(s) for `classes` (with `head_hidden`, a HeadMLP each); the rest of the
    classification block is kept."""
    old_k = model.config.num_labels
    std = getattr(model.config, "initializer_range", 0.02)
    own_dropouts = [m for _, m in _outside_base(model) if isinstance(m, nn.Dropout)]
    paths = _final_linears(model, old_k)
    for path in paths:
        new = new_head(model.get_submodule(path), len(classes), 0.0 if own_dropouts else head_dropout, head_hidden)
        if isinstance(new, HeadLinear):   # as the family initialises it; a HeadMLP keeps torch's init, made for ReLU
            nn.init.normal_(new.weight, std=std)
            nn.init.zeros_(new.bias)
        swap_module(model, path, new)
    if head_hidden:
        setattr(model.config, HIDDEN_HEAD, {"units": head_hidden, "paths": paths})
    elif hasattr(model.config, HIDDEN_HEAD):
        delattr(model.config, HIDDEN_HEAD)
    set_labels(model, classes)
    set_head_dropout(model, head_dropout)


def set_labels(model: HFModel, classes: list[str]) -> None:
    model.config.num_labels = len(classes)
    model.config.id2label = {i: c for i, c in enumerate(classes)}
    model.config.label2id = {c: i for i, c in enumerate(classes)}
    if hasattr(model, "num_labels"):
        model.num_labels = len(classes)


def set_head_dropout(model: HFModel, p: float) -> None:
    """Dropout before the classifier: the family's own dropout when it has one, else the head's (a HeadMLP
    also applies it to its hidden layer)."""
    for key in _DROPOUT_KEYS:
        if hasattr(model.config, key):
            setattr(model.config, key, p)
    own = [m for _, m in _outside_base(model) if isinstance(m, nn.Dropout)]
    for m in own:
        m.p = p
    for path in _final_linears(model, model.config.num_labels):
        head = model.get_submodule(path)
        if isinstance(head, HeadMLP):
            # Its input has the family's dropout where there is one; its hidden layer's is its own.
            head.dropout, head.hidden_dropout = (0.0 if own else p), p
        elif own:
            continue
        elif isinstance(head, HeadLinear):
            head.dropout = p
        elif p > 0:
            new = HeadLinear(head.in_features, head.out_features, p)
            new.load_state_dict(head.state_dict())
            swap_module(model, path, new.to(device=head.weight.device, dtype=head.weight.dtype))


def hf_groups(net: HFClassifier):
    """embeddings, block chunks, neck, head; a BERT pooler joins the head.

    The pooler sits on the [CLS] token only and was not trained by sentence
    objectives (MiniLM): kept frozen it lowers feature-extraction accuracy, so it
    trains with the classifier, as RoBERTa's dense+out_proj head does.
    """
    model = net.model
    base = _base_prefix(model)
    return generic_groups(net, f"model.{base}" if base else "model", _head_prefixes(model))


def _head_prefixes(model: HFModel) -> list[str]:
    """The module paths (under the HFClassifier) of the head group: see hf_groups."""
    base = _base_prefix(model)
    if not base:
        return [f"model.{p}" for p in _final_linears(model, model.config.num_labels)]
    head = [f"model.{n}" for n, _ in model.named_children() if n != base]
    pooler = getattr(getattr(model, base), "pooler", None)
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        head.append(f"model.{base}.pooler")
    return head


def text_preprocess(tokenizer, config, max_length: int, name: str) -> TextPreprocess:
    limit = getattr(config, "max_position_embeddings", None)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 1_000_000:
        limit = min(limit, tok_limit) if limit else tok_limit
    if limit and max_length > limit:
        raise ModelError(f"model.max_length {max_length} is more than {name} accepts ({limit}); set model.max_length to {limit} or less")
    return TextPreprocess(tokenizer=tokenizer, max_length=max_length)


def image_preprocess(source: str | None, image_size: int) -> ImagePreprocess:
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if source is not None:
        try:
            from transformers import AutoImageProcessor
            with quiet_transformers():
                proc = AutoImageProcessor.from_pretrained(source, trust_remote_code=False,
                                                          local_files_only=not is_local(source) and not hub_reachable())
            if getattr(proc, "do_normalize", True) and getattr(proc, "image_mean", None) is not None:
                mean, std = tuple(proc.image_mean), tuple(proc.image_std)
            elif not getattr(proc, "do_normalize", True):
                mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        except (OSError, ValueError, KeyError, TypeError):
            pass    # no processor saved (or offline): ImageNet statistics suit most vision checkpoints
    (m0, m1, m2), (s0, s1, s2) = (float(m) for m in mean), (float(s) for s in std)
    return ImagePreprocess(image_size=image_size, mean=(m0, m1, m2), std=(s0, s1, s2))


def native_image_size(config) -> int:
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0]
    return int(size) if isinstance(size, int) and size > 0 else 224


def wrap(spec: ModelSpec, model: HFModel, classes: list[str], preprocess, image_size: int | None = None,
         below: list[LayerGroup] | None = None) -> BuiltModel:
    """BuiltModel around a transformers classifier, with groups and the export format set. `below`: the
    groups under the head, kept as they are (a model cut at model.feature_layer keeps its group names)."""
    interpolate = False
    if spec.modality == "image" and image_size is not None and image_size != native_image_size(model.config):
        interpolate = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    net = HFClassifier(model, interpolate_pos_encoding=interpolate, pooling=getattr(preprocess, "pooling", "cls"))
    groups = hf_groups(net) if below is None else groups_with_head(net, below, _head_prefixes(model))
    built = BuiltModel(spec=spec, net=net, groups=groups, classes=list(classes), preprocess=preprocess,
                       export_format="hf", hf_model=model)
    net.set_prefix_cuts(built.groups)
    return built


def keep_encoder_layers(built: BuiltModel, cut: int) -> BuiltModel:
    """A BERT-family model with only the groups below `cut` (a key of its prefix_cuts) and its own head on top:
    a standard model with fewer encoder layers, so pooling, export and predict work as before."""
    net = built.net
    assert isinstance(net, HFClassifier) and cut in net.prefix_cuts
    kept = net.prefix_cuts[cut]
    base, layers = net._encoder()
    base.encoder.layer = nn.ModuleList(list(layers)[:kept])
    built.hf_model.config.num_hidden_layers = kept
    return wrap(built.spec, built.hf_model, built.classes, built.preprocess, below=built.groups[:cut])


# ---- specs and builder -----------------------------------------------------

def hf_spec(name: str) -> ModelSpec:
    """Spec of a hub id or a local folder; reads only the config (no weights)."""
    if name in KNOWN:
        modality, n, desc = KNOWN[name]
        return ModelSpec(name=name, modality=modality, source="huggingface", description=desc, offline=False,
                         num_params=n, builder=build_hf, hub_path=name, replace_head=replace_head_hf)
    local = is_local(name)
    if local:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelError(f"folder {name} does not exist; give a folder written by save_pretrained, or a registry name")
        if not (folder / "config.json").exists():
            raise ModelError(f"folder {name} has no config.json; give a folder written by save_pretrained (Hugging Face format)")
    config = load_config(name)
    modality = modality_of(config, Path(name).expanduser() if local else None)
    kind = "a local Hugging Face folder" if local else "a Hugging Face hub model"
    return ModelSpec(name=name, modality=modality, source="local" if local else "huggingface",
                     description=f"{getattr(config, 'model_type', 'model')} from {kind}.", offline=local,
                     default_image_size=native_image_size(config), builder=build_hf,
                     hub_path=str(Path(name).expanduser()) if local else name, replace_head=replace_head_hf)


def build_hf(spec: ModelSpec, classes: list[str], *, pretrained: bool, head_dropout: float, head_hidden: int,
             image_size: int, max_length: int) -> BuiltModel:
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, AutoTokenizer
    source = spec.hub_path
    config = load_config(source)
    saved_labels = [config.id2label[i] for i in sorted(config.id2label)] if getattr(config, "id2label", None) else []
    # An exported folder with a hidden head: transformers loads a Linear there, so that head is not kept.
    saved_hidden = bool(getattr(config, HIDDEN_HEAD, None))
    # num_labels first: its setter rewrites id2label, which is then given its real names.
    config.num_labels = len(classes)
    config.id2label = {i: c for i, c in enumerate(classes)}
    config.label2id = {c: i for i, c in enumerate(classes)}
    for key in _DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, head_dropout)
    auto = AutoModelForImageClassification if spec.modality == "image" else AutoModelForSequenceClassification
    where = _source_kwargs(source)
    try:
        with quiet_transformers(), warnings.catch_warnings():
            # torch's note on the pickle protocol of a .bin file that its safe loader then refuses anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            if pretrained:
                model = auto.from_pretrained(source, config=config, ignore_mismatched_sizes=True,
                                             trust_remote_code=False, **where)
            else:
                model = auto.from_config(config, trust_remote_code=False)
            if spec.modality == "text":
                tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False,
                                                          local_files_only=where.get("local_files_only", False))
    except pickle.UnpicklingError as exc:
        # torch's own text is several lines and suggests turning the protection off; it stays on.
        raise ModelError(f"{spec.name}: its .bin weights are a Python pickle holding more than tensors, so they were "
                         "not loaded (unpickling could run code); use a copy of the model saved as safetensors") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise _explain(spec.name, exc) from exc
    if head_hidden or saved_hidden or (pretrained and saved_labels != list(classes)):
        # A checkpoint head for other labels (same count) would load silently; start it afresh.
        reset_head(model, classes, head_dropout, head_hidden)
    set_head_dropout(model, head_dropout)
    model.train()
    pre: TextPreprocess | ImagePreprocess
    if spec.modality == "text":
        pre = text_preprocess(tokenizer, model.config, max_length, spec.name)
    else:
        pre = image_preprocess(source, image_size)
    return wrap(spec, model, classes, pre, image_size if spec.modality == "image" else None)


def identity_pooler(model: HFModel) -> bool:
    """Set a BERT-style pooler's dense layer to the identity (weight I, bias 0); True when done.

    With model.pooling cls or mean the head reads a token state (or their mean) directly: a
    pooler left from next-sentence pretraining makes a worse linear probe than the raw vector
    (0.86 vs 0.92 on BBC News with MiniLM's first token). Starting it at the identity, the head
    (pooler included, it trains) begins from tanh(vector).
    """
    base = _base_prefix(model)
    pooler = getattr(getattr(model, base), "pooler", None) if base else None
    dense = getattr(pooler, "dense", None)
    if not isinstance(dense, nn.Linear) or dense.in_features != dense.out_features:
        return False
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.in_features, dtype=dense.weight.dtype, device=dense.weight.device))
        if dense.bias is not None:
            dense.bias.zero_()
    return True


def replace_head_hf(built: BuiltModel, classes: list[str], head_dropout: float = 0.0, head_hidden: int = 0) -> BuiltModel:
    model = built.hf_model
    reset_head(model, classes, head_dropout, head_hidden)
    size = built.preprocess.image_size if isinstance(built.preprocess, ImagePreprocess) else None
    below = built.groups[:-1] if built.feature_layer else None   # a cut model keeps its group names
    return dataclasses.replace(wrap(built.spec, model, classes, built.preprocess, size, below=below),
                               feature_layer=built.feature_layer)



# ---- pooling ------------------------------------------------------------------
# How a text model's token states become the vector its head reads. "pooler" is the family's own
# classification path (BERT's pooler, a dense layer and tanh on the first token, as
# BertForSequenceClassification does); "cls" is the first token itself and "mean" the average of
# the tokens, with a BERT pooler started at the identity (it trains with the head, see hf_groups).
POOLINGS = ("mean", "cls", "pooler")


def sentence_pooling(source: str, where: dict | None = None) -> str | None:
    """The pooling a sentence-transformers checkpoint was trained with ("mean" or "cls"), read from the
    Pooling module's config that its modules.json names; None for other checkpoints."""
    modules = _checkpoint_json(source, "modules.json", where)
    if not isinstance(modules, list):
        return None
    for module in modules:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            config = _checkpoint_json(source, f"{str(module.get('path', '')).strip('/')}/config.json", where)
            if isinstance(config, dict):
                if config.get("pooling_mode_mean_tokens"):
                    return "mean"
                if config.get("pooling_mode_cls_token"):
                    return "cls"
            return "mean"   # sentence-transformers' own default
    return None


def _checkpoint_json(source: str, name: str, where: dict | None):
    import json
    try:
        if is_local(source):
            path = Path(source).expanduser() / name
        else:
            from transformers.utils.hub import cached_file
            with quiet_transformers():
                found = cached_file(source, name, local_files_only=(where or {}).get("local_files_only", not hub_reachable()),
                                    _raise_exceptions_for_missing_entries=False,
                                    _raise_exceptions_for_connection_errors=False)
            if found is None:
                return None
            path = Path(found)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except Exception:       # unreadable or unreachable: treat it as a plain checkpoint
        return None


def default_pooling(spec: ModelSpec) -> str:
    """What `model.pooling = auto` means for a text model: the pooling it was trained with."""
    if spec.from_run is not None:
        return spec.from_run.pooling
    path = spec.hub_path or (str(spec.locate()) if spec.locate else None)
    return (sentence_pooling(path) if path else None) or "pooler"


def set_pooling(built: BuiltModel, pooling: str, *, fresh: bool) -> BuiltModel:
    """Apply `model.pooling` (auto resolved per model) to a built text model; `fresh`: its weights come
    straight from the checkpoint (not from a run), so a BERT pooler that "cls"/"mean" skip starts at the identity."""
    if not isinstance(built.preprocess, TextPreprocess) or not isinstance(built.net, HFClassifier):
        if pooling not in ("auto", "", None):
            raise ModelError(f"model.pooling applies to text models only; set it to auto for {built.spec.name}")
        return built
    chosen = default_pooling(built.spec) if pooling in ("auto", "", None) else pooling
    if chosen not in POOLINGS:
        raise ModelError(f"model.pooling '{pooling}' is unknown; choose auto, {', '.join(POOLINGS)}")
    if chosen == "mean" and built.net.split not in SPLITS:
        raise ModelError(f"model.pooling mean is not available for {built.spec.name} (the app cannot read its head's "
                         "input per token); set model.pooling to auto")
    if fresh and chosen in ("cls", "mean"):
        identity_pooler(built.hf_model)
    built.net.pooling = chosen
    built.preprocess = dataclasses.replace(built.preprocess, pooling=chosen)
    return built
